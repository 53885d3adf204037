"""Tasks: what one evaluation means (backend + objective + data)."""

from diffsearch.tasks.vector_diffusion import Evaluation, VectorDiffusionTask

__all__ = ["Evaluation", "VectorDiffusionTask"]
