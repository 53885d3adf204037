"""Training and sampling loop for image diffusion: diffusers ``UNet2DModel`` trained from scratch.

The architecture is that of the thesis study of Optuna HPO for diffusion training, from the diffusers
unconditional-training tutorial: block_out_channels (64, 128, 128, 256) x ``width``, 2 layers per block, DownBlock2D x 2 + AttnDownBlock2D x 2, mirrored up.
Noising by ``DDPMScheduler`` with the space's beta schedule (1,000 training timesteps); sampling by DDPM or
DDIM with ``sample_steps`` steps. The loop is plain PyTorch over one tensor of training images.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from diffsearch.backends.vector_trainer import make_lr_schedule, make_optimizer, record_epoch
from diffsearch.errors import UsageError
from diffsearch.ledger.interrupt import stop_point

BASE_CHANNELS = (64, 128, 128, 256)
SAMPLING_SCHEDULERS = ("ddim", "ddpm")  # how images are drawn from a trained model (not an Optuna sampler)
# report(epoch, sample_fn) -> None; raises optuna.TrialPruned to stop the run
ReportFn = Callable[[int, Callable[[], np.ndarray]], None]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda (got {device!r})")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible to torch here (use --device cpu)")
    return device


def unet_channels(width: float) -> tuple[int, ...]:
    """The baseline channels scaled by ``width``, rounded to multiples of 8 (attention heads of 8)."""
    if not 0 < width <= 4:
        raise UsageError(f"--width must be in (0, 4] (got {width})")
    return tuple(max(8, int(round(c * width / 8)) * 8) for c in BASE_CHANNELS)


def make_unet(resolution: int, channels: int, width: float = 1.0) -> UNet2DModel:
    block_out = unet_channels(width)
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=2,
        block_out_channels=block_out,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        # group norm needs groups dividing every width: 32 at full width, fewer when scaled down
        norm_num_groups=math.gcd(32, *block_out),
    )


def make_noise_scheduler(config: dict[str, Any]) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=int(config["num_train_timesteps"]), beta_schedule=config["beta_schedule"])


@dataclass
class TrainedUNet:
    model: UNet2DModel
    noise_scheduler: DDPMScheduler
    device: str
    epoch_losses: list[float] = field(default_factory=list)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator, steps: int = 50, sampler: str = "ddim", batch_size: int = 256
    ) -> np.ndarray:
        """uint8 N x H x W x C images; noise drawn on the CPU from ``generator`` so runs repeat on any device."""
        if sampler not in SAMPLING_SCHEDULERS:
            raise UsageError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLING_SCHEDULERS)}")
        cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
        # pass the betas themselves: DDIMScheduler cannot build the sigmoid schedule by name
        sched = cls.from_config(self.noise_scheduler.config, trained_betas=self.noise_scheduler.betas.numpy().tolist())
        sched.set_timesteps(steps)
        self.model.eval()
        cfg = self.model.config
        chunks = []
        for start in range(0, n, batch_size):
            shape = (min(batch_size, n - start), cfg.in_channels, cfg.sample_size, cfg.sample_size)
            x = torch.randn(shape, generator=generator).to(self.device)
            for t in sched.timesteps:
                stop_point()
                with _autocast(self.device):
                    eps = self.model(x, t).sample.float()
                # DDIM with eta 0 is deterministic; DDPM draws its noise from the CPU generator
                x = sched.step(eps, t, x, generator=generator).prev_sample
            chunks.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
        self.model.train()
        return torch.cat(chunks).numpy()


def _autocast(device: str):
    # mixed precision on GPU (bf16 needs no loss scaling); full fp32 on CPU
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()


def train_unet(
    config: dict[str, Any],
    images: torch.Tensor,
    epochs: int,
    seed: int,
    width: float = 1.0,
    device: str = "cpu",
    report: ReportFn | None = None,
    report_epochs: tuple[int, ...] = (),
) -> TrainedUNet:
    """Train a UNet on float N x C x H x W images in [-1, 1] with ``config`` (spaces/training.py, images).

    At each epoch in ``report_epochs`` ``report(epoch, trained)`` is called so a pruner can score the model
    so far; a non-finite loss raises TrialDiverged.
    """
    device = resolve_device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = make_unet(images.shape[2], images.shape[1], width).to(device)
    data = images.to(device)
    noise_scheduler = make_noise_scheduler(config)
    n_timesteps = noise_scheduler.config.num_train_timesteps
    optimizer = make_optimizer(config, model.parameters())
    batch_size = int(config["batch_size"])
    lr_schedule = make_lr_schedule(config, optimizer, math.ceil(len(data) / batch_size) * epochs)
    trained = TrainedUNet(model, noise_scheduler, device)
    alphas = noise_scheduler.alphas_cumprod.to(device)
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(data), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, len(data), batch_size):
            stop_point()
            x0 = data[order[start : start + batch_size]]
            noise = torch.randn(x0.shape, generator=generator).to(device)
            t = torch.randint(0, n_timesteps, (len(x0),), generator=generator).to(device)
            a = alphas[t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise  # DDPMScheduler.add_noise, on the device
            with _autocast(device):
                pred = model(noisy, t).sample
            loss = torch.nn.functional.mse_loss(pred.float(), noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the diffusers tutorial does
            optimizer.step()
            lr_schedule.step()
            loss_sum += loss.detach() * len(x0)
        record_epoch(trained.epoch_losses, float(loss_sum) / len(data), epoch)
        if report is not None and epoch in report_epochs and epoch < epochs:
            report(epoch, trained)
    return trained
