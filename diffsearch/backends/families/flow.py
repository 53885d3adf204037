"""Flow matching, shared by SD3 and FLUX: the model predicts v = noise - x0 and the sampler is Euler on sigma.

    x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * v        (FlowMatchEulerDiscreteScheduler.step, deterministic)
    x0      = x_i - sigma_i * v                         (closed form: the shortcut gradient's end point)

The step is written from the scheduler's own ``sigmas`` (after its ``set_timesteps``) instead of calling
its ``step``: that one counts steps internally, ours is indexed, so one schedule serves every loop.
"""

from __future__ import annotations

import torch

from diffsearch.backends.families.base import PipelineBackend
from diffsearch.errors import UsageError


class FlowMatchingBackend(PipelineBackend):
    def _denoiser(self):
        return self.pipe.transformer

    def _scheduler(self):
        from diffusers import FlowMatchEulerDiscreteScheduler

        config = self.pipe.scheduler.config
        if (
            config.get("stochastic_sampling", False)
            or self.pipe.scheduler.__class__.__name__ != "FlowMatchEulerDiscreteScheduler"
        ):
            raise UsageError(
                f"{self.pipe.__class__.__name__} with {self.pipe.scheduler.__class__.__name__} "
                "(stochastic or not flow-matching Euler) is not served; save the pipeline with "
                "FlowMatchEulerDiscreteScheduler"
            )
        return FlowMatchEulerDiscreteScheduler.from_config(config)

    def step(self, model_output, i, t, latents):
        sigmas = self.scheduler.sigmas
        x0 = latents - sigmas[i] * model_output
        prev = (latents.float() + (sigmas[i + 1] - sigmas[i]) * model_output).to(model_output.dtype)
        return prev, x0

    def renoise(self, x0, i, noise):
        """Flow matching: the state after step ``i`` is (1 - sigma) x0 + sigma noise at sigma_{i+1}."""
        sigma = self.scheduler.sigmas[i + 1].to(x0.device, torch.float32)
        return ((1 - sigma) * x0.float() + sigma * noise.float()).to(x0.dtype)

    def _vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = latents / vae.config.scaling_factor + vae.config.shift_factor
        images = vae.decode(latents.to(vae.dtype)).sample
        return (images / 2 + 0.5).clamp(0, 1)

    def _randn(self, shape, seeds: list[int]) -> torch.Tensor:
        latents = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
        return torch.stack(latents).to(self.device, self.dtype)
