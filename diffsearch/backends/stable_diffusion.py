"""Stable Diffusion on diffusers: generation from prompt embeddings, and the shortcut gradient.

Any SD 1.x / 2.x pipeline loads from a local directory or a hub id (``--model``). The pipeline's
``__call__`` runs under ``torch.no_grad()``, so generation and gradients both go through our own DDIM
loop over the pipeline's components (same scheduler settings, classifier-free guidance, VAE decode);
a test checks it reproduces ``__call__`` exactly.

Shortcut gradient (DPO-Diff, Wang et al., ICML 2024): sample without gradient from T down to step
index t, run K UNet steps with gradient, take the scheduler's ``pred_original_sample`` (closed-form x0)
of the last of them, decode it with the VAE. Memory and time do not grow with T. When the gradient
window reaches the end of the schedule (t = 0, K = T) the decoded sample is the generated image itself,
so the result is exactly full backpropagation through the sampling loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffsearch.errors import UsageError

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"  # the reference's model
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_pipeline(model: str, device: str = "cpu", dtype: str = "float32", seed: int = 0):
    """``tiny``, ``fashion`` or a diffusers Stable Diffusion directory / hub id (cached locally); a clear
    error if absent."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    if model == "fashion":  # the miniature SD trained on Fashion-MNIST that ships with diffsearch
        from diffsearch.backends.fashion_sd import PIPELINE_DIR

        if not (PIPELINE_DIR / "model_index.json").is_file():
            raise UsageError("--model fashion is not built yet: `python benchmarks/build_fashion_sd.py` trains it "
                             "(about 40 min on 2 cores; see benchmarks/results/fashion_sd.md)")
        model = str(PIPELINE_DIR)
    if model == "tiny":
        from diffsearch.backends.tiny_sd import tiny_pipeline

        pipe = tiny_pipeline(seed)
    else:
        path = Path(model).expanduser()
        looks_local = path.exists() or model.startswith((".", "/", "~"))
        if looks_local and not (path / "model_index.json").is_file():
            raise UsageError(f"--model {model}: no diffusers pipeline there (model_index.json missing); "
                             "give a directory saved with StableDiffusionPipeline.save_pretrained, a hub id, "
                             "'tiny' or 'fashion'")
        diffusers_logging.set_verbosity_error()  # its retry notes would break our one-line error
        # loading takes a second here; per-component bars from both libraries would bury our own output
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        try:
            pipe = StableDiffusionPipeline.from_pretrained(
                str(path) if looks_local else model, dtype=DTYPES[dtype], safety_checker=None,
                requires_safety_checker=False, local_files_only=looks_local or None)
        except Exception as exc:  # no network, no cache, wrong files: one line that says what to do
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UsageError(f"cannot load Stable Diffusion weights {model!r} ({first}); download them on a "
                             "machine with internet (huggingface-cli download "
                             f"{model if not looks_local else DEFAULT_MODEL}) and pass the directory with "
                             "--model, or use --model tiny") from None
    pipe.set_progress_bar_config(disable=True)
    try:
        pipe.to(device)
        if model == "tiny" and dtype != "float32":
            pipe.to(dtype=DTYPES[dtype])
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(f"cannot use device {device!r}: {str(exc).splitlines()[0]}") from None
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)  # gradients flow to the prompt, never to weights
        module.eval()
    return pipe


