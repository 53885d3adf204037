"""Build ``--model fashion`` / ``--clip fashion``: a miniature Stable Diffusion trained on Fashion-MNIST.

Every part is a real diffusers / transformers class, saved in Stable Diffusion's own format:

  1. judge classifier   small CNN on real Fashion-MNIST (judging only)            -> OUT/judge_classifier
  2. judge CLIP         CLIPModel, text width 16, ViT patch 8, random seed 2        -> OUT/judge_clip
  3. SD's CLIP          CLIPModel, text width 32, ViT patch 4, random seed 1; its text tower is SD's
                        CLIPTextModel                                            -> WORK/clip_sd
  4. VAE                AutoencoderKL, 32x32x3 <-> 8x8x4                            -> WORK/vae
  5. UNet               UNet2DConditionModel with cross-attention, eps-prediction   -> WORK/unet
  6. pipeline           StableDiffusionPipeline.save_pretrained (DDIM, fp16 files)  -> OUT/pipeline
  7. report             measurements written to benchmarks/results/fashion_sd.md

Resumable: a part whose files exist is skipped (delete its folder to train it again). Each part trains a fixed
number of steps (``STEPS``; ``--steps-scale`` multiplies them) from a fixed random seed, so a rebuild gives the
same weights on a busy machine as on a quiet one, only later (about 40 minutes on 2 quiet cores).

    python benchmarks/build_fashion_sd.py
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffsearch.backends import fashion_sd as fs  # noqa: E402
from diffsearch.backends.tiny_sd import MAX_LENGTH, clip_tokenizer, write_clip_tokenizer_files  # noqa: E402

# SD's CLIP needs as long as the judge: with 20 steps (the shipped weights) its text tower separates
# "a photo of a sneaker" from "a photo of a bag" by 2.6 % of the embedding and the UNet ignored the class
# steps of each part (batch sizes in the part's function); seconds per step on 2 quiet cores: SD's CLIP 0.24,
# VAE 0.25, UNet 0.6. Steps, not minutes: a time budget made the shipped quality depend on the machine's load
STEPS = {"classifier": 2000, "judge_clip": 600, "clip_sd": 1500, "vae": 1000, "unet": 1800}
UNET_IMAGES = 30_000  # the UNet sees a few epochs of these in its budget
SEEDS = {"classifier": 0, "clip_sd": 1, "judge_clip": 2, "vae": 3, "unet": 4}
OPENAI_MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
OPENAI_STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
CLIP_CONFIGS = {
    "clip_sd": dict(
        text=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=4,
        ),
        projection_dim=32,
    ),
    "judge_clip": dict(
        text=dict(hidden_size=16, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=32,
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Steps:
    """A progress bar over a fixed number of training steps."""

    def __init__(self, name: str, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.bar = tqdm(total=total, desc=name, unit="step", dynamic_ncols=True, mininterval=2)

    @property
    def frac(self) -> float:
        return min(1.0, self.done / self.total)

    def step(self, opt, loss, **postfix) -> bool:
        """One optimiser step on ``loss``, counted; False once the last one is done."""
        opt.zero_grad()
        loss.backward()
        opt.step()
        return self.tick(loss=f"{loss.item():.4g}", **postfix)

    def tick(self, **postfix) -> bool:
        """Count one step; False once the last one is done."""
        self.done += 1
        self.bar.update(1)
        if self.done % 10 == 0:
            self.bar.set_postfix(postfix, refresh=False)
        return self.done < self.total

    def close(self) -> float:
        self.bar.close()
        return (time.perf_counter() - self.start) / 60


def grey3(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 N x 32 x 32 -> float N x 3 x 32 x 32 in [0, 1]."""
    return torch.from_numpy(images_u8).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)


