"""Stable Diffusion 1.x / 2.x (``StableDiffusionPipeline``): one CLIP text encoder, a UNet predicting
epsilon (or v), DDIM as in DPO-Diff's reference.

The conditioning is the text encoder's last hidden state (B x 77 x D). Our DDIM loop is built from the
model's own scheduler config (deterministic with eta 0) and reproduces the pipeline's ``__call__``.
"""

from __future__ import annotations

import torch

from diffsearch.backends.families.base import PipelineBackend, TextEncoder


class SDBackend(PipelineBackend):
    family = "sd"

    def _encoders(self) -> list[TextEncoder]:
        tok = self.pipe.tokenizer
        return [TextEncoder("text_encoder", self.pipe.text_encoder, tok, tok.model_max_length)]

    def _scheduler(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.pipe.scheduler.config)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.denoiser.config.in_channels, self.height // self.factor, self.width // self.factor)

    # ---- text ---------------------------------------------------------------------------------------
    def condition(self, outputs: list):
        return outputs[0][0]  # last hidden state

    # ---- sampling -----------------------------------------------------------------------------------
    def initial_latents(self, seeds: list[int]) -> torch.Tensor:
        latents = [torch.randn(self.latent_shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
        return torch.stack(latents).to(self.device, self.dtype) * self.scheduler.init_noise_sigma

    def unet_kwargs(self, cond, uncond) -> dict:
        return {"encoder_hidden_states": torch.cat([uncond, cond])}

    def predict(self, latents, i, t, cond, uncond) -> torch.Tensor:
        if self.guidance <= 1:  # the pipelines skip the unconditional pass then (turbo models run at 0)
            model_in = self.scheduler.scale_model_input(latents, t)
            kwargs = self.unet_kwargs(cond, uncond)
            kwargs = {
                k: v.chunk(2)[1] if torch.is_tensor(v) else {n: x.chunk(2)[1] for n, x in v.items()}
                for k, v in kwargs.items()
            }
            return self.denoiser(model_in, t, **kwargs).sample
        model_in = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        eps = self.denoiser(model_in, t, **self.unet_kwargs(cond, uncond)).sample
        eps_uncond, eps_cond = eps.chunk(2)
        return eps_uncond + self.guidance * (eps_cond - eps_uncond)

    def step(self, model_output, i, t, latents):
        out = self.scheduler.step(model_output, t, latents)
        return out.prev_sample, out.pred_original_sample

    def passes_per_step(self) -> int:
        return 2 if self.guidance > 1 else 1  # conditional and unconditional in one batch

    def renoise(self, x0, i, noise):
        """DDIM: the state after step ``i`` sits at alpha_bar of the previous timestep (DDIMScheduler.step)."""
        s = self.scheduler
        prev = int(self.timesteps[i]) - s.config.num_train_timesteps // s.num_inference_steps
        a = s.alphas_cumprod[prev] if prev >= 0 else s.final_alpha_cumprod
        a = a.to(x0.device, torch.float32)
        return (a.sqrt() * x0.float() + (1 - a).sqrt() * noise.float()).to(x0.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.pipe.vae.decode(latents / self.pipe.vae.config.scaling_factor).sample
        return (images / 2 + 0.5).clamp(0, 1)
