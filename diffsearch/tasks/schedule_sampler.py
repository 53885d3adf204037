"""Sampling a pretrained model with a given schedule: our loop, built from diffusers' own schedulers.

Two kinds of model:

- ``PipelineSampler``: a text-to-image pipeline of a served family (backends/families: SD 1.x / 2.x, SDXL,
  SD3, FLUX; ``fashion`` and the ``tiny*`` pipelines too). The family backend does the denoiser call and
  guidance; the scheduler is swapped for the schedule's solver, set with ``set_timesteps(timesteps=...)`` or
  ``sigmas=``, exactly as the pipeline's ``__call__`` does with ``pipe(prompt, timesteps=...)``.
- ``UNetSampler``: an unconditional ``UNet2DModel`` with its scheduler (a ``DDPMPipeline`` directory, as
  diffusers' unconditional training script and ``diffsearch hparams`` on images train it).

Both give images in [0, 1], N x C x H x W, one per generation seed (noise drawn on the CPU from the seed),
and run the baselines through the scheduler classes a user would pick (``DDIMScheduler`` with a timestep
spacing, DPM-Solver++ with its default or Karras sigmas, flow Euler's default).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from diffsearch.errors import UsageError
from diffsearch.ledger.interrupt import stop_point
from diffsearch.spaces.schedules import ModelRange, Schedule

BATCH = 64
# DPM-Solver++ as the searched schedules run it: the settings a user's scheduler config may have otherwise
DPM_OVERRIDES = {
    "algorithm_type": "dpmsolver++",
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "final_sigmas_type": "zero",
    "thresholding": False,
}
SPACINGS = ("leading", "trailing", "linspace")


def dpm_settings(config: dict) -> dict[str, Any]:
    """``DPM_OVERRIDES`` plus the model's own x0 clipping: a scheduler config with ``clip_sample`` (the
    DDPM-trained pixel models, ``DDPMPipeline``) clips the predicted clean image to [-1, 1] in DDPM and DDIM;
    DPM-Solver++ reads no ``clip_sample``, but its dynamic thresholding with ``sample_max_value=1`` is that same
    clip (the threshold ``s = clamp(quantile, 1, 1) = 1``). Without it a pixel model whose noise schedule ends
    near alpha_bar = 0 (a cosine schedule: sigma ~ 2e4 at the top) amplifies its noise error into the x0
    prediction, and the many-step samplers are the worst."""
    clips = bool(config.get("clip_sample")) and float(config.get("clip_sample_range", 1.0)) == 1.0
    return DPM_OVERRIDES | ({"thresholding": True, "sample_max_value": 1.0} if clips else {})


def solver_scheduler(schedule_or_solver, config: dict, order: int = 1):
    """A fresh diffusers scheduler for a solver (``Schedule`` or name), built from the model's config."""
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

    solver = schedule_or_solver.solver if isinstance(schedule_or_solver, Schedule) else schedule_or_solver
    if isinstance(schedule_or_solver, Schedule):
        order = schedule_or_solver.order
    if solver == "euler":
        return FlowMatchEulerDiscreteScheduler.from_config(config)
    return DPMSolverMultistepScheduler.from_config(config, solver_order=order, **dpm_settings(config))


def scheduler_line(schedule: Schedule, config: dict | None = None) -> str:
    """The Python line that gives a pipeline the scheduler the schedule runs with."""
    if schedule.solver == "euler":
        return "# the pipeline's own FlowMatchEulerDiscreteScheduler runs custom sigmas as they are"
    extra = ", ".join(f"{k}={v!r}" for k, v in dpm_settings(config or {}).items())
    return (
        f"pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, "
        f"solver_order={schedule.order}, {extra})"
    )


def prediction_of(config: dict, flow: bool) -> str:
    if flow:
        return "flow"
    kind = config.get("prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction"):
        raise UsageError(
            f"the model's scheduler predicts {kind!r}; the solvers here serve epsilon, v_prediction "
            "and flow-matching models"
        )
    return kind


