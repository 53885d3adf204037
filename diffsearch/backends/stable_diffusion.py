"""Text-to-image pipelines on diffusers: loading, and the backend that generates and gives the shortcut gradient.

``--model`` takes a diffusers pipeline directory (saved with ``save_pretrained``) or a hub id cached
locally; its ``model_index.json`` names the pipeline class, which names the family (backends/families/:
SD 1.x / 2.x, SDXL, SD3 / 3.5, FLUX.1). ``tiny``, ``tiny-sdxl``, ``tiny-sd3``, ``tiny-flux`` build small
random pipelines (tests, demos); ``fashion`` is the miniature SD that ships with diffsearch. The
pipelines' ``__call__`` runs under ``torch.no_grad()``, so generation and gradients go through our own
loop over the pipeline's components (families/base.py); tests check it reproduces ``__call__``.

``SDBackend`` (SD 1.x / 2.x) is importable from here as before.
"""

from __future__ import annotations

from pathlib import Path

import json

import torch

from diffsearch.backends.families import FAMILIES, PipelineBackend, SDBackend, backend_class, make_backend
from diffsearch.errors import UsageError

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"  # the reference's model
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


MEMORY_SAVERS = {
    "vae-slicing": "decode the images of a batch one at a time",
    "vae-tiling": "decode large images tile by tile",
    "attention-slicing": "compute UNet attention in slices (SD 1.x / 2.x, SDXL; SD3 and FLUX use SDPA already)",
    "cpu-offload": "keep each model on the CPU until it runs (needs accelerate and a GPU)",
}
TINY = ("tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux")


def pipeline_class_name(model: str) -> str:
    """``_class_name`` of a model's model_index.json (a local directory, or a hub id in the local cache)."""
    path = Path(model).expanduser()
    if (path / "model_index.json").is_file():
        return json.loads((path / "model_index.json").read_text()).get("_class_name", "?")
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.load_config(model, local_files_only=True).get("_class_name", "?")
    except Exception:  # not cached: from_pretrained says it in its own words below
        return "StableDiffusionPipeline"


BUILT_IN_CLASSES = {
    "tiny": "StableDiffusionPipeline",
    "fashion": "StableDiffusionPipeline",
    "tiny-sdxl": "StableDiffusionXLPipeline",
    "tiny-sd3": "StableDiffusion3Pipeline",
    "tiny-flux": "FluxPipeline",
}


def family_of(model: str) -> type[PipelineBackend]:
    """The backend class that serves ``model``, from its short name or model_index.json (no weights loaded);
    UsageError for a pipeline no family serves."""
    return backend_class(BUILT_IN_CLASSES.get(model) or pipeline_class_name(model), model)


def default_guidance(model: str) -> float:
    """The guidance scale the model's own pipeline uses by default (SD 7.5, SDXL 5, SD3 7, FLUX 3.5)."""
    name = BUILT_IN_CLASSES.get(model) or pipeline_class_name(model)
    return FAMILIES[name].value.default_guidance if name in FAMILIES else SDBackend.default_guidance


def _tiny(model: str, seed: int):
    if model == "tiny":
        from diffsearch.backends.tiny_sd import tiny_pipeline

        return tiny_pipeline(seed)
    from diffsearch.backends.tiny_families import TINY_PIPELINES

    return TINY_PIPELINES[model](seed)


