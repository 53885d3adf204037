"""The noise space of a pretrained pipeline: the initial latent of an image, and noise injected along its path.

A point of the space (``Candidate``) is what makes one image with the model's own sampler:

- its initial latent, kept as the generator seed that draws it (``seed``: ``pipe(generator=
  torch.Generator("cpu").manual_seed(seed))``) or, once a searcher has moved it, as the latent itself
  (``latent``: ``pipe(latents=...)``);
- optionally, noise injected along the path (``injections``: step index -> the latents after that step,
  rebuilt by the family's ``renoise`` hook from the step's clean estimate and fresh noise). diffusers
  replays them with ``callback_on_step_end``, which may replace ``latents`` after any step.

Every family served by backends/families (SD 1.x / 2.x, SDXL, SD3, FLUX) draws its initial latents as its
diffusers pipeline does (one ``torch.randn`` per image on a CPU generator; FLUX packs them 2 x 2), so a
seed found here makes the same image in the user's pipeline. ``reproduce_call`` prints the exact call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from diffsearch.backends.families.base import PipelineBackend
from diffsearch.errors import UsageError

NOISE_SPACES = {
    "initial": "the initial latent of each image: its generator seed, or the latent itself once moved "
    "(best-of-n, zero-order, gradient)",
    "initial+path": "the initial latent and noise injected along the sampling path: re-noised intermediate "
    "states (paths, particles)",
}


@dataclass
class Candidate:
    """One image's noise: a seed or a latent (1 x latent shape), and injections along the path."""

    seed: int | None = None
    latent: torch.Tensor | None = None
    injections: dict[int, torch.Tensor] = field(default_factory=dict)
    origin: str = "random"  # user / random / neighbour / branch / particle / gradient

    def key(self) -> str | None:
        """What identifies the image in the ledger (a finished trial is read back, never generated twice);
        None for moved latents and injected paths (the trial records them, but is not looked up)."""
        return f"seed:{self.seed}" if self.seed is not None and self.latent is None and not self.injections else None

    def describe(self) -> dict:
        return {
            "seed": self.seed,
            "moved": self.latent is not None,
            "injections": sorted(self.injections),
            "origin": self.origin,
        }


def has_noise_hooks(backend: PipelineBackend) -> bool:
    """Whether the family can inject noise along the path (paths and particles searchers need it)."""
    return type(backend).renoise is not PipelineBackend.renoise


