"""Pipeline families: which backend serves a diffusers pipeline, read from its ``model_index.json``.

A new family is one file here (a ``PipelineBackend`` subclass, families/base.py) and one ``register`` line in
``FAMILIES``: the pipeline class it serves (model_index.json's ``_class_name``) and its capabilities.
"""

from __future__ import annotations

from diffsearch.backends.families.base import PipelineBackend, TextEncoder
from diffsearch.backends.families.flux import FluxBackend
from diffsearch.backends.families.sd import SDBackend
from diffsearch.backends.families.sd3 import SD3Backend
from diffsearch.backends.families.sdxl import SDXLBackend
from diffsearch.errors import UsageError
from diffsearch.registry import Registry

# model_index.json's ``_class_name`` -> backend; ``true_cfg``: takes --true-cfg (a guidance-distilled model)
FAMILIES: Registry[type[PipelineBackend]] = Registry("pipeline family")
FAMILIES.register("StableDiffusionPipeline", SDBackend, "Stable Diffusion 1.x / 2.x")
FAMILIES.register("StableDiffusionXLPipeline", SDXLBackend, "Stable Diffusion XL")
FAMILIES.register("StableDiffusion3Pipeline", SD3Backend, "Stable Diffusion 3 / 3.5 (flow matching)")
FAMILIES.register("FluxPipeline", FluxBackend, "FLUX.1 (flow matching, guidance-distilled)", true_cfg=True)


def backend_class(pipeline_class: str, model: str = "") -> type[PipelineBackend]:
    if pipeline_class not in FAMILIES:
        raise UsageError(
            f"--model {model}: {pipeline_class} is not served; diffsearch prompt runs {', '.join(FAMILIES)}"
        )
    return FAMILIES[pipeline_class].value


def make_backend(
    pipe, steps: int = 50, guidance: float | None = None, true_cfg: float = 1.0, size: int | None = None
) -> PipelineBackend:
    """The backend of a loaded pipeline (its class names the family)."""
    name = type(pipe).__name__
    cls = backend_class(name)
    extra = {"true_cfg": true_cfg} if FAMILIES[name].can("true_cfg") else {}
    return cls(pipe, steps=steps, guidance=guidance, height=size, width=size, **extra)


__all__ = [
    "FAMILIES",
    "FluxBackend",
    "PipelineBackend",
    "SD3Backend",
    "SDBackend",
    "SDXLBackend",
    "TextEncoder",
    "backend_class",
    "make_backend",
]
