import os

import pytest

# tests run on 2 CPU cores next to each other; one thread per process keeps them predictable
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = ["--points", "3000", "--held-out", "1000", "--epochs", "2"]


@pytest.fixture
def tiny_args():
    return list(TINY)
