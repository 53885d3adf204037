"""SDXL (``StableDiffusionXLPipeline``): two CLIP text encoders, pooled embeddings and size conditioning.

The sequence embeddings are both encoders' penultimate hidden states concatenated along features (768 +
1280 in SDXL base); the pooled embedding is encoder 2's projection (``text_embeds``); the UNet also takes
six ``add_time_ids`` (original size, crop top-left, target size). A searched prompt goes to both encoders
(``prompt`` and ``prompt_2``, ``negative_prompt`` and ``negative_prompt_2`` alike). Sampling is DDIM
built from the model's own scheduler config, as for SD 1.x / 2.x. SDXL-Turbo runs with guidance 0: the
negative prompt then has no effect (``negative_prompt_refusal``).
"""

from __future__ import annotations

import torch

from diffsearch.backends.families.base import TextEncoder
from diffsearch.backends.families.sd import SDBackend


class SDXLBackend(SDBackend):
    family = "sdxl"
    default_guidance = 5.0  # StableDiffusionXLPipeline's default

    def _encoders(self) -> list[TextEncoder]:
        p = self.pipe
        return [
            TextEncoder("text_encoder", p.text_encoder, p.tokenizer, p.tokenizer.model_max_length),
            TextEncoder("text_encoder_2", p.text_encoder_2, p.tokenizer_2, p.tokenizer_2.model_max_length),
        ]

    def _default_size(self) -> int:
        return self.pipe.default_sample_size * self.pipe.vae_scale_factor

    def condition(self, outputs: list):
        embeds = torch.cat([o.hidden_states[-2] for o in outputs], dim=-1)
        return embeds, outputs[-1][0]  # (sequence embeddings, pooled projection of encoder 2)

    def time_ids(self, n: int) -> torch.Tensor:
        size = (self.height, self.width)
        ids = torch.tensor([list(size + (0, 0) + size)], device=self.device, dtype=self.dtype)
        return ids.expand(n, -1)

    def unet_kwargs(self, cond, uncond) -> dict:
        (c, c_pooled), (u, u_pooled) = cond, uncond
        n = 2 * len(c)
        return {
            "encoder_hidden_states": torch.cat([u, c]),
            "added_cond_kwargs": {"text_embeds": torch.cat([u_pooled, c_pooled]), "time_ids": self.time_ids(n)},
        }