class NoiseSpace:
    """The initial latents of one family's backend: drawing, moving, loading and saving them."""

    def __init__(self, backend: PipelineBackend):
        self.backend = backend
        self.shape = tuple(backend.initial_latents([0]).shape[1:])  # per image, as the pipeline draws it
        # SD pipelines scale ``latents=`` by the scheduler's init_noise_sigma (1 for DDIM); flow matching does not
        self.sigma = (
            float(getattr(backend.scheduler, "init_noise_sigma", 1.0)) if backend.family in ("sd", "sdxl") else 1.0
        )

    # ---- drawing and moving ---------------------------------------------------------------------------
    def initial(self, candidates: list[Candidate]) -> torch.Tensor:
        """The initial latents of ``candidates`` (N x shape), as the backend's sampler takes them."""
        out = []
        for c in candidates:
            if c.latent is not None:
                out.append(c.latent.reshape(self.shape).to(self.backend.device, self.backend.dtype) * self.sigma)
            else:
                out.append(self.backend.initial_latents([c.seed])[0])
        return torch.stack(out)

    def unit(self, candidate: Candidate) -> torch.Tensor:
        """The candidate's initial latent with unit variance (what neighbours and gradients move), 1 x shape."""
        return (self.initial([candidate]) / self.sigma).float().cpu()

    def noise(self, generator: torch.Generator, n: int = 1) -> torch.Tensor:
        return torch.randn((n, *self.shape), generator=generator)

    def neighbour(self, pivot: torch.Tensor, radius: float, generator: torch.Generator) -> torch.Tensor:
        """A latent at distance ~``radius`` (per unit variance) from ``pivot``, still standard normal in law:
        (pivot + radius * e) / sqrt(1 + radius^2) (zero-order search, Ma et al., CVPR 2025)."""
        return (pivot + radius * self.noise(generator)) / (1 + radius**2) ** 0.5

    # ---- files ----------------------------------------------------------------------------------------
    def load_latent(self, path: str) -> torch.Tensor:
        """A user's latent file (.pt holding a tensor or {"latents": tensor}, or .safetensors with "latents"),
        checked against the model's latent shape; 1 x shape, unit variance."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise UsageError(f"--latent {path}: no such file")
        try:
            if p.suffix == ".safetensors":
                from safetensors.torch import load_file

                tensor = load_file(str(p))["latents"]
            else:
                tensor = torch.load(p, map_location="cpu", weights_only=True)
                tensor = tensor["latents"] if isinstance(tensor, dict) else tensor
        except Exception as exc:  # not a tensor file, no "latents" in it
            raise UsageError(f"--latent {path}: cannot read a latent tensor ({type(exc).__name__})") from None
        if (
            not torch.is_tensor(tensor)
            or tuple(tensor.shape[-len(self.shape) :]) != self.shape
            or tensor.numel() != torch.Size(self.shape).numel()
        ):
            got = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
            raise UsageError(
                f"--latent {path}: shape {got} does not fit this model at this size: "
                f"it takes 1 x {' x '.join(map(str, self.shape))}"
            )
        return tensor.reshape(1, *self.shape).float()

    def save(self, candidate: Candidate, path: Path) -> dict:
        """``path``.pt (latents for ``pipe(latents=)`` and injections for ``callback_on_step_end``) and
        ``path``.safetensors (the latents alone); returns what was written."""
        latents = (self.initial([candidate]) / self.sigma).float().cpu().contiguous()
        payload = {
            "latents": latents,
            "seed": candidate.seed,
            "moved": candidate.latent is not None,
            "injections": {
                int(i): t.reshape(1, *self.shape).float().cpu().contiguous() for i, t in candidate.injections.items()
            },
        }
        torch.save(payload, path.with_suffix(".pt"))
        from safetensors.torch import save_file

        save_file({"latents": latents}, str(path.with_suffix(".safetensors")))
        return {"pt": str(path.with_suffix(".pt")), "safetensors": str(path.with_suffix(".safetensors"))}


# ---- the user's own pipeline -------------------------------------------------------------------------
def conditioning(backend: PipelineBackend, prompt: str, negative: str = ""):
    """(cond, uncond) as the family's pipeline builds them for ``pipe(prompt, negative_prompt=negative)``:
    without a negative prompt, SDXL pipelines saved with ``force_zeros_for_empty_prompt`` use zeros for the
    unconditional pass."""
    with torch.no_grad():
        cond = backend.encode([prompt])
        if (
            not negative
            and backend.family == "sdxl"
            and getattr(backend.pipe.config, "force_zeros_for_empty_prompt", False)
        ):
            uncond = tuple(torch.zeros_like(c) for c in cond)
        else:
            uncond = backend.encode([negative])
    return cond, uncond


def pipeline_kwargs(backend: PipelineBackend, prompt: str, negative: str = "") -> dict:
    """What ``pipe(...)`` needs besides the noise to run the sampler our backend runs."""
    kw = {
        "prompt": prompt,
        "num_inference_steps": backend.steps,
        "guidance_scale": backend.guidance,
        "height": backend.height,
        "width": backend.width,
    }
    if negative:
        kw["negative_prompt"] = negative
    if backend.family == "flux" and backend.true_cfg > 1:
        kw.update(true_cfg_scale=backend.true_cfg, negative_prompt=negative)
    return kw


def noise_kwargs(saved: dict, generator_device: str = "cpu") -> dict:
    """``generator=`` or ``latents=`` (and ``callback_on_step_end=`` for injections) from a saved .pt."""
    injections = saved.get("injections") or {}
    if saved.get("seed") is not None and not injections and saved.get("moved") is False:
        return {"generator": torch.Generator(generator_device).manual_seed(int(saved["seed"]))}
    kw: dict = {"latents": saved["latents"]}
    if injections:
        kw["callback_on_step_end"] = (
            lambda _pipe, i, _t, k: {"latents": injections[i].reshape(k["latents"].shape).to(k["latents"])}
            if i in injections
            else k
        )
    return kw


def regenerate(backend: PipelineBackend, prompt: str, saved: dict, negative: str = "") -> torch.Tensor:
    """The image the user's diffusers pipeline makes from a saved noise (1 x 3 x H x W in [0, 1])."""
    pipe = backend.pipe
    if backend.family in ("sd", "sdxl"):
        from diffusers import DDIMScheduler

        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    kw = {**pipeline_kwargs(backend, prompt, negative), **noise_kwargs(saved)}
    if "latents" in kw:
        kw["latents"] = kw["latents"].to(backend.device, backend.dtype)
    with torch.no_grad():
        return pipe(**kw, output_type="pt").images


def reproduce_call(backend: PipelineBackend, model: str, prompt: str, record: dict, negative: str = "") -> str:
    """The exact Python a user runs to make the chosen image again with diffusers alone."""
    cls = type(backend.pipe).__name__
    if model == "fashion":  # the shipped pipeline's own directory
        from diffsearch.backends.fashion_sd import PIPELINE_DIR

        model = str(PIPELINE_DIR)
    lines = [
        "import torch",
        f"from diffusers import {cls}" + (", DDIMScheduler" if backend.family in ("sd", "sdxl") else ""),
        f"pipe = {cls}.from_pretrained({model!r})",
    ]
    if backend.family in ("sd", "sdxl"):
        lines.append("pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the sampler searched")
    args = ", ".join(f"{k}={v!r}" for k, v in pipeline_kwargs(backend, prompt, negative).items() if k != "prompt")
    if record.get("seed") is not None and not record.get("moved") and not record.get("injections"):
        noise = f'generator=torch.Generator("cpu").manual_seed({record["seed"]})'
    else:
        lines.append(f"saved = torch.load({record['files']['pt']!r})")
        noise = 'latents=saved["latents"]'
        if record.get("injections"):
            lines.append('inject = saved["injections"]  # latents after these steps, re-noised by the search')
            noise += ', callback_on_step_end=lambda p, i, t, kw: {"latents": inject[i]} if i in inject else kw'
    lines.append(f"image = pipe({prompt!r}, {args}, {noise}).images[0]")
    return "\n".join(lines)


__all__ = [
    "Candidate",
    "NOISE_SPACES",
    "NoiseSpace",
    "conditioning",
    "has_noise_hooks",
    "noise_kwargs",
    "pipeline_kwargs",
    "regenerate",
    "reproduce_call",
]