@dataclass
class SDBackend:
    pipe: object
    steps: int = 50
    guidance: float = 7.5
    height: int | None = None
    width: int | None = None

    def __post_init__(self):
        from diffusers import DDIMScheduler

        self.device = self.pipe.unet.device
        self.dtype = self.pipe.unet.dtype
        self.tokenizer = self.pipe.tokenizer
        # DDIM, as in the reference (deterministic with eta 0), built from the model's own scheduler config
        self.scheduler = DDIMScheduler.from_config(self.pipe.scheduler.config)
        self.scheduler.set_timesteps(self.steps, device=self.device)
        factor = self.pipe.vae_scale_factor
        self.height = self.height or self.pipe.unet.config.sample_size * factor
        self.width = self.width or self.pipe.unet.config.sample_size * factor
        self.latent_shape = (self.pipe.unet.config.in_channels, self.height // factor, self.width // factor)

    # ---- text ---------------------------------------------------------------------------------------
    def token_ids(self, text: str) -> list[int]:
        """Ids of ``text`` without bos / eos."""
        return self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids

    def max_tokens(self) -> int:
        return self.tokenizer.model_max_length - 2

    def encode(self, texts: list[str]) -> torch.Tensor:
        """SD's prompt embeddings (last hidden state of the text encoder over 77 padded positions)."""
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.pipe.text_encoder(ids)[0]

    def token_embedding(self) -> torch.nn.Embedding:
        return self.pipe.text_encoder.get_input_embeddings()

    def encode_embeds(self, token_embeds: torch.Tensor) -> torch.Tensor:
        """The text encoder applied to token embeddings (B x 77 x D) instead of ids.

        transformers' CLIPTextModel takes no ``inputs_embeds``; a forward hook swaps the token lookup's
        output, so every layer of the real encoder (positions, causal attention, final norm) still runs.
        """
        lookup = self.token_embedding()
        handle = lookup.register_forward_hook(lambda _m, _i, _o: token_embeds)
        try:
            dummy = torch.full(token_embeds.shape[:2], self.tokenizer.eos_token_id, device=self.device)
            return self.pipe.text_encoder(dummy)[0]
        finally:
            handle.remove()

    # ---- sampling -----------------------------------------------------------------------------------
    def initial_latents(self, seeds: list[int]) -> torch.Tensor:
        latents = [torch.randn(self.latent_shape, generator=torch.Generator("cpu").manual_seed(s))
                   for s in seeds]
        return torch.stack(latents).to(self.device, self.dtype) * self.scheduler.init_noise_sigma

    def _step(self, latents, t, cond, uncond):
        model_in = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        eps = self.pipe.unet(model_in, t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        eps_uncond, eps_cond = eps.chunk(2)
        eps = eps_uncond + self.guidance * (eps_cond - eps_uncond)
        out = self.scheduler.step(eps, t, latents)
        return out.prev_sample, out.pred_original_sample

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], B x 3 x H x W (differentiable)."""
        images = self.pipe.vae.decode(latents / self.pipe.vae.config.scaling_factor).sample
        return (images / 2 + 0.5).clamp(0, 1)

    def _expand(self, embeds: torch.Tensor, n: int) -> torch.Tensor:
        return embeds.expand(n, *embeds.shape[1:]) if embeds.shape[0] == 1 else embeds

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, uncond: torch.Tensor, seeds: list[int],
                 latents: torch.Tensor | None = None) -> torch.Tensor:
        """Full DDIM sampling without gradient: images in [0, 1] for each seed."""
        latents = self.initial_latents(seeds) if latents is None else latents
        cond, uncond = self._expand(cond, len(latents)), self._expand(uncond, len(latents))
        for t in self.scheduler.timesteps:
            latents, _ = self._step(latents, t, cond, uncond)
        return self.decode(latents)

    def shortcut_images(self, cond: torch.Tensor, uncond: torch.Tensor, seeds: list[int], t_index: int,
                        k: int = 1) -> torch.Tensor:
        """Images whose gradient w.r.t. the embeddings is the shortcut gradient (steps t_index .. t_index+K-1)."""
        timesteps = self.scheduler.timesteps
        if not 0 <= t_index < len(timesteps) or k < 1:
            raise UsageError(f"shortcut window t={t_index}, K={k} does not fit {len(timesteps)} steps")
        k = min(k, len(timesteps) - t_index)
        latents = self.initial_latents(seeds)
        cond, uncond = self._expand(cond, len(latents)), self._expand(uncond, len(latents))
        with torch.no_grad():  # (1) T -> t without gradient
            for t in timesteps[:t_index]:
                latents, _ = self._step(latents, t, cond.detach(), uncond.detach())
        for t in timesteps[t_index:t_index + k]:  # (2) K steps with gradient
            latents, x0 = self._step(latents, t, cond, uncond)
        # (3) closed-form x0 of the last gradient step; at the end of the schedule, the sample itself
        return self.decode(latents if t_index + k == len(timesteps) else x0)

    def shortcut_cost(self, t_index: int, k: int) -> float:
        """Cost of one shortcut step in full generations: forward steps, plus backward ~ 2 forwards."""
        k = min(k, self.steps - t_index)
        return (t_index + 3 * k) / self.steps

