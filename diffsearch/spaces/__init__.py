"""Search spaces. Each space knows how to suggest, validate and describe its points."""

from diffsearch.spaces.training import SPACES, TrainingSpace, get_space

__all__ = ["SPACES", "TrainingSpace", "get_space"]
