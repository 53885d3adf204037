"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): CLIP-L, CLIP-G and T5 text encoders, an MMDiT
transformer, flow matching (flow.py).

Conditioning: both CLIPs' penultimate hidden states concatenated along features, zero-padded to T5's
width, then T5's last hidden state appended along the sequence (77 + ``max_sequence_length`` tokens);
pooled: both CLIPs' projections concatenated. Without T5 (a pipeline saved with ``text_encoder_3=None``)
its part is zeros, as in diffusers. A searched prompt goes to all three encoders (``prompt``, ``_2``,
``_3`` and ``negative_prompt``, ``_2``, ``_3`` alike).
"""

from __future__ import annotations

import torch

from diffsearch.backends.families.base import TextEncoder
from diffsearch.backends.families.flow import FlowMatchingBackend

MAX_SEQUENCE_LENGTH = 256  # StableDiffusion3Pipeline's default for T5


class SD3Backend(FlowMatchingBackend):
    family = "sd3"
    default_guidance = 7.0  # StableDiffusion3Pipeline's default
    max_sequence_length = MAX_SEQUENCE_LENGTH

    def _encoders(self) -> list[TextEncoder]:
        p = self.pipe
        encoders = [
            TextEncoder("text_encoder", p.text_encoder, p.tokenizer, p.tokenizer_max_length),
            TextEncoder("text_encoder_2", p.text_encoder_2, p.tokenizer_2, p.tokenizer_max_length),
        ]
        if p.text_encoder_3 is not None:
            encoders.append(
                TextEncoder("text_encoder_3", p.text_encoder_3, p.tokenizer_3, self.max_sequence_length, bos=False)
            )
        return encoders

    def _default_size(self) -> int:
        return self.pipe.default_sample_size * self.pipe.vae_scale_factor

    def schedule_kwargs(self) -> dict:
        config = self.scheduler.config
        if not config.get("use_dynamic_shifting", False):
            return {}
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        patch = self.denoiser.config.patch_size
        seq = (self.height // self.factor // patch) * (self.width // self.factor // patch)
        return {
            "mu": calculate_shift(
                seq,
                config.get("base_image_seq_len", 256),
                config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5),
                config.get("max_shift", 1.16),
            )
        }

    def condition(self, outputs: list):
        clip = torch.cat([o.hidden_states[-2] for o in outputs[:2]], dim=-1)
        pooled = torch.cat([o[0] for o in outputs[:2]], dim=-1)
        if len(outputs) > 2:
            t5 = outputs[2][0]
        else:
            t5 = torch.zeros(
                clip.shape[0],
                self.max_sequence_length,
                self.denoiser.config.joint_attention_dim,
                device=clip.device,
                dtype=clip.dtype,
            )
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return torch.cat([clip, t5], dim=-2), pooled

    def initial_latents(self, seeds: list[int]) -> torch.Tensor:
        shape = (self.denoiser.config.in_channels, self.height // self.factor, self.width // self.factor)
        return self._randn(shape, seeds)

    def predict(self, latents, i, t, cond, uncond) -> torch.Tensor:
        (c, c_pooled), (u, u_pooled) = cond, uncond
        if self.guidance <= 1:
            return self.denoiser(
                hidden_states=latents,
                timestep=t.expand(len(latents)),
                encoder_hidden_states=c,
                pooled_projections=c_pooled,
                return_dict=False,
            )[0]
        v = self.denoiser(
            hidden_states=torch.cat([latents, latents]),
            timestep=t.expand(2 * len(latents)),
            encoder_hidden_states=torch.cat([u, c]),
            pooled_projections=torch.cat([u_pooled, c_pooled]),
            return_dict=False,
        )[0]
        v_uncond, v_cond = v.chunk(2)
        return v_uncond + self.guidance * (v_cond - v_uncond)

    def passes_per_step(self) -> int:
        return 2 if self.guidance > 1 else 1

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._vae_decode(latents)
