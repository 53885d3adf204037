#!/usr/bin/env python
"""Train a small unconditional diffusion UNet on images and report the FID of its samples as it trains.

It trains the way diffusers' ``examples/unconditional_image_generation/train_unconditional.py`` does, with
the same flags: a ``UNet2DModel`` predicting the noise of a ``DDPMScheduler``, AdamW, a
``diffusers.optimization.get_scheduler`` learning-rate schedule with warmup, gradients clipped at 1, and an
optional EMA of the weights (``--use_ema``). It is small by default (a 3-level UNet with 16-32 channels,
512 images at 16 x 16, 3 epochs) so that one run takes well under a minute on 2 CPU cores.

Data: ``--dataset mnist`` (or ``fashion-mnist``, ``digits``), read from the offline copies that diffsearch
uses (nothing is downloaded), or ``--train_data_dir DIR``: every image under DIR, recursively. A fixed 20 %
of a folder (the test set of MNIST) is held out.

At each evaluation the model draws ``--num_fid_samples`` images (DDPM sampling, ``--ddpm_num_inference_steps``)
and scores them with the FID of the real Inception network against as many held-out real images; it reports
them with ``diffsearch.report``: one JSON line on stdout, the line ``diffsearch sweep`` reads (examples/sweep.yaml):

    {"epoch": 2, "optimizer_steps": 32, "fid": 231.4, "kid": 0.21, "loss": 0.081}

The progress key is ``epoch`` (``step``, in optimizer steps, with ``--eval_every_steps``): a sweep's pruner
compares trials after the same number of epochs, whatever their batch size.

    python examples/train_unet.py --dataset mnist
    python examples/train_unet.py --train_data_dir ~/pictures --resolution 32 --num_epochs 10 --use_ema

The FID of 32 images is strongly biased upwards: compare runs at the same ``--num_fid_samples`` only.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

import diffsearch
from diffsearch.datasets.images import IMAGE_DATASETS, ImageData, load_image_data
from diffsearch.errors import UsageError
from diffsearch.objectives.fid import FidReference, inception_features

DATASETS = tuple(IMAGE_DATASETS)  # digits, mnist, fashion-mnist
# train_unconditional.py's schedules (get_scheduler's piecewise_constant needs rules no flag gives)
LR_SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]


def true_or_false(text: str) -> bool:
    """A flag's value as a sweep passes it (--use_ema=True); bare --use_ema means true."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    data = p.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--dataset", choices=DATASETS, help="a built-in set read offline (default: mnist)")
    source.add_argument("--train_data_dir", help="a folder of images (read recursively)")
    data.add_argument(
        "--resolution",
        type=int,
        default=16,
        help="images are centre-cropped and resized to this square side (a multiple of 8)",
    )
    data.add_argument("--max_train_samples", type=int, default=512, help="train on the first N images (0: all)")
    data.add_argument(
        "--random_flip",
        type=true_or_false,
        nargs="?",
        const=True,
        default=False,
        help="flip training images horizontally at random",
    )

    model = p.add_argument_group("model")
    model.add_argument(
        "--block_out_channels",
        default="16,32,32",
        help="channels per UNet level (comma list; one down and one up block each)",
    )
    model.add_argument("--layers_per_block", type=int, default=1)
    model.add_argument("--ddpm_num_steps", type=int, default=1000, help="training timesteps of the DDPMScheduler")
    model.add_argument(
        "--ddpm_beta_schedule", default="linear", choices=["linear", "scaled_linear", "squaredcos_cap_v2"]
    )
    model.add_argument(
        "--prediction_type",
        default="epsilon",
        choices=["epsilon", "sample"],
        help="what the model predicts: the noise (epsilon) or the clean image (sample)",
    )

    train = p.add_argument_group("training (diffusers' names and meanings)")
    train.add_argument("--train_batch_size", type=int, default=32)
    train.add_argument("--num_epochs", type=int, default=3)
    train.add_argument(
        "--learning_rate", type=float, default=1e-3, help="diffusers' example uses 1e-4 for runs 100 times longer"
    )
    train.add_argument(
        "--lr_scheduler",
        default="cosine",
        choices=LR_SCHEDULERS,
        help="a diffusers.optimization.get_scheduler schedule",
    )
    train.add_argument("--lr_warmup_steps", type=int, default=5)
    train.add_argument("--adam_beta1", type=float, default=0.95)
    train.add_argument("--adam_beta2", type=float, default=0.999)
    train.add_argument("--adam_weight_decay", type=float, default=1e-6)
    train.add_argument("--adam_epsilon", type=float, default=1e-8)
    train.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (diffusers: 1.0)")
    train.add_argument(
        "--use_ema",
        type=true_or_false,
        nargs="?",
        const=True,
        default=False,
        help="keep an EMA of the weights and sample from it (--use_ema, or =true / =false as a sweep writes it)",
    )
    train.add_argument("--ema_inv_gamma", type=float, default=1.0, help="EMA warmup: inverse multiplicative factor")
    train.add_argument("--ema_power", type=float, default=3 / 4, help="EMA warmup: exponential factor")
    train.add_argument("--ema_max_decay", type=float, default=0.9999)
    train.add_argument("--seed", type=int, default=0, help="seeds the weights, the batches, the noise and sampling")
    train.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")

    evaluation = p.add_argument_group("evaluation")
    evaluation.add_argument(
        "--eval_every_epochs", type=int, default=1, help="report the FID every N epochs (and always at the end)"
    )
    evaluation.add_argument(
        "--eval_every_steps",
        type=int,
        default=0,
        help="report the FID every N optimizer steps instead (0: use --eval_every_epochs)",
    )
    evaluation.add_argument(
        "--num_fid_samples",
        type=int,
        default=32,
        help="generated images per FID, scored against as many held-out real ones",
    )
    evaluation.add_argument("--eval_batch_size", type=int, default=64, help="images sampled at once")
    evaluation.add_argument(
        "--ddpm_num_inference_steps",
        type=int,
        default=25,
        help="DDPM sampling steps (diffusers: 1000; few here, for CPU runs)",
    )
    p.add_argument(
        "--output_dir", help="save the final pipeline here (DDPMPipeline.save_pretrained); default: nothing is saved"
    )
    args = p.parse_args(argv)

    positive = (
        "resolution",
        "train_batch_size",
        "num_epochs",
        "layers_per_block",
        "ddpm_num_steps",
        "eval_every_epochs",
        "eval_batch_size",
        "ddpm_num_inference_steps",
    )
    for name in positive:
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    for name in ("max_train_samples", "eval_every_steps", "lr_warmup_steps"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be at least 0, not {getattr(args, name)}")
    if args.num_fid_samples < 2:
        p.error(f"--num_fid_samples must be at least 2 (FID needs a covariance), not {args.num_fid_samples}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        p.error(f"--learning_rate must be a positive number, not {args.learning_rate}")
    if not (0 <= args.adam_beta1 < 1 and 0 <= args.adam_beta2 < 1):
        p.error("--adam_beta1 and --adam_beta2 must lie in [0, 1)")
    if args.adam_weight_decay < 0 or args.adam_epsilon <= 0 or args.max_grad_norm <= 0:
        p.error("--adam_weight_decay must be >= 0, --adam_epsilon and --max_grad_norm > 0")
    if args.ddpm_num_inference_steps > args.ddpm_num_steps:
        p.error(
            f"--ddpm_num_inference_steps ({args.ddpm_num_inference_steps}) cannot exceed --ddpm_num_steps "
            f"({args.ddpm_num_steps})"
        )
    try:
        args.block_out_channels = tuple(int(c) for c in args.block_out_channels.split(","))
    except ValueError:
        p.error(f"--block_out_channels is a comma list of integers, not {args.block_out_channels!r}")
    if not args.block_out_channels or min(args.block_out_channels) < 8 or any(c % 8 for c in args.block_out_channels):
        p.error("--block_out_channels must be multiples of 8 (the GroupNorm has 8 groups)")
    if args.resolution % 2 ** (len(args.block_out_channels) - 1):
        p.error(
            f"--resolution {args.resolution} must be divisible by 2^{len(args.block_out_channels) - 1} "
            f"(each UNet level but the last halves it)"
        )
    if args.train_data_dir is not None and not Path(args.train_data_dir).is_dir():
        p.error(f"--train_data_dir {args.train_data_dir} is not a folder")
    if args.train_data_dir is None and args.dataset is None:
        args.dataset = "mnist"
    args.error = p.error  # data errors (no images, unreadable file) are reported the same way
    return args


# ------------------------------------------------------------------------------ parts shared with the optimizer task
def load_images(spec: str, resolution: int, max_train_samples: int = 0) -> ImageData:
    """uint8 N x H x W x C train and held-out images of a built-in set or a folder (diffsearch.datasets)."""
    return load_image_data(spec, resolution, max_train_samples or None)


def build_unet(
    resolution: int, channels: int, block_out_channels: Sequence[int] = (16, 32, 32), layers_per_block: int = 1
) -> UNet2DModel:
    """diffusers' example UNet, shrunk: plain ResNet blocks, self-attention at the lowest level only."""
    levels = len(block_out_channels)
    down = ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",)
    up = ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1)
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=layers_per_block,
        block_out_channels=tuple(block_out_channels),
        norm_num_groups=8,
        down_block_types=down,
        up_block_types=up,
    )


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x C -> float N x C x H x W in [-1, 1] (diffusers' Normalize([0.5], [0.5]))."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def diffusion_loss(
    model: UNet2DModel,
    scheduler: DDPMScheduler,
    clean: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """train_unconditional.py's loss: MSE to the noise (epsilon) or to the clean image (sample)."""
    noisy = scheduler.add_noise(clean, noise, timesteps)
    output = model(noisy, timesteps).sample
    return F.mse_loss(output, noise if prediction_type == "epsilon" else clean)


def random_loss_inputs(
    clean: torch.Tensor, num_timesteps: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    timesteps = torch.randint(0, num_timesteps, (len(clean),), generator=generator).to(clean.device)
    return noise, timesteps


# ------------------------------------------------------------------------------ evaluation
class FidScorer:
    """FID (and KID) of generated images against held-out real ones, with diffsearch's real Inception network.

    The held-out features are cached on disk (``$DIFFSEARCH_CACHE``, default ~/.cache/diffsearch/fid), so
    only the first run pays for them.
    """

    def __init__(self, data: ImageData, count: int, device: str):
        self.count = min(count, len(data.eval))
        self.device = device
        self.reference = FidReference.cached(f"{data.key}-eval-n{self.count}", lambda: data.eval[: self.count], device)

    def __call__(self, images: np.ndarray) -> dict[str, float]:
        return self.reference.score(inception_features(images, self.device))


@torch.no_grad()
def sample_images(
    unet: UNet2DModel, scheduler: DDPMScheduler, count: int, batch_size: int, inference_steps: int, seed: int
) -> np.ndarray | None:
    """uint8 N x H x W x C from diffusers' DDPMPipeline (None when the samples are not finite)."""
    pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device=unet.device).manual_seed(seed)
    chunks = []
    for start in range(0, count, batch_size):
        images = pipeline(
            batch_size=min(batch_size, count - start),
            generator=generator,
            num_inference_steps=inference_steps,
            output_type="np",
        ).images
        if not np.isfinite(images).all():
            return None
        chunks.append(np.round(images * 255).astype(np.uint8))
    return np.concatenate(chunks)


def log(message: str) -> None:
    print(f"train_unet: {message}", file=sys.stderr, flush=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here")
    return device


# ------------------------------------------------------------------------------ training
def train(args: argparse.Namespace) -> int:
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    data = load_images(args.train_data_dir or args.dataset, args.resolution, args.max_train_samples)
    images = to_model_input(data.train)
    log(
        f"{data.name}: {len(images)} training images {tuple(images.shape[1:])}, "
        f"{len(data.eval)} held out; device {device}"
    )
    scorer = FidScorer(data, args.num_fid_samples, str(device))

    model = build_unet(args.resolution, data.channels, args.block_out_channels, args.layers_per_block).to(device)
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.ddpm_num_steps,
        beta_schedule=args.ddpm_beta_schedule,
        prediction_type=args.prediction_type,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    steps_per_epoch = math.ceil(len(images) / args.train_batch_size)
    total_steps = steps_per_epoch * args.num_epochs
    lr_scheduler = get_scheduler(
        args.lr_scheduler, optimizer=optimizer, num_warmup_steps=args.lr_warmup_steps, num_training_steps=total_steps
    )
    ema = (
        EMAModel(
            model.parameters(),
            decay=args.ema_max_decay,
            use_ema_warmup=True,
            inv_gamma=args.ema_inv_gamma,
            power=args.ema_power,
            model_cls=UNet2DModel,
            model_config=model.config,
        )
        if args.use_ema
        else None
    )

    def evaluate(step: int, epoch: int, loss: float) -> None:
        if ema is not None:  # sample from the averaged weights, as train_unconditional.py does
            ema.store(model.parameters())
            ema.copy_to(model.parameters())
        model.eval()
        samples = sample_images(
            model, noise_scheduler, scorer.count, args.eval_batch_size, args.ddpm_num_inference_steps, args.seed + step
        )
        model.train()
        if ema is not None:
            ema.restore(model.parameters())
        if samples is None:
            raise FloatingPointError(f"the samples at step {step} are not finite")
        parts = scorer(samples)
        progress = {"step": step} if args.eval_every_steps else {"epoch": epoch, "optimizer_steps": step}
        diffsearch.report(**progress, fid=round(parts["fid"], 4), kid=round(parts["kid"], 6), loss=round(loss, 6))

    batches = torch.Generator().manual_seed(args.seed)  # shuffling, flips, noise and timesteps
    step, start = 0, time.perf_counter()
    interval_losses: list[float] = []
    model.train()
    for epoch in range(1, args.num_epochs + 1):
        order = torch.randperm(len(images), generator=batches)
        for first in range(0, len(images), args.train_batch_size):
            clean = images[order[first : first + args.train_batch_size]]
            if args.random_flip:
                flip = torch.rand(len(clean), generator=batches) < 0.5
                clean = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
            clean = clean.to(device)
            noise, timesteps = random_loss_inputs(clean, args.ddpm_num_steps, batches)
            loss = diffusion_loss(model, noise_scheduler, clean, noise, timesteps, args.prediction_type)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {float(loss)} at step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            if ema is not None:
                ema.step(model.parameters())
            step += 1
            interval_losses.append(float(loss.detach()))
            last = step == total_steps
            if last or (args.eval_every_steps and step % args.eval_every_steps == 0):
                evaluate(step, epoch, float(np.mean(interval_losses)))
                interval_losses = []
        if not args.eval_every_steps and epoch % args.eval_every_epochs == 0 and step != total_steps:
            evaluate(step, epoch, float(np.mean(interval_losses)))
            interval_losses = []
        log(f"epoch {epoch}/{args.num_epochs} done, step {step}, {time.perf_counter() - start:.1f} s")

    if args.output_dir:
        if ema is not None:
            ema.copy_to(model.parameters())
        DDPMPipeline(unet=model, scheduler=noise_scheduler).save_pretrained(args.output_dir)
        log(f"pipeline saved to {args.output_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except UsageError as exc:  # bad data or device: the same one-line error as a bad flag
        args.error(str(exc))
    except FloatingPointError as exc:  # diverged: the run fails, a sweep records why
        log(f"error: training diverged: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
