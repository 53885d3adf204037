"""A gradient on the timesteps through the teacher-matching loss (as LD3, Tong et al., ICLR 2025).

LD3 learns the discretisation of a sampler by backpropagating the distance between the student's samples
and the teacher's through the whole sampling chain. Here the student is deterministic DDIM (DPM-Solver++ of
order 1) in continuous time: the space's gaps (in [0, 1], through a sigmoid) give real-valued timesteps by
the space's own stick-breaking map without the final rounding, alpha_bar(t) is interpolated log-linearly
between the model's integer timesteps, and the denoiser is called at the real-valued t (its sinusoidal
time embedding is differentiable). Adam moves the gaps; after every step the rounded schedule is run as an
ordinary trial of the study (diffusers' own scheduler, the job's objective), so the ledger holds every
point the gradient visited and the best of them is the result. It starts from the best trial so far (the
baselines' points, evaluated first). The chain runs sequentially in the searching process (the gradient
needs the whole chain), so ``--workers`` add nothing to it. Discrete-time models only (epsilon prediction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import optuna
import torch

from diffsearch.errors import UsageError
from diffsearch.spaces.schedules import ScheduleSpace


@dataclass(frozen=True)
class GradientSearcher:
    lr: float = 0.3  # Adam on the gaps' logits
    clip: float = 4.0  # logits kept in [-clip, clip] (gaps in ~[0.02, 0.98])

    def sampler(self, space: ScheduleSpace, seed: int) -> optuna.samplers.BaseSampler:
        # every trial of a gradient search is enqueued; a worker that joins draws nothing of its own
        return optuna.samplers.RandomSampler(seed=seed)

    def run(
        self,
        space: ScheduleSpace,
        sampler,
        seeds: list[int],
        teacher: torch.Tensor,
        start: dict[str, Any],
        steps: int,
        evaluate: Callable[[dict[str, Any]], float | None],
    ) -> None:
        """``steps`` Adam steps from ``start``; ``evaluate(params)`` runs each rounded point as a trial."""
        if space.model_range.flow or space.model_range.prediction != "epsilon":
            raise UsageError(
                "--searcher gradient differentiates DDIM in continuous time: it serves discrete-time "
                "epsilon-prediction models (use evolution, tpe or gp on this model)"
            )
        chain = ContinuousDDIM(sampler, space)
        gaps = np.clip([float(start[n]) for n in space.gap_names], 1e-3, 1 - 1e-3)
        logits = torch.tensor(np.log(gaps / (1 - gaps)), dtype=torch.float32, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=self.lr)
        for _ in range(steps):
            optimizer.zero_grad()
            images = chain.images(torch.sigmoid(logits), seeds)
            loss = (images - teacher).pow(2).mean()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                logits.clamp_(-self.clip, self.clip)
            params = {n: float(v) for n, v in zip(space.gap_names, torch.sigmoid(logits).tolist())}
            if "order" in space.free:
                params["order"] = 1  # the chain the gradient went through is first order
            evaluate(params)


class ContinuousDDIM:
    """DDIM (eta 0) with real-valued timesteps, differentiable w.r.t. them, on a schedule sampler's model."""

    def __init__(self, sampler, space: ScheduleSpace):
        from diffsearch.tasks.schedule_sampler import dpm_settings, solver_scheduler

        self.sampler, self.space = sampler, space
        self.clip_x0 = bool(dpm_settings(sampler.config).get("thresholding"))  # as the solver clips x0
        scheduler = solver_scheduler("ddim", sampler.config)
        self.log_alpha_bar = torch.log(scheduler.alphas_cumprod.double()).float()
        self.scheduler = scheduler

    def timesteps(self, gaps: torch.Tensor) -> torch.Tensor:
        """The space's map from gaps to timesteps, before the rounding (real-valued, strictly decreasing)."""
        n, T = self.space.nfe, self.space.model_range.num_train_timesteps
        exponents = torch.tensor([math.log2(n - k + 2) for k in range(1, n + 1)])
        levels = torch.cumprod(1 - gaps.clamp(0, 1) ** exponents, 0)
        offsets = torch.arange(n - 1, -1, -1, dtype=torch.float32)
        return (T - n + 1 - 1e-6) * levels + offsets

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        low = t.detach().floor().clamp(0, len(self.log_alpha_bar) - 2).long()
        w = t - low
        return torch.exp((1 - w) * self.log_alpha_bar[low] + w * self.log_alpha_bar[low + 1])

    def images(self, gaps: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        ts = self.timesteps(gaps)
        model = self.sampler
        x = self._noise(seeds)
        for k in range(len(ts)):
            a = self.alpha_bar(ts[k])
            eps = self._eps(x, ts[k], seeds)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x0 = x0.clamp(-1, 1) if self.clip_x0 else x0
            if k + 1 < len(ts):
                a_next = self.alpha_bar(ts[k + 1])
                x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
            else:
                x = x0  # DPM-Solver++'s last step goes to sigma 0 (final_sigmas_type "zero")
        return self._decode(x) if hasattr(model, "backend") else ((x.clamp(-1, 1) + 1) / 2)

    # ---- the two kinds of model ---------------------------------------------------------------------
    def _noise(self, seeds: list[int]) -> torch.Tensor:
        if hasattr(self.sampler, "backend"):
            self.sampler.backend.scheduler = self.scheduler  # its init_noise_sigma (1) and scale_model_input
            return self.sampler.backend.initial_latents(seeds)
        unet = self.sampler.unet
        c, r = unet.config.in_channels, self.sampler.resolution
        return torch.stack([torch.randn((c, r, r), generator=torch.Generator("cpu").manual_seed(s)) for s in seeds])

    def _eps(self, x: torch.Tensor, t: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        if hasattr(self.sampler, "backend"):
            from diffsearch.tasks.schedule_sampler import _stack

            s = self.sampler
            cond = _stack([s._cond(s.prompt_for(i)) for i in range(len(seeds))])
            uncond = s._cond("")
            uncond = (
                uncond.expand(len(seeds), *uncond.shape[1:])
                if torch.is_tensor(uncond)
                else tuple(u.expand(len(seeds), *u.shape[1:]) for u in uncond)
            )
            return s.backend.predict(x, 0, t, cond, uncond)
        return self.sampler.unet(x, t.reshape(1).expand(len(x))).sample

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.sampler.backend.decode(latents)
