"""Pipeline families: which backend serves a diffusers pipeline, read from its ``model_index.json``.

A new family is one file here (a ``PipelineBackend`` subclass) and one line in ``FAMILIES``.
"""

from __future__ import annotations

from diffsearch.backends.families.base import PipelineBackend, TextEncoder
from diffsearch.backends.families.flux import FluxBackend
from diffsearch.backends.families.sd import SDBackend
from diffsearch.backends.families.sd3 import SD3Backend
from diffsearch.backends.families.sdxl import SDXLBackend
from diffsearch.errors import UsageError

# model_index.json's ``_class_name`` -> backend
FAMILIES: dict[str, type[PipelineBackend]] = {
    "StableDiffusionPipeline": SDBackend,
    "StableDiffusionXLPipeline": SDXLBackend,
    "StableDiffusion3Pipeline": SD3Backend,
    "FluxPipeline": FluxBackend,
}


def backend_class(pipeline_class: str, model: str = "") -> type[PipelineBackend]:
    if pipeline_class not in FAMILIES:
        raise UsageError(f"--model {model}: {pipeline_class} is not served; diffsearch prompt runs "
                         f"{', '.join(FAMILIES)}")
    return FAMILIES[pipeline_class]


def make_backend(pipe, steps: int = 50, guidance: float | None = None, true_cfg: float = 1.0,
                 size: int | None = None) -> PipelineBackend:
    """The backend of a loaded pipeline (its class names the family)."""
    cls = backend_class(type(pipe).__name__)
    extra = {"true_cfg": true_cfg} if cls is FluxBackend else {}
    return cls(pipe, steps=steps, guidance=guidance, height=size, width=size, **extra)


__all__ = ["FAMILIES", "FluxBackend", "PipelineBackend", "SD3Backend", "SDBackend", "SDXLBackend", "TextEncoder",
           "backend_class", "make_backend"]
