"""``--gpus 0,1 --workers N``: each worker process takes a slot; worker i runs its programs on gpus[i % len(gpus)].

The ``--workers`` processes are started alike (``ledger.workers``), so each finds its index itself: the
first slot of ``<out>/.gpu-slots`` whose lock file no other process holds. A lock (``flock``) is let go
when its process ends, even when killed, so a worker started later takes the freed slot.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence


@contextmanager
def gpu_slot(gpus: Sequence[str] | None, out: str | Path) -> Iterator[str | None]:
    """Yield this process's ``CUDA_VISIBLE_DEVICES`` (None without ``gpus``), held until the block ends."""
    if not gpus:
        yield None
        return
    folder = Path(out) / ".gpu-slots"
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    while True:
        handle = open(folder / f"slot-{index}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            index += 1
            continue
        break
    try:
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield gpus[index % len(gpus)]
    finally:
        handle.close()  # lets go of the lock


def parse_gpus(text: str | Sequence | None) -> list[str] | None:
    """``"0,1"`` (or a list) as device names; the empty value means none."""
    from diffsearch.errors import UsageError

    if text is None:
        return None
    parts = [str(p).strip() for p in (text.split(",") if isinstance(text, str) else text)]
    if not parts or any(not p for p in parts):
        raise UsageError(f"--gpus: expected device numbers separated by commas, such as 0,1 (got {text!r})")
    return parts