def check_scheduler_class(name: str, flow: bool) -> None:
    """UsageError (one line) for a model scheduler we cannot rebuild as a custom-schedule solver."""
    if flow:
        if name != "FlowMatchEulerDiscreteScheduler":
            raise UsageError(
                f"the model's {name} cannot be driven with a custom sigma list here; save the "
                "pipeline with FlowMatchEulerDiscreteScheduler"
            )
        return
    unsupported = (
        "LCMScheduler",
        "TCDScheduler",
        "FlowMatchEulerDiscreteScheduler",
        "FlowMatchHeunDiscreteScheduler",
        "ScoreSdeVeScheduler",
        "KarrasVeScheduler",
        "CMStochasticIterativeScheduler",
    )
    if name in unsupported:
        raise UsageError(
            f"the model's {name} cannot be driven with a custom timestep list by the solvers here "
            "(DDIM / DPM-Solver++ need a discrete-time epsilon or v model)"
        )


def custom_timesteps_refusal(scheduler_class: str) -> str | None:
    """Why a diffusers scheduler class named by the user cannot take a custom schedule (None if it can)."""
    import diffusers

    cls = getattr(diffusers, scheduler_class, None)
    if cls is None or not hasattr(cls, "set_timesteps"):
        return None
    params = inspect.signature(cls.set_timesteps).parameters
    if "timesteps" in params or "sigmas" in params:
        return None
    return (
        f"diffusers' {scheduler_class} cannot run a custom schedule (its set_timesteps takes no timesteps= or sigmas=)"
    )


class Sampler:
    """What the schedule job needs from a model."""

    model_range: ModelRange
    config: dict  # the model's own scheduler config
    family: str
    resolution: int

    def generate(self, scheduler, seeds: Sequence[int], set_kwargs: dict) -> torch.Tensor:
        raise NotImplementedError

    # ---- schedules ----------------------------------------------------------------------------------
    def set_kwargs(self, schedule: Schedule) -> dict[str, Any]:
        return schedule.call_kwargs()

    def images(self, schedule: Schedule, seeds: Sequence[int]) -> torch.Tensor:
        return self.generate(solver_scheduler(schedule, self.config), seeds, self.set_kwargs(schedule))

    def baseline_images(self, name: str, nfe: int, seeds: Sequence[int]) -> torch.Tensor:
        scheduler, kwargs = self.baseline(name, nfe)
        return self.generate(scheduler, seeds, kwargs)

    def _mu(self) -> dict[str, Any]:
        return {}

    def timesteps_run(self, scheduler, set_kwargs: dict) -> list[float]:
        """The timesteps the denoiser sees with this scheduler (flow: sigma x 1000 after the shift)."""
        scheduler.set_timesteps(**set_kwargs)
        return [round(float(t), 3) for t in scheduler.timesteps]

    def baseline(self, name: str, nfe: int):
        """(scheduler, set_timesteps kwargs) of a baseline named in ``baselines()``."""
        scheduler, kwargs = self._baseline(name, nfe)
        return scheduler, (kwargs | self._mu()) if "num_inference_steps" in kwargs else kwargs

    def _baseline(self, name: str, nfe: int):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if name.startswith("ddim-"):
            return DDIMScheduler.from_config(self.config, timestep_spacing=name[5:]), {"num_inference_steps": nfe}
        if name == "dpm++":  # DPM-Solver++(2M) swapped in with the model's own config: what users do
            return DPMSolverMultistepScheduler.from_config(
                self.config, **dpm_settings(self.config) | {"solver_order": 2}
            ), {"num_inference_steps": nfe}
        if name == "dpm++-karras":
            return DPMSolverMultistepScheduler.from_config(
                self.config, **dpm_settings(self.config) | {"solver_order": 2, "use_karras_sigmas": True}
            ), {"num_inference_steps": nfe}
        if name == "euler":
            return solver_scheduler("euler", self.config), {"num_inference_steps": nfe}
        if name == "ays":
            schedule = self.ays(nfe)
            return solver_scheduler(schedule, self.config), self.set_kwargs(schedule)
        raise ValueError(f"unknown baseline {name!r}")

    def baselines(self, nfe: int) -> list[str]:
        if self.model_range.flow:
            return ["euler"]
        names = [f"ddim-{s}" for s in SPACINGS] + ["dpm++", "dpm++-karras"]
        names += ["ays"] if self.ays(nfe) is not None else []
        # a scheduler whose own schedule repeats a timestep at this NFE cannot step through it (Karras sigmas
        # on a cosine schedule: sigma_max ~ 2e4 puts the first two steps on timestep 998): not a baseline here
        return [name for name in names if len(set(self.timesteps_run(*self.baseline(name, nfe)))) == nfe]

    def ays(self, nfe: int) -> Schedule | None:
        """Align Your Steps (Sabour et al. 2024) for this family, from diffusers' ``AysSchedules``: the
        published 10-step sigmas, log-linearly interpolated to ``nfe`` steps as the authors (and ComfyUI) do,
        mapped to the model's timesteps; only for models with Stable Diffusion's noise schedule."""
        if self.model_range.flow or not _sd_betas(self.config):
            return None
        from diffusers.schedulers.scheduling_utils import AysSchedules

        key = {"sd": "StableDiffusionSigmas", "sdxl": "StableDiffusionXLSigmas"}.get(self.family)
        if key is None or key not in AysSchedules:
            return None
        if nfe == 10:  # the published timesteps themselves
            return Schedule("dpm++", timesteps=tuple(AysSchedules[key.replace("Sigmas", "Timesteps")]), order=2)
        published = np.array(AysSchedules[key][:-1], dtype=float)  # the last is 0 (the clean image)
        log_sigma = np.interp(np.linspace(0, 1, nfe), np.linspace(0, 1, len(published)), np.log(published))
        alphas = np.cumprod(1 - _betas(self.config))
        model_log_sigma = np.log(np.sqrt((1 - alphas) / alphas))  # increasing in t
        t = np.interp(log_sigma, model_log_sigma, np.arange(len(alphas))).round().astype(int)
        t = np.clip(t, 0, len(alphas) - 1)
        for k in range(1, nfe):  # keep strictly decreasing after rounding
            t[k] = min(t[k], t[k - 1] - 1)
        if t[-1] < 0:
            return None
        return Schedule("dpm++", timesteps=tuple(int(x) for x in t), order=2)