def save_fp16(directory: Path) -> None:
    """Rewrite every .safetensors file under ``directory`` with float tensors in float16 (configs unchanged,
    so loaders upcast to the float32 the configs name)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for path in directory.rglob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(path), metadata=metadata)


def write_tokenizer(directory: Path) -> None:
    """The real CLIP tokenizer as vocab.json + merges.txt (1.5 MB; transformers' tokenizer.json is 3.6 MB)."""
    clip_tokenizer().save_pretrained(str(directory))
    (directory / "tokenizer.json").unlink(missing_ok=True)
    write_clip_tokenizer_files(directory)


# ---- data -----------------------------------------------------------------------------------------------
class Data:
    def __init__(self):
        self.train_x, self.train_y = fs.load_fashion("train")
        self.test_x, self.test_y = fs.load_fashion("test")
        self.thresholds = fs.attribute_thresholds(self.train_x, self.train_y)
        b, s = fs.measure(self.train_x)
        self.train_b = fs.bins(b, self.train_y, self.thresholds["brightness"])
        self.train_s = fs.bins(s, self.train_y, self.thresholds["size"])
        b, s = fs.measure(self.test_x)
        self.test_b = fs.bins(b, self.test_y, self.thresholds["brightness"])
        self.test_s = fs.bins(s, self.test_y, self.thresholds["size"])

    def captions(self, split: str, per_image: int, seed: int, empty: float):
        """``per_image`` captions per image: strings, and the (label, said brightness, said size) of each."""
        rng = random.Random(seed)
        y, b, s = (
            (self.train_y, self.train_b, self.train_s) if split == "train" else (self.test_y, self.test_b, self.test_s)
        )
        texts, said = [], []
        for i in range(len(y)):
            for _ in range(per_image):
                text, sb, ss = fs.caption(int(y[i]), int(b[i]), int(s[i]), rng, empty)
                texts.append(text)
                said.append((int(y[i]), sb, ss))
        return texts, np.asarray(said).reshape(len(y), per_image, 3)


def tokenize(texts: list[str], length: int = MAX_LENGTH) -> torch.Tensor:
    return clip_tokenizer()(
        texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
    ).input_ids


def unique_ids(texts: list[str]) -> tuple[list[str], np.ndarray]:
    vocab = sorted(set(texts))
    index = {t: i for i, t in enumerate(vocab)}
    return vocab, np.asarray([index[t] for t in texts])


# ---- 1. classifier -------------------------------------------------------------------------------------
def train_classifier(data: Data, out: Path, steps: int, init: Path | None = None, lr: float = 2e-3) -> float:
    """``init``: continue from a saved classifier (its folder) instead of a fresh one."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(SEEDS["classifier"])
    model = fs.FashionClassifier()
    if init is not None:
        model.load_state_dict({k: v.float() for k, v in load_file(str(init / "model.safetensors")).items()})
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    x = torch.from_numpy(data.train_x).float().div(255)
    y = torch.from_numpy(data.train_y)
    timer, gen = Steps("classifier", steps), torch.Generator().manual_seed(0)
    model.train()
    while True:
        idx = torch.randint(len(x), (64,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        for group in opt.param_groups:  # cosine decay over the steps
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * timer.frac)))
        if not timer.step(opt, loss):
            break
    minutes = timer.close()
    model.eval()
    with torch.no_grad():
        test = torch.from_numpy(data.test_x).float().div(255)
        pred = torch.cat([model(test[i : i + 500]).argmax(1) for i in range(0, len(test), 500)]).numpy()
    acc = float((pred == data.test_y).mean())
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
        str(out / "model.safetensors"),
    )
    (out / "attributes.json").write_text(json.dumps(data.thresholds, indent=1))
    (out / "train.json").write_text(json.dumps({"minutes": minutes, "steps": steps, "test_accuracy": acc}))
    log(f"classifier: {steps} steps, {minutes:.1f} min, test accuracy {acc:.4f}")
    return minutes


# ---- 2, 3. CLIPs --------------------------------------------------------------------------------------
def build_clip(name: str):
    from transformers import CLIPConfig, CLIPModel

    from diffsearch.backends.tiny_sd import tiny_text_config

    c = CLIP_CONFIGS[name]
    text = tiny_text_config(c["text"]["hidden_size"]).to_dict()
    text.update(c["text"])
    torch.manual_seed(SEEDS[name])
    return CLIPModel(
        CLIPConfig(
            text_config=text,
            vision_config=dict(c["vision"], hidden_act="quick_gelu"),
            projection_dim=c["projection_dim"],
        )
    )


def clip_pixels(images01: torch.Tensor) -> torch.Tensor:
    return (images01 - OPENAI_MEAN) / OPENAI_STD


def features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def compatible(img_lbs: torch.Tensor, said: torch.Tensor) -> torch.Tensor:
    """img_lbs: N x 3 (label, brightness bin, size bin) of images; said: M x 3 of captions -> N x M bool."""
    same = img_lbs[:, None, 0] == said[None, :, 0]
    b_ok = (said[None, :, 1] < 0) | (said[None, :, 1] == img_lbs[:, None, 1])
    s_ok = (said[None, :, 2] < 0) | (said[None, :, 2] == img_lbs[:, None, 2])
    return same & b_ok & s_ok


def train_clip(name: str, data: Data, out: Path, steps: int) -> float:
    model = build_clip(name)
    texts, said = data.captions("train", 4, SEEDS[name], empty=0.0)
    vocab, index = unique_ids(texts)
    # CLIP's text feature is read at the first <|endoftext|> and attention is causal, so padding to 24
    # positions instead of 77 gives the same features for these short captions, 3 times faster
    ids = tokenize(vocab, 24)
    assert (ids[:, -1] == clip_tokenizer().eos_token_id).all()
    index = torch.from_numpy(index).view(len(data.train_y), 4)
    said = torch.from_numpy(said)
    images = torch.from_numpy(data.train_x)
    lbs = torch.from_numpy(np.stack([data.train_y, data.train_b, data.train_s], 1))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(SEEDS[name])
    timer, batch = Steps(name, steps), 256
    model.train()
    while True:
        idx = torch.randint(len(images), (batch,), generator=gen)
        which = torch.randint(4, (batch,), generator=gen)
        pix = clip_pixels(grey3(images[idx].numpy()))
        text_ids = ids[index[idx, which]]
        img = F.normalize(features(model.get_image_features(pixel_values=pix)), dim=-1)
        txt = F.normalize(features(model.get_text_features(input_ids=text_ids)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        target = compatible(lbs[idx], said[idx, which]).float()
        loss = (
            torch.sum(-F.log_softmax(logits, 1) * target / target.sum(1, keepdim=True), 1).mean()
            + torch.sum(-F.log_softmax(logits.T, 1) * target.T / target.T.sum(1, keepdim=True), 1).mean()
        ) / 2
        if not timer.step(opt, loss):
            break
    minutes = timer.close()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    (out / "train.json").write_text(json.dumps({"minutes": minutes, "steps": steps}))
    log(f"{name}: {steps} steps, {minutes:.1f} min")
    return minutes


# ---- 4. VAE -------------------------------------------------------------------------------------------
def build_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(SEEDS["vae"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
    )


def train_vae(data: Data, out: Path, steps: int) -> float:
    vae = build_vae()
    x = torch.from_numpy(data.train_x)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(SEEDS["vae"])
    timer = Steps("vae", steps)
    vae.train()
    while True:
        idx = torch.randint(len(x), (64,), generator=gen)
        xb = grey3(x[idx].numpy()) * 2 - 1
        posterior = vae.encode(xb).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        rec = (recon - xb).abs().mean() + F.mse_loss(recon, xb)
        kl = posterior.kl().mean() / (4 * 8 * 8)
        loss = rec + 1e-4 * kl
        if not timer.step(opt, loss, rec=f"{rec.item():.4f}", kl=f"{kl.item():.2f}"):
            break
    minutes = timer.close()
    vae.eval()
    with torch.no_grad():  # SD's scaling factor: 1 / std of the latents
        xb = grey3(data.train_x[:2000]) * 2 - 1
        latents = torch.cat(
            [vae.encode(xb[i : i + 500]).latent_dist.sample(generator=gen) for i in range(0, 2000, 500)]
        )
        vae.register_to_config(scaling_factor=float(1 / latents.std()))
        test = grey3(data.test_x[:1000]) * 2 - 1
        mse = float(F.mse_loss(vae.decode(vae.encode(test).latent_dist.mode()).sample.clamp(-1, 1), test) / 4)
    out.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(str(out))
    (out / "train.json").write_text(
        json.dumps(
            {"minutes": minutes, "steps": steps, "test_mse_01": mse, "scaling_factor": vae.config.scaling_factor}
        )
    )
    log(
        f"vae: {steps} steps, {minutes:.1f} min, test MSE (0..1 scale) {mse:.5f}, "
        f"scaling factor {vae.config.scaling_factor:.4f}"
    )
    return minutes


# ---- 5. UNet ------------------------------------------------------------------------------------------
def build_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(SEEDS["unet"])
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=16,
        norm_num_groups=16,
    )


def sd_scheduler():
    from diffusers import DDIMScheduler

    # SD v1's scheduler settings
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def text_encoder_from(clip_dir: Path):
    from transformers import CLIPModel, CLIPTextModel

    clip = CLIPModel.from_pretrained(str(clip_dir), dtype=torch.float32)
    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    return text.eval()


def train_unet(data: Data, work: Path, out: Path, steps: int, judge_dir: Path | None = None) -> float:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(work / "vae")).eval()
    return fit_unet(data, vae, text_encoder_from(work / "clip_sd"), out, steps, judge_dir=judge_dir)


def fit_unet(
    data: Data,
    vae,
    text_encoder,
    out: Path,
    steps: int,
    judge_dir: Path | None = None,
    images: int = UNET_IMAGES,
    start=None,
    peak_lr: float = 2e-3,
    warmup: int = 50,
) -> float:
    """Train the UNet ``steps`` steps on the first ``images`` training images (from random weights, or from the
    UNet ``start`` when given) and save its EMA to ``out``; minutes taken."""
    log("unet: encoding images and captions")
    with torch.no_grad():
        x = grey3(data.train_x[:images]) * 2 - 1
        dists = [vae.encode(x[i : i + 1000]).latent_dist for i in range(0, len(x), 1000)]
        mean = torch.cat([d.mean for d in dists])
        std = torch.cat([d.std for d in dists])
        per = 6
        texts, _ = data.captions("train", per, SEEDS["unet"], empty=fs.EMPTY_FRACTION)
        texts = texts[: images * per]
        vocab, index = unique_ids(texts)
        ids = tokenize(vocab)
        embeds = torch.cat([text_encoder(ids[i : i + 500])[0] for i in range(0, len(ids), 500)])
        index = torch.from_numpy(index).view(len(x), per)
    log(f"unet: {len(vocab)} distinct captions")
    scale = vae.config.scaling_factor
    unet = build_unet()
    if start is not None:
        unet.load_state_dict(start.state_dict())
    ema = build_unet()
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    sched = sd_scheduler()
    alphas = sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(SEEDS["unet"])
    timer, step, batch = Steps("unet", steps), 0, 64
    unet.train()
    while True:
        idx = torch.randint(len(x), (batch,), generator=gen)
        which = torch.randint(per, (batch,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        pred = unet(zt, t, encoder_hidden_states=embeds[index[idx, which]]).sample
        loss = F.mse_loss(pred, noise)
        for group in opt.param_groups:  # warm up, then cosine down to 10 %
            group["lr"] = (
                peak_lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * timer.frac)))
            )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(0.99, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        if judge_dir is not None and step % 400 == 0:  # is it learning the class yet? (monitoring only)
            timer.bar.write(
                f"unet step {step}: {probe(ema, vae, text_encoder, judge_dir):.0%} of 50 probe images "
                "are judged the class asked for"
            )
        if not timer.tick(loss=f"{loss.item():.4f}"):
            break
    minutes = timer.close()
    out.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(str(out))
    (out / "train.json").write_text(json.dumps({"minutes": minutes, "steps": step, "batch": batch}))
    log(f"unet: {step} steps, {minutes:.1f} min")
    return minutes


@torch.no_grad()
def probe(unet, vae, text_encoder, judge_dir: Path, steps: int = 20, guidance: float = 7.5) -> float:
    """Judge-classifier accuracy of 50 images (5 per class) from plain class prompts: a quick DDIM sample."""
    labels = np.repeat(np.arange(10), 5)
    ids = tokenize([fs.plain_prompt(int(c)) for c in labels] + [""])
    embeds = text_encoder(ids)[0]
    cond, uncond = embeds[:-1], embeds[-1:].expand(len(labels), -1, -1)
    sched = sd_scheduler()
    sched.set_timesteps(steps)
    z = torch.randn(len(labels), 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for t in sched.timesteps:
        eps = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        e_u, e_c = eps.chunk(2)
        z = sched.step(e_u + guidance * (e_c - e_u), t, z).prev_sample
    images = (vae.decode(z / vae.config.scaling_factor).sample.clamp(-1, 1) + 1) / 2
    return float((fs.Judge(judge_dir).classify(images) == labels).mean())


# ---- 6. pipeline --------------------------------------------------------------------------------------
def assemble(work: Path, out: Path) -> None:
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(str(work / "vae")),
        text_encoder=text_encoder_from(work / "clip_sd"),
        tokenizer=clip_tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(str(work / "unet")),
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(str(tmp))
    shutil.rmtree(tmp / "tokenizer")
    write_tokenizer(tmp / "tokenizer")
    save_fp16(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"pipeline saved to {out}")


def finish_judge_clip(directory: Path) -> None:
    """fp16 weights; no tokenizer files (the loader falls back to CLIP's own BPE tokenizer)."""
    save_fp16(directory)


def _du(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _train_minutes(out: Path, work: Path) -> dict:
    files = {
        "classifier": out / "judge_classifier",
        "judge_clip": out / "judge_clip",
        "clip_sd": work / "clip_sd",
        "vae": work / "vae",
        "unet": work / "unet",
    }
    return {k: json.loads((v / "train.json").read_text()) for k, v in files.items() if (v / "train.json").is_file()}


@torch.no_grad()
def generate(backend, prompts: list[str], seeds: list[int], batch: int = 100) -> torch.Tensor:
    cache: dict[str, torch.Tensor] = {}
    uncond = backend.encode([""])
    images = []
    for i in tqdm(range(0, len(prompts), batch), desc="generating", dynamic_ncols=True, mininterval=5):
        chunk = prompts[i : i + batch]
        for p in set(chunk) - set(cache):
            cache[p] = backend.encode([p])
        cond = torch.cat([cache[p] for p in chunk])
        images.append(backend.generate(cond, uncond, seeds[i : i + batch]))
    return torch.cat(images)


@torch.no_grad()
def clip_eval(spec: str, data: Data, images01: torch.Tensor | None = None, labels=None, n: int = 1000) -> dict:
    """Zero-shot accuracy with the 10 plain prompts (all 10,000 test images) and caption retrieval among
    ``n`` test images with one random caption each (a hit: the top caption / image is compatible)."""
    from diffsearch.objectives.clip import ClipObjective

    clip = ClipObjective(spec)
    text = F.normalize(clip.text_features([fs.plain_prompt(c) for c in range(10)]), dim=-1)

    def image_feats(x01):
        return F.normalize(torch.cat([clip.image_features(x01[i : i + 500]) for i in range(0, len(x01), 500)]), dim=-1)

    test01 = grey3(data.test_x)
    feats = image_feats(test01)
    out = {"zero_shot_test": float(((feats @ text.T).argmax(1).numpy() == data.test_y).mean())}
    texts, said = data.captions("test", 1, 123, empty=0.0)
    said = torch.from_numpy(said[:n, 0])
    lbs = torch.from_numpy(np.stack([data.test_y, data.test_b, data.test_s], 1)[:n])
    cap = F.normalize(clip.text_features(texts[:n]), dim=-1)
    ok = compatible(lbs, said)  # images x captions
    sims = feats[:n] @ cap.T
    out["image_to_caption_top1"] = float(ok[torch.arange(n), sims.argmax(1)].float().mean())
    out["caption_to_image_top1"] = float(ok[sims.argmax(0), torch.arange(n)].float().mean())
    out["exact_pair_top1_of_1000"] = float((sims.argmax(1) == torch.arange(n)).float().mean())
    if images01 is not None:
        g = image_feats(images01)
        out["zero_shot_generated"] = float(((g @ text.T).argmax(1).numpy() == labels).mean())
    return out


def report(
    out: Path,
    work: Path,
    path: Path,
    minutes: dict,
    fid_n: int = 1000,
    steps: int = 50,
    floor: bool = True,
    attr_n: int = 20,
    sweep: bool = True,
) -> dict:
    """Every measurement of the model, most important first; ``path`` (markdown) and ``path``.json are
    rewritten after each, so a stopped report keeps what it measured."""
    from diffusers import StableDiffusionPipeline

    from diffsearch.backends.stable_diffusion import SDBackend, load_pipeline
    from diffsearch.plots.images import image_grid
    from diffsearch.objectives.fid import FidReference, inception_features

    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = path.with_name(path.stem + "_samples.png")
    data = Data()
    judge = fs.Judge(out / "judge_classifier")
    r: dict = {
        "sizes_mb": {p.name: round(_du(p), 2) for p in sorted(out.iterdir()) if p.is_dir()},
        "training": _train_minutes(out, work),
    }

    def save(stage: str) -> None:
        r["report_minutes"] = (time.perf_counter() - t0) / 60
        path.with_suffix(".json").write_text(json.dumps(r, indent=1))
        write_markdown(r, path, grid)
        log(f"{stage}: {json.dumps(r.get(stage))[:400]}")

    r["sizes_mb"]["total"] = round(_du(out), 2)
    r["sizes_mb"]["pipeline_parts"] = {
        p.name: round(_du(p), 2) for p in sorted((out / "pipeline").iterdir()) if p.is_dir()
    }
    r["classifier_test_accuracy"] = float(
        (judge.classify(torch.from_numpy(data.test_x).float().div(255)) == data.test_y).mean()
    )
    pipe = load_pipeline(str(out / "pipeline"))
    r["params"] = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")
    }
    save("classifier_test_accuracy")
    backend = SDBackend(pipe, steps=steps, guidance=7.5)

    # 1. the pipeline's own __call__ vs diffsearch's DDIM loop (50 steps, as `diffsearch prompt`)
    plain = StableDiffusionPipeline.from_pretrained(str(out / "pipeline"))
    plain.set_progress_bar_config(disable=True)
    prompt = "a photo of a dark sneaker"
    theirs = plain(
        prompt, num_inference_steps=50, guidance_scale=7.5, output_type="pt", generator=torch.Generator().manual_seed(0)
    ).images
    b50 = SDBackend(pipe, steps=50, guidance=7.5)
    ours = b50.generate(b50.encode([prompt]), b50.encode([""]), [0])
    r["pipeline_check"] = {
        "loads_with_from_pretrained": True,
        "prompt": prompt,
        "steps": 50,
        "guidance": 7.5,
        "dtypes": {k: str(getattr(plain, k).dtype) for k in ("unet", "vae", "text_encoder")},
        "max_abs_diff": float((ours - theirs).abs().max()),
    }
    save("pipeline_check")

    # 2. plain class prompts: fid_n / 10 per class, the templates in turn, generation seeds 0 ..
    labels = np.repeat(np.arange(10), fid_n // 10)
    prompts = [fs.plain_prompt(int(c), fs.TEMPLATES[i % len(fs.TEMPLATES)]) for i, c in enumerate(labels)]
    start = time.perf_counter()
    images = generate(backend, prompts, list(range(len(prompts))))
    r["seconds_per_image"] = (time.perf_counter() - start) / len(prompts)
    pred = judge.classify(images)
    per_template = {
        t: float((pred == labels)[[i % len(fs.TEMPLATES) == j for i in range(len(labels))]].mean())
        for j, t in enumerate(fs.TEMPLATES)
    }
    r["class_prompts"] = {
        "n": len(labels),
        "guidance": 7.5,
        "steps": steps,
        "classifier_accuracy": float((pred == labels).mean()),
        "per_class": {fs.PLAIN[c]: float((pred == labels)[labels == c].mean()) for c in range(10)},
        "per_template": per_template,
    }
    image_grid(
        [(fs.plain_prompt(c), images[labels == c][:8].permute(0, 2, 3, 1).numpy()) for c in range(10)],
        grid,
        title=f"--model fashion, plain class prompts, guidance 7.5, {steps} DDIM steps",
    )
    save("class_prompts")

    # 3. the judge CLIP (real test images, and the generated ones)
    r["judge_clip"] = clip_eval(str(out / "judge_clip"), data, images, labels)
    save("judge_clip")

    # 4. attributes: asked vs measured (side of the class's median on real training images)
    attr = {}
    for kind, words in (("brightness", ("dark", "bright")), ("size", ("small", "large"))):
        asked, labs, texts = [], [], []
        for c in range(10):
            for side, word in enumerate(words):
                for _ in range(attr_n):
                    asked.append(side)
                    labs.append(c)
                    texts.append(fs.attribute_prompt(c, **{kind: word}))
        asked, labs = np.asarray(asked), np.asarray(labs)
        imgs = generate(backend, texts, list(range(len(texts))))
        sides = judge.attribute_sides(imgs, labs)[0 if kind == "brightness" else 1]
        values = fs.measure(imgs)[0 if kind == "brightness" else 1]
        attr[kind] = {
            "n": len(asked),
            "accuracy": float((sides == asked).mean()),
            "mean_measured": {w: float(values[asked == i].mean()) for i, w in enumerate(words)},
            "class_accuracy": float((judge.classify(imgs) == labs).mean()),
        }
        r["attributes"] = attr
        save("attributes")

    # 5. FID: generated images vs real test images, Inception-v3 (the standard graph)
    gen_u8 = (images.mean(1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()[..., None]
    real = FidReference.cached(f"fashion-sd-test-pad32-first{fid_n}", lambda: data.test_x[:fid_n, ..., None])
    r["fid"] = {"n_generated": fid_n, "n_real": fid_n, **real.score(inception_features(gen_u8))}
    save("fid")
    if floor:
        train = FidReference.cached(f"fashion-sd-train-pad32-first{fid_n}", lambda: data.train_x[:fid_n, ..., None])
        r["fid"]["real_train_vs_real_test"] = real.score(train.features)["fid"]
        save("fid")

    # 6. classifier accuracy against guidance (a fifth of the prompts, same generation seeds)
    if sweep:
        sub = np.arange(0, len(labels), 5)
        r["guidance_sweep"] = {7.5: float((pred[sub] == labels[sub]).mean())}
        for g in (1.0, 3.0):
            b = SDBackend(pipe, steps=steps, guidance=g)
            imgs = generate(b, [prompts[i] for i in sub], [int(i) for i in sub])
            r["guidance_sweep"][g] = float((judge.classify(imgs) == labels[sub]).mean())
        r["guidance_sweep"] = dict(sorted(r["guidance_sweep"].items()))
        save("guidance_sweep")
    if (work / "clip_sd").is_dir():
        r["sd_clip"] = clip_eval(str(work / "clip_sd"), data)
        save("sd_clip")
    return r


def write_markdown(r: dict, path: Path, grid: Path) -> None:
    nan = float("nan")
    missing = {"minutes": nan, "steps": 0}
    tr = {k: dict(missing, **r["training"].get(k, {})) for k in ("clip_sd", "vae", "unet", "judge_clip", "classifier")}
    cp = r.get(
        "class_prompts",
        {"n": 0, "steps": 0, "guidance": 7.5, "classifier_accuracy": nan, "per_class": {}, "per_template": {}},
    )
    at = r.get("attributes", {})
    jc = r.get(
        "judge_clip",
        {
            k: nan
            for k in (
                "zero_shot_test",
                "image_to_caption_top1",
                "caption_to_image_top1",
                "exact_pair_top1_of_1000",
                "zero_shot_generated",
            )
        },
    )
    fid = r.get("fid", {"fid": nan, "kid": nan, "kid_std": nan, "n_generated": 0, "n_real": 0})
    pc = r.get("pipeline_check", {"dtypes": {}, "prompt": "", "steps": 0, "guidance": 0, "max_abs_diff": nan})
    r = dict({"guidance_sweep": {}, "seconds_per_image": nan}, **r)
    lines = [
        "# `--model fashion`: a miniature Stable Diffusion trained on Fashion-MNIST",
        "",
        "Built by `benchmarks/build_fashion_sd.py` on 2 shared CPU cores; measured by its last part "
        "(this file and `fashion_sd.json` are written by it). Images are 32x32 (3-channel grey), latents 8x8x4.",
        "",
        "## Parts, sizes and training time",
        "",
        "| part | class | params | files (MB) | training (min) | steps |",
        "|---|---|---|---|---|---|",
        f"| text encoder | CLIPTextModel (text tower of SD's own CLIP) | {r['params']['text_encoder']:,} | "
        f"{r['sizes_mb']['pipeline_parts'].get('text_encoder', 0)} | {tr['clip_sd']['minutes']:.1f} | {tr['clip_sd']['steps']} |",
        f"| VAE | AutoencoderKL 32x32x3 -> 8x8x4 | {r['params']['vae']:,} | "
        f"{r['sizes_mb']['pipeline_parts'].get('vae', 0)} | {tr['vae']['minutes']:.1f} | {tr['vae']['steps']} |",
        f"| UNet | UNet2DConditionModel, cross-attention | {r['params']['unet']:,} | "
        f"{r['sizes_mb']['pipeline_parts'].get('unet', 0)} | {tr['unet']['minutes']:.1f} | {tr['unet']['steps']} |",
        f"| tokenizer | CLIPTokenizer (CLIP's BPE, vocab.json + merges.txt) | - | "
        f"{r['sizes_mb']['pipeline_parts'].get('tokenizer', 0)} | - | - |",
        f"| judge CLIP | CLIPModel (other random seed, other ViT) | - | {r['sizes_mb'].get('judge_clip', 0)} | "
        f"{tr['judge_clip']['minutes']:.1f} | {tr['judge_clip']['steps']} |",
        f"| judge classifier | CNN + attribute thresholds | - | {r['sizes_mb'].get('judge_classifier', 0)} | "
        f"{tr['classifier']['minutes']:.1f} | {tr['classifier']['steps']} |",
        f"| **all** (`diffsearch/models/fashion/`) | | | **{r['sizes_mb']['total']}** | "
        f"{sum(v['minutes'] for v in tr.values()):.1f} | |",
        "",
        f"VAE test reconstruction MSE (0..1 scale): {tr['vae'].get('test_mse_01', float('nan')):.4f}; "
        f"latent scaling factor {tr['vae'].get('scaling_factor', float('nan')):.3f}.",
        "",
        "## Judges",
        "",
        f"- Judge classifier (CNN, real Fashion-MNIST): **{r['classifier_test_accuracy']:.1%}** test accuracy (10,000 images).",
        f"- Judge CLIP: zero-shot accuracy with the 10 plain prompts on the real test set "
        f"**{jc['zero_shot_test']:.1%}**; caption retrieval among 1,000 test images with one random caption each "
        f"(a hit when the top caption fits the image's class and stated attributes): image -> caption "
        f"**{jc['image_to_caption_top1']:.1%}**, caption -> image **{jc['caption_to_image_top1']:.1%}**; exact "
        f"pair top-1 of 1,000: {jc['exact_pair_top1_of_1000']:.1%} (many captions are identical, so this is "
        f"low by construction). On the 1,000 generated images below: zero-shot {jc['zero_shot_generated']:.1%}.",
    ]
    if "sd_clip" in r:
        sc = r["sd_clip"]
        lines.append(
            f"- SD's own CLIP (whose text tower is the text encoder; not a judge): zero-shot "
            f"{sc['zero_shot_test']:.1%}, image -> caption {sc['image_to_caption_top1']:.1%}, "
            f"caption -> image {sc['caption_to_image_top1']:.1%}."
        )
    lines += [
        "",
        "## Generated images",
        "",
        f"{cp['n']:,} images from plain class prompts (100 per class, the {len(cp['per_template'])} caption "
        f'templates in turn, e.g. "a photo of a sneaker"), {cp["steps"]} DDIM steps, guidance {cp["guidance"]} '
        f"(the default of `diffsearch prompt`), diffsearch's own DDIM loop:",
        "",
        f"- **judge-classifier accuracy: {cp['classifier_accuracy']:.1%}** (target >= 80 %; chance 10 %)",
        "- per class: " + ", ".join(f"{k} {v:.0%}" for k, v in cp["per_class"].items()),
        "- per template: " + ", ".join(f'"{k}" {v:.0%}' for k, v in cp["per_template"].items()),
        "- accuracy against guidance (200 of the prompts, same generation seeds): "
        + ", ".join(f"{g} -> {v:.1%}" for g, v in r["guidance_sweep"].items()),
        f"- **FID {fid['fid']:.1f}** ({fid['n_generated']:,} generated vs {fid['n_real']:,} real test images, "
        f"Inception-v3 of `diffsearch/objectives/fid.py`; KID {fid['kid']:.4f} +- {fid['kid_std']:.4f})."
        + (
            f" The floor at this sample size, 1,000 real training images vs the same 1,000 test images: FID "
            f"{fid['real_train_vs_real_test']:.1f}."
            if "real_train_vs_real_test" in fid
            else ""
        ),
        f"- time: {r['seconds_per_image'] * 1000:.0f} ms per image ({cp['steps']} steps, batches of 100, shared cores)",
        "",
        "Attributes asked vs measured (a hit when the image's measured value is on the asked side of the "
        "class's median on real training images; chance 50 %; "
        f"{at.get('brightness', {'n': 0})['n'] // 20} images per class "
        "and word):",
        "",
        "| attribute | words | accuracy | mean measured value per word | class accuracy |",
        "|---|---|---|---|---|",
    ]
    for kind, a in at.items():  # noqa: B007
        words = " / ".join(a["mean_measured"])
        means = ", ".join(f"{w} {v:.3f}" for w, v in a["mean_measured"].items())
        lines.append(
            f"| {kind} ({'mean grey level of the garment' if kind == 'brightness' else 'fraction of the image covered'})"
            f" | {words} | **{a['accuracy']:.1%}** | {means} | {a['class_accuracy']:.1%} |"
        )
    lines += [
        "",
        f"Samples (8 per class, first row of each class): `{grid.name}`.",
        "",
        "## Format checks",
        "",
        f'- `StableDiffusionPipeline.from_pretrained("diffsearch/models/fashion/pipeline")` loads it '
        f"(dtypes {', '.join(f'{k} {v}' for k, v in pc['dtypes'].items())}; the files are float16, the configs "
        "float32).",
        f"- diffsearch's DDIM loop (`SDBackend.generate`) vs the pipeline's own `__call__`, \"{pc['prompt']}\", "
        f"generation seed 0, {pc['steps']} steps, guidance {pc['guidance']}: max abs pixel difference "
        f"**{pc['max_abs_diff']:.2e}** (pixels in 0..1).",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--out", default=str(fs.MODEL_DIR), help="where the shipped model goes (%(default)s)")
    parser.add_argument(
        "--work",
        default=str(Path.home() / ".cache" / "diffsearch" / "fashion-build"),
        help="intermediate parts not shipped: SD's full CLIP, VAE and UNet in fp32 (%(default)s)",
    )
    parser.add_argument(
        "--steps-scale",
        type=float,
        default=1.0,
        help="multiplies every part's training steps (%(default)s); steps: "
        + ", ".join(f"{k} {v}" for k, v in STEPS.items()),
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (%(default)s)")
    parser.add_argument("--no-report", action="store_true", help="skip the measurements (part 7)")
    parser.add_argument(
        "--report",
        default=str(ROOT / "benchmarks" / "results" / "fashion_sd.md"),
        help="where the measurements go (%(default)s, and .json beside it)",
    )
    parser.add_argument("--eval-steps", type=int, default=50, help="DDIM steps of the measured images (%(default)s)")
    parser.add_argument(
        "--attr-images",
        type=int,
        default=20,
        help="images per class and attribute word in the attribute check (%(default)s)",
    )
    parser.add_argument(
        "--fid-images",
        type=int,
        default=1000,
        help="generated images from class prompts, and real test images, for accuracy and FID (%(default)s)",
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip classifier accuracy at guidance 1 and 3")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the FID of real training images vs the real test images (the floor)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    budget = {k: max(1, round(v * args.steps_scale)) for k, v in STEPS.items()}
    log("reading Fashion-MNIST")
    data = Data()
    minutes = {}
    if not (out / "judge_classifier" / "model.safetensors").is_file():
        minutes["classifier"] = train_classifier(data, out / "judge_classifier", budget["classifier"])
    if not (out / "judge_clip" / "model.safetensors").is_file():
        minutes["judge_clip"] = train_clip("judge_clip", data, out / "judge_clip", budget["judge_clip"])
        finish_judge_clip(out / "judge_clip")
    if not (work / "clip_sd" / "model.safetensors").is_file():
        minutes["clip_sd"] = train_clip("clip_sd", data, work / "clip_sd", budget["clip_sd"])
    if not (work / "vae" / "diffusion_pytorch_model.safetensors").is_file():
        minutes["vae"] = train_vae(data, work / "vae", budget["vae"])
    if not (work / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        minutes["unet"] = train_unet(data, work, work / "unet", budget["unet"], out / "judge_classifier")
    if not (out / "pipeline" / "model_index.json").is_file():
        assemble(work, out / "pipeline")
    log(f"trained this run (minutes): {json.dumps({k: round(v, 1) for k, v in minutes.items()})}")
    if not args.no_report:
        report(
            out,
            work,
            Path(args.report),
            minutes,
            fid_n=args.fid_images,
            steps=args.eval_steps,
            floor=not args.no_floor,
            attr_n=args.attr_images,
            sweep=not args.no_sweep,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
