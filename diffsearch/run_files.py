"""Files of a run (results.json, plots, samples) written whole or not at all.

Each file is written to a temporary file beside it, flushed to disk and renamed over the old one, so a
crash or a full disk never leaves a half-written results.json: readers see the old file or the new one.
A full disk is said in one line (``DiskFull``: "no space left on <path>").
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

from diffsearch.errors import DiskFull

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(exc: BaseException) -> bool:
    """An OSError for a full disk (or quota), or a database's own "disk is full", anywhere in the chain of
    causes (Optuna wraps SQLite's in a ``StorageInternalError`` that does not say it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return True
        if "database or disk is full" in str(current) or "No space left on device" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; ``DiskFull`` on a full disk."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFull(f"no space left on {path}") from None
        raise
    return path


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """A matplotlib figure, written whole (its format from the file's suffix)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **savefig)
    return write_atomic(path, buffer.getvalue())


def save_array(array: Any, path: str | Path) -> Path:
    """A numpy array as a .npy file, written whole."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    return write_atomic(path, buffer.getvalue())