def _betas(config: dict) -> np.ndarray:
    T = config["num_train_timesteps"]
    if config.get("beta_schedule") == "scaled_linear":
        return np.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, T) ** 2
    return np.linspace(config["beta_start"], config["beta_end"], T)


def _sd_betas(config: dict) -> bool:
    return (
        config.get("beta_schedule") == "scaled_linear"
        and config.get("num_train_timesteps") == 1000
        and abs(config.get("beta_start", 0) - 0.00085) < 1e-9
        and abs(config.get("beta_end", 0) - 0.012) < 1e-9
        and not config.get("trained_betas")
    )


@dataclass
class PipelineSampler(Sampler):
    """A served text-to-image family; prompts are taken in turn by the seeds (seed i: prompt i mod P)."""

    backend: Any  # a PipelineBackend
    prompts: list[str]

    def __post_init__(self) -> None:
        self.config = dict(self.backend.pipe.scheduler.config)
        flow = self.backend.family in ("sd3", "flux")
        check_scheduler_class(type(self.backend.pipe.scheduler).__name__, flow)
        self.model_range = ModelRange(prediction_of(self.config, flow), int(self.config["num_train_timesteps"]))
        self.family = self.backend.family
        self.resolution = self.backend.height
        self._conds: dict[str, Any] = {}

    def _cond(self, prompt: str):
        if prompt not in self._conds:
            with torch.no_grad():
                self._conds[prompt] = self.backend.encode([prompt])
        return self._conds[prompt]

    def prompt_for(self, index: int) -> str:
        return self.prompts[index % len(self.prompts)]

    def set_kwargs(self, schedule: Schedule) -> dict[str, Any]:
        return schedule.call_kwargs() | self._mu()

    def _mu(self) -> dict[str, Any]:
        mu = self.backend.schedule_kwargs().get("mu")
        return {} if mu is None else {"mu": mu}

    @torch.no_grad()
    def generate(
        self, scheduler, seeds: Sequence[int], set_kwargs: dict, indices: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Images for ``seeds``; seed ``seeds[j]`` gets prompt ``indices[j]`` (default j)."""
        from diffsearch.backends.families.base import map_cond

        indices = list(range(len(seeds))) if indices is None else list(indices)
        out = []
        self.backend.scheduler = scheduler  # the backend's predict / step / initial noise use it
        empty = self._cond("")
        for start in range(0, len(seeds), BATCH):
            chunk, idx = list(seeds[start : start + BATCH]), indices[start : start + BATCH]
            conds = [self._cond(self.prompt_for(i)) for i in idx]
            cond = _stack(conds)
            uncond = map_cond(lambda c: c.expand(len(chunk), *c.shape[1:]), empty)
            scheduler.set_timesteps(device=self.backend.device, **set_kwargs)
            out.append(self._loop(cond, uncond, chunk).float().cpu())
        return torch.cat(out)

    def _loop(self, cond, uncond, seeds: list[int]) -> torch.Tensor:
        """The family's ``generate`` with the solver's own ``step`` (a multistep solver keeps its history;
        flow families step from the scheduler's sigmas by index, as their backend does)."""
        b, flow = self.backend, self.model_range.flow
        latents = b.initial_latents(seeds)
        for i, t in enumerate(b.scheduler.timesteps):
            stop_point()  # Ctrl-C and --trial-timeout stop here, between steps
            output = b.predict(latents, i, t, cond, uncond)
            latents = b.step(output, i, t, latents)[0] if flow else b.scheduler.step(output, t, latents).prev_sample
        return b.decode(latents)


def _stack(conds: list):
    if isinstance(conds[0], tuple):
        return tuple(torch.cat([c[i] for c in conds]) for i in range(len(conds[0])))
    return torch.cat(conds)


@dataclass
class UNetSampler(Sampler):
    """An unconditional UNet2DModel and its scheduler config (images in [-1, 1] as diffusers trains them)."""

    unet: Any
    config: dict
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.model_range = ModelRange(prediction_of(self.config, False), int(self.config["num_train_timesteps"]))
        self.family = "unet"
        self.resolution = int(self.unet.config.sample_size)

    @torch.no_grad()
    def generate(self, scheduler, seeds: Sequence[int], set_kwargs: dict) -> torch.Tensor:
        c, r = self.unet.config.in_channels, self.resolution
        out = []
        for start in range(0, len(seeds), BATCH):
            chunk = list(seeds[start : start + BATCH])
            x = torch.stack([torch.randn((c, r, r), generator=torch.Generator("cpu").manual_seed(s)) for s in chunk])
            scheduler.set_timesteps(device=self.device, **set_kwargs)
            x = x.to(self.device) * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                eps = self.unet(scheduler.scale_model_input(x, t), t).sample
                x = scheduler.step(eps, t, x).prev_sample
            out.append(((x.float().clamp(-1, 1) + 1) / 2).cpu())
        return torch.cat(out)


def load_unet_dir(path: Path, device: str = "cpu") -> UNetSampler:
    """A diffusers directory with ``unet/`` (UNet2DModel) and ``scheduler/`` (a DDPMPipeline, say)."""
    from diffusers import UNet2DModel

    index = json.loads((path / "model_index.json").read_text())
    sched_name = (index.get("scheduler") or [None, "?"])[1]
    check_scheduler_class(sched_name, False)
    config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    unet = UNet2DModel.from_pretrained(str(path / "unet")).to(device).eval().requires_grad_(False)
    return UNetSampler(unet, config, device)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[0, 1] N x C x H x W -> uint8 N x H x W x C (what the FID network takes)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
