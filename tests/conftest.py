"""Fixtures shared by the test folders (ledger, jobs, searchers, objectives, backends, datasets, spaces, cli).

Plain helpers (functions, constants) shared across folders are in tests/helpers.py, imported as
``from helpers import ...``: this file puts tests/ on sys.path once, so no test file edits sys.path or
imports another test file. Tests marked ``slow`` (end to end: CLI runs, worker processes) are left out
by ``pytest -m "not slow"``.
"""

import os
import sys
from pathlib import Path

import pytest

# tests run on 2 CPU cores next to each other; one thread per process keeps them predictable
os.environ.setdefault("OMP_NUM_THREADS", "1")

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

TINY = ["--points", "3000", "--held-out", "1000", "--epochs", "2"]


@pytest.fixture
def tiny_args():
    return list(TINY)


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server on loopback for the whole session (installed if absent); its URL."""
    from helpers import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def clip():
    """The tiny CLIP objective (random weights, fixed seed), one per test module."""
    from diffsearch.objectives.clip import ClipObjective

    return ClipObjective("tiny")


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    """The tiny SDXL, SD3 and FLUX pipelines, each saved once with save_pretrained: ``--model DIR`` loads them."""
    from diffsearch.backends.tiny_families import TINY_PIPELINES

    root = tmp_path_factory.mktemp("families")
    for name, build in TINY_PIPELINES.items():
        build(0).save_pretrained(root / name)
    return {name: str(root / name) for name in TINY_PIPELINES}
