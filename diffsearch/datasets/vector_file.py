"""A user's own vector data: ``.npy`` or ``.csv`` holding an N x D float matrix."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from diffsearch.errors import UsageError


def load_vector_file(path: str | Path) -> np.ndarray:
    """Load an N x D (D >= 1) matrix of finite floats; raise UsageError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".csv":
            with warnings.catch_warnings():  # an empty file: our one line below, not numpy's warning too
                warnings.simplefilter("ignore", UserWarning)
                array = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        else:
            raise UsageError(f"unsupported data file {path.name}: use .npy or .csv (N x D floats)")
    except UsageError:
        raise
    except Exception as exc:  # numpy's parse errors vary by version; the user needs one line
        raise UsageError(f"cannot read {path.name} as an N x D float matrix: {exc}") from None
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] < 1:
        raise UsageError(f"{path.name} has shape {array.shape}: expected N x D with D >= 1")
    if not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"{path.name} holds {array.dtype} values: expected floats")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise UsageError(f"{path.name} has {bad} rows with NaN or infinite values")
    if array.shape[0] < 20:
        raise UsageError(f"{path.name} has only {array.shape[0]} rows: need at least 20")
    return array
