"""FLUX.1 (``FluxPipeline``): CLIP-L (pooled only) and T5 text encoders, a guidance-distilled transformer,
flow matching (flow.py) on 2 x 2 packed latents.

``--guidance`` is FLUX.1-dev's distilled guidance value (an embedding input; FluxPipeline's default 3.5;
FLUX.1-schnell has none). A negative prompt acts only with true classifier-free guidance
(``--true-cfg`` > 1: a second transformer pass per step on the negative prompt, then
neg + true_cfg * (pos - neg), as ``FluxPipeline(true_cfg_scale=...)``); without it the antonym and
library spaces are refused (``negative_prompt_refusal``). A searched prompt goes to both encoders
(``prompt`` and ``prompt_2``, negatives alike).
"""

from __future__ import annotations

import numpy as np
import torch

from diffsearch.backends.families.base import TextEncoder
from diffsearch.backends.families.flow import FlowMatchingBackend

MAX_SEQUENCE_LENGTH = 512  # FluxPipeline's default for T5


class FluxBackend(FlowMatchingBackend):
    family = "flux"
    default_guidance = 3.5  # FluxPipeline's default (distilled guidance)
    max_sequence_length = MAX_SEQUENCE_LENGTH

    def __init__(
        self,
        pipe,
        steps: int = 28,
        guidance: float | None = None,
        height: int | None = None,
        width: int | None = None,
        true_cfg: float = 1.0,
    ):
        self.true_cfg = true_cfg
        super().__init__(pipe, steps, guidance, height, width)

    def _encoders(self) -> list[TextEncoder]:
        p = self.pipe
        return [
            TextEncoder("text_encoder", p.text_encoder, p.tokenizer, p.tokenizer_max_length),
            TextEncoder("text_encoder_2", p.text_encoder_2, p.tokenizer_2, self.max_sequence_length, bos=False),
        ]

    def _default_size(self) -> int:
        return self.pipe.default_sample_size * self.pipe.vae_scale_factor

    @classmethod
    def refusal_for(cls, guidance: float, true_cfg: float = 1.0) -> str | None:
        if true_cfg <= 1:
            return (
                "FLUX is guidance-distilled: a negative prompt acts only with true classifier-free guidance; "
                "pass --true-cfg 4 (a second transformer pass per step) or search the positive prompt "
                "(--space synonym)"
            )
        return None

    def schedule_kwargs(self) -> dict:
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        config = self.scheduler.config
        sigmas = None if config.get("use_flow_sigmas", False) else np.linspace(1.0, 1 / self.steps, self.steps)
        mu = calculate_shift(
            self._packed_hw()[0] * self._packed_hw()[1] // 4,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        return {"sigmas": sigmas, "mu": mu}

    def condition(self, outputs: list):
        return outputs[1][0], outputs[0].pooler_output  # (T5 sequence, CLIP pooled)

    def _packed_hw(self) -> tuple[int, int]:
        f = self.factor * 2
        return 2 * (self.height // f), 2 * (self.width // f)

    def initial_latents(self, seeds: list[int]) -> torch.Tensor:
        h, w = self._packed_hw()
        c = self.denoiser.config.in_channels // 4
        latents = self._randn((c, h, w), seeds)
        return self.pipe._pack_latents(latents, len(seeds), c, h, w)

    def _forward(self, latents, t, embeds, pooled) -> torch.Tensor:
        n = len(latents)
        h, w = self._packed_hw()
        guidance = None
        if self.denoiser.config.guidance_embeds:
            guidance = torch.full([n], self.guidance, device=self.device, dtype=torch.float32)
        text_ids = torch.zeros(embeds.shape[1], 3, device=self.device, dtype=self.dtype)
        image_ids = self.pipe._prepare_latent_image_ids(n, h // 2, w // 2, self.device, self.dtype)
        return self.denoiser(
            hidden_states=latents,
            timestep=t.expand(n).to(latents.dtype) / 1000,
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
        )[0]

    def predict(self, latents, i, t, cond, uncond) -> torch.Tensor:
        v = self._forward(latents, t, *cond)
        if self.true_cfg <= 1:
            return v
        v_neg = self._forward(latents, t, *uncond)
        return v_neg + self.true_cfg * (v - v_neg)

    def passes_per_step(self) -> int:
        return 2 if self.true_cfg > 1 else 1

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        unpacked = self.pipe._unpack_latents(latents, self.height, self.width, self.factor)
        return self._vae_decode(unpacked)
