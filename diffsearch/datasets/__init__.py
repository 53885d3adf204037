"""Data sets: built-in 2-D toy sets and a user's own vector file."""

from diffsearch.datasets.toy2d import TOY_DATASETS, make_toy2d
from diffsearch.datasets.vector_file import load_vector_file
from diffsearch.datasets.split import VectorData, load_vector_data

__all__ = ["TOY_DATASETS", "make_toy2d", "load_vector_file", "VectorData", "load_vector_data"]
