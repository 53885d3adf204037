"""Tasks: what one evaluation means (backend + objective + data)."""

from diffsearch.tasks.evaluation import TrainingEvaluation
from diffsearch.tasks.vector_diffusion import VectorDiffusionTask

__all__ = ["TrainingEvaluation", "VectorDiffusionTask"]