def load_pipeline(model: str, device: str = "cpu", dtype: str = "float32", seed: int = 0, memory: tuple[str, ...] = ()):
    """``tiny*``, ``fashion`` or a diffusers pipeline directory / hub id (cached locally) of a served family
    (backends/families); a clear one-line error otherwise. ``memory``: names of ``MEMORY_SAVERS``."""
    import diffusers
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    for name in memory:
        if name not in MEMORY_SAVERS:
            raise UsageError(f"unknown memory saver {name!r}; known: {', '.join(MEMORY_SAVERS)}")
    if model == "fashion":  # the miniature SD trained on Fashion-MNIST that ships with diffsearch
        from diffsearch.backends.fashion_sd import PIPELINE_DIR

        if not (PIPELINE_DIR / "model_index.json").is_file():
            raise UsageError(
                "--model fashion is not built yet: `python benchmarks/build_fashion_sd.py` trains it "
                "(about 40 min on 2 cores; see benchmarks/results/fashion_sd.md)"
            )
        model = str(PIPELINE_DIR)
    if model in TINY:
        pipe = _tiny(model, seed)
    else:
        path = Path(model).expanduser()
        looks_local = path.exists() or model.startswith((".", "/", "~"))
        if looks_local and not (path / "model_index.json").is_file():
            raise UsageError(
                f"--model {model}: no diffusers pipeline there (model_index.json missing); "
                "give a directory saved with a pipeline's save_pretrained (SD 1.x / 2.x, SDXL, "
                "SD3, FLUX), a hub id, 'tiny' or 'fashion'"
            )
        class_name = pipeline_class_name(model)
        backend_class(class_name, model)  # an unserved family: one line, before loading gigabytes
        diffusers_logging.set_verbosity_error()  # its retry notes would break our one-line error
        # loading takes a second here; per-component bars from both libraries would bury our own output
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        extra = (
            {"safety_checker": None, "requires_safety_checker": False}
            if class_name == "StableDiffusionPipeline"
            else {}
        )
        try:
            pipe = getattr(diffusers, class_name).from_pretrained(
                str(path) if looks_local else model, dtype=DTYPES[dtype], local_files_only=looks_local or None, **extra
            )
        except Exception as exc:  # no network, no cache, wrong files: one line that says what to do
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UsageError(
                f"cannot load the {class_name} weights {model!r} ({first}); download them on a "
                "machine with internet (huggingface-cli download "
                f"{model if not looks_local else DEFAULT_MODEL}) and pass the directory with "
                "--model, or use --model tiny"
            ) from None
    pipe.set_progress_bar_config(disable=True)
    try:
        if "cpu-offload" in memory:
            try:
                pipe.enable_model_cpu_offload(device=device)
            except ImportError as exc:
                raise UsageError(
                    f"--save-memory cpu-offload: {str(exc).splitlines()[0][:160]} (pip install accelerate)"
                ) from None
        else:
            pipe.to(device)
        if model in TINY and dtype != "float32":
            pipe.to(dtype=DTYPES[dtype])
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise UsageError(f"cannot use device {device!r}: {str(exc).splitlines()[0]}") from None
    _save_memory(pipe, memory)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)  # gradients flow to the prompt, never to weights
            module.eval()
    return pipe


def _save_memory(pipe, memory: tuple[str, ...]) -> None:
    if "vae-slicing" in memory:
        pipe.vae.enable_slicing()
    if "vae-tiling" in memory:
        pipe.vae.enable_tiling()
    if "attention-slicing" in memory:
        if not hasattr(pipe, "unet"):
            raise UsageError(
                f"--save-memory attention-slicing applies to UNet models; {type(pipe).__name__} "
                "computes attention with PyTorch's SDPA already (use vae-slicing or cpu-offload)"
            )
        pipe.enable_attention_slicing()


def load_backend(
    model: str,
    device: str = "cpu",
    dtype: str = "float32",
    seed: int = 0,
    steps: int = 50,
    guidance: float | None = None,
    true_cfg: float = 1.0,
    size: int | None = None,
    memory: tuple[str, ...] = (),
) -> PipelineBackend:
    """The backend of ``model``'s family, ready to generate (what the prompt job and its workers use)."""
    pipe = load_pipeline(model, device, dtype, seed, memory)
    if true_cfg > 1 and type(pipe).__name__ != "FluxPipeline":
        raise UsageError(
            f"--true-cfg applies to FLUX (guidance-distilled); {type(pipe).__name__} runs "
            "classifier-free guidance with --guidance already"
        )
    return make_backend(pipe, steps=steps, guidance=guidance, true_cfg=true_cfg, size=size)


__all__ = [
    "DEFAULT_MODEL",
    "DTYPES",
    "FAMILIES",
    "default_guidance",
    "MEMORY_SAVERS",
    "PipelineBackend",
    "SDBackend",
    "load_backend",
    "load_pipeline",
    "make_backend",
    "pipeline_class_name",
]
