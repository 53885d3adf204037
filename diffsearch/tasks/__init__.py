"""Tasks: what one evaluation means (backend + objective + data)."""

from diffsearch.tasks.evaluation import Evaluation
from diffsearch.tasks.vector_diffusion import VectorDiffusionTask

__all__ = ["Evaluation", "VectorDiffusionTask"]
