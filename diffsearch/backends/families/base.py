"""What every pipeline family shares: text encoders seen one way, our own sampling loop, the shortcut gradient.

A family (sd.py, sdxl.py, sd3.py, flux.py) says how its encoders' outputs become the denoiser's
conditioning (``condition``), how one guided denoiser call looks (``predict``), and how a step moves the
latents and what its closed-form x0 is (``step``). The loop, the shortcut gradient and the cost count live
here, once.

Shortcut gradient (DPO-Diff, Wang et al., ICML 2024): sample without gradient from T down to step index
t, run K denoiser steps with gradient, take the closed-form x0 of the last of them (epsilon prediction:
the scheduler's ``pred_original_sample``; flow matching: x0 = x_t - sigma_t * v), decode it with the VAE.
When the window reaches the end of the schedule (t + K = T) the decoded sample is the generated image
itself, so the gradient is exactly full backpropagation through the sampling loop.

A conditioning (what ``encode`` returns) is a tensor for SD 1.x / 2.x and a tuple of tensors (sequence
embeddings, pooled embeddings) for the others; callers pass it back untouched.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from diffsearch.errors import UsageError
from diffsearch.ledger.interrupt import stop_point


def map_cond(fn, cond):
    """Apply ``fn`` to every tensor of a conditioning (a tensor or a tuple of tensors)."""
    return tuple(fn(c) for c in cond) if isinstance(cond, tuple) else fn(cond)


@dataclass
class TextEncoder:
    """One text encoder with its tokenizer, as the relaxation sees it.

    ``length``: positions the pipeline pads to (77 for CLIP, ``max_sequence_length`` for T5);
    ``bos``: whether sequences start with a begin token (CLIP yes, T5 no); every sequence ends with eos
    then pads with the pad token (CLIP in SD pads with eos or "!", T5 with <pad>)."""

    name: str
    module: torch.nn.Module
    tokenizer: object
    length: int
    bos: bool = True
    device: object = None  # where the ids go (the pipeline's execution device)

    def token_ids(self, text: str) -> list[int]:
        """Ids of ``text`` without special tokens."""
        return self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids

    def ids(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(
            texts, padding="max_length", max_length=self.length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device or self.module.device)

    def token_embedding(self) -> torch.nn.Embedding:
        return self.module.get_input_embeddings()

    def special(self) -> tuple[int | None, int, int]:
        tok = self.tokenizer
        return (tok.bos_token_id if self.bos else None), tok.eos_token_id, tok.pad_token_id

    def run(self, ids: torch.Tensor | None = None, embeds: torch.Tensor | None = None, eos_at: int | None = None):
        """The encoder's output (hidden states included) from ids, or from token embeddings (B x L x D).

        transformers' CLIPTextModel takes no ``inputs_embeds``; a forward hook swaps the token lookup's
        output, so every layer of the real encoder (positions, causal attention, final norm) still runs.
        The ids then only place CLIP's pooling, which reads the first eos: ``eos_at`` says where it is
        (SDXL, SD3 and FLUX use the pooled output; without it the sequence is all eos)."""
        if embeds is None:
            return self.module(ids, output_hidden_states=True)
        if "inputs_embeds" in inspect.signature(self.module.forward).parameters:  # T5 takes them directly
            return self.module(inputs_embeds=embeds, output_hidden_states=True)
        eos = self.tokenizer.eos_token_id
        dummy = torch.full(embeds.shape[:2], eos, device=embeds.device)
        if eos_at is not None:
            dummy.fill_(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id != eos else 0)
            dummy[:, eos_at] = eos
        handle = self.token_embedding().register_forward_hook(lambda _m, _i, _o: embeds)
        try:
            return self.module(dummy, output_hidden_states=True)
        finally:
            handle.remove()


class PipelineBackend(ABC):
    """Generation and the shortcut gradient over a diffusers pipeline's components: one subclass per family
    supplies the abstract methods below; the loop, the shortcut gradient and the cost count are here."""

    family = "base"
    uses_negative_prompt = True  # False where guidance settings leave the negative prompt without effect
    true_cfg = 1.0  # true classifier-free guidance on a guidance-distilled model (FLUX sets it; 1 = off)

    def __init__(
        self, pipe, steps: int = 50, guidance: float | None = None, height: int | None = None, width: int | None = None
    ):
        self.pipe, self.steps = pipe, steps
        self.guidance = self.default_guidance if guidance is None else guidance
        self.denoiser = self._denoiser()
        # with model CPU offload the modules sit on the CPU until they run: the pipeline knows where they run
        self.device, self.dtype = self.pipe._execution_device, self.denoiser.dtype
        self.encoders = self._encoders()
        for enc in self.encoders:
            enc.device = self.device
        self.tokenizer = self.encoders[0].tokenizer  # the first CLIP: word lengths and the prompt limit
        self.factor = self.pipe.vae_scale_factor
        size = self._default_size()
        self.height, self.width = height or size, width or size
        self.scheduler = self._scheduler()
        self._reset()

    default_guidance = 7.5

    # ---- what a family supplies --------------------------------------------------------------------
    def _denoiser(self):
        return self.pipe.unet

    def _default_size(self) -> int:
        return self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor

    @abstractmethod
    def _encoders(self) -> list[TextEncoder]:
        """The pipeline's text encoders, the first a CLIP (word lengths and the prompt limit)."""

    @abstractmethod
    def _scheduler(self):
        """The sampling scheduler this backend steps with (a copy of the pipeline's)."""

    @abstractmethod
    def condition(self, outputs: list):
        """Encoder outputs (one per encoder, in ``self.encoders`` order) -> the denoiser's conditioning."""

    @abstractmethod
    def initial_latents(self, seeds: list[int]) -> torch.Tensor:
        """One latent per seed, drawn as the pipeline draws them (so ``pipe(generator=...)`` reproduces it)."""

    @abstractmethod
    def predict(self, latents, i: int, t, cond, uncond) -> torch.Tensor:
        """The guided model output at step index ``i`` (timestep ``t``)."""

    @abstractmethod
    def step(self, model_output, i: int, t, latents) -> tuple[torch.Tensor, torch.Tensor]:
        """(next latents, closed-form x0) for step index ``i``."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], B x 3 x H x W (differentiable)."""

    # ---- negative prompts ----------------------------------------------------------------------------
    def negative_prompt_refusal(self) -> str | None:
        """Why a negative prompt cannot act with these settings, and what works instead; None if it acts."""
        return self.refusal_for(self.guidance, self.true_cfg)

    @classmethod
    def refusal_for(cls, guidance: float, true_cfg: float = 1.0) -> str | None:
        """The same, from the settings alone: a job asks before loading any weights."""
        if guidance <= 1:
            return (
                f"--guidance {guidance:g} turns classifier-free guidance off, so a negative prompt has no "
                "effect on this model; search the positive prompt (--space synonym) or raise --guidance above 1"
            )
        return None

    # ---- text ---------------------------------------------------------------------------------------
    def token_ids(self, text: str) -> list[int]:
        """Ids of ``text`` in the first CLIP tokenizer, without bos / eos."""
        return self.encoders[0].token_ids(text)

    def max_tokens(self) -> int:
        return self.encoders[0].length - 2

    def encode(self, texts: list[str]):
        return self.condition([enc.run(ids=enc.ids(texts)) for enc in self.encoders])

    def encode_token_embeds(self, embeds: list[torch.Tensor], eos_positions: list[int | None] | None = None):
        """The conditioning from token embeddings, one B x L x D tensor per encoder (the Gumbel-softmax mix);
        ``eos_positions``: where each sequence's eos sits (CLIP pools there)."""
        eos_positions = eos_positions or [None] * len(embeds)
        return self.condition([enc.run(embeds=e, eos_at=p) for enc, e, p in zip(self.encoders, embeds, eos_positions)])

    # ---- sampling -----------------------------------------------------------------------------------
    def schedule_kwargs(self) -> dict:
        return {}

    def _reset(self) -> None:
        """Set the schedule once: every family's step is indexed (no scheduler-internal step counter)."""
        self.scheduler.set_timesteps(self.steps, device=self.device, **self.schedule_kwargs())

    @property
    def timesteps(self):
        return self.scheduler.timesteps

    def _expand(self, cond, n: int):
        return map_cond(lambda c: c.expand(n, *c.shape[1:]) if c.shape[0] == 1 else c, cond)

    @torch.no_grad()
    def generate(self, cond, uncond, seeds: list[int], latents: torch.Tensor | None = None) -> torch.Tensor:
        """Full sampling without gradient: images in [0, 1] for each seed."""
        latents = self.initial_latents(seeds) if latents is None else latents
        cond, uncond = self._expand(cond, len(latents)), self._expand(uncond, len(latents))
        for i, t in enumerate(self.timesteps):
            stop_point()  # Ctrl-C and --trial-timeout stop between denoising steps
            latents, _ = self.step(self.predict(latents, i, t, cond, uncond), i, t, latents)
        return self.decode(latents)

    def shortcut_images(self, cond, uncond, seeds: list[int], t_index: int, k: int = 1) -> torch.Tensor:
        """Images whose gradient w.r.t. the conditioning is the shortcut gradient (steps t_index .. t_index+K-1)."""
        timesteps = self.timesteps
        if not 0 <= t_index < len(timesteps) or k < 1:
            raise UsageError(f"shortcut window t={t_index}, K={k} does not fit {len(timesteps)} steps")
        k = min(k, len(timesteps) - t_index)
        latents = self.initial_latents(seeds)
        cond, uncond = self._expand(cond, len(latents)), self._expand(uncond, len(latents))
        with torch.no_grad():  # (1) T -> t without gradient
            c, u = map_cond(torch.Tensor.detach, cond), map_cond(torch.Tensor.detach, uncond)
            for i in range(t_index):
                latents, _ = self.step(self.predict(latents, i, timesteps[i], c, u), i, timesteps[i], latents)
        x0 = None
        for i in range(t_index, t_index + k):  # (2) K steps with gradient
            latents, x0 = self.step(self.predict(latents, i, timesteps[i], cond, uncond), i, timesteps[i], latents)
        # (3) closed-form x0 of the last gradient step; at the end of the schedule, the sample itself
        return self.decode(latents if t_index + k == len(timesteps) else x0)

    def passes_per_step(self) -> int:
        """Denoiser passes per sampling step (2 with classifier-free guidance): the unit the noise job
        counts NFE in."""
        return 1

    # ---- noise search hooks (spaces/noise.py) -------------------------------------------------------
    def renoise(self, x0: torch.Tensor, i: int, noise: torch.Tensor) -> torch.Tensor:
        """The state after step index ``i`` rebuilt from a clean estimate ``x0`` and fresh ``noise`` (the
        forward process at that step's noise level): how noise is injected along the path."""
        raise NotImplementedError(f"{type(self).__name__} has no renoise hook")

    def shortcut_cost(self, t_index: int, k: int) -> float:
        """Cost of one shortcut step in full generations: forward steps, plus backward ~ 2 forwards."""
        k = min(k, self.steps - t_index)
        return (t_index + 3 * k) / self.steps

    # ---- loading helpers ----------------------------------------------------------------------------
    def modules(self) -> list[torch.nn.Module]:
        return [self.denoiser, self.pipe.vae] + [e.module for e in self.encoders]
