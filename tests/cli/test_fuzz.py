"""A short, fixed-seed fuzz of what users hand us (benchmarks/fuzz.py runs 10,000 inputs per surface)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
pytestmark = pytest.mark.filterwarnings("ignore")

_spec = importlib.util.spec_from_file_location("fuzz", Path(__file__).parents[2] / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

COUNT = {"cli": 150, "data": 200, "prompts": 200, "sweep": 300}


@pytest.mark.parametrize("surface", sorted(COUNT))
def test_every_input_is_accepted_or_refused_in_one_line(surface, tmp_path, monkeypatch):
    fuzz._stop_before_running(monkeypatch.setattr)
    outcome = fuzz.fuzz(surface, COUNT[surface], tmp_path)
    assert outcome.inputs >= COUNT[surface] // 2 and outcome.refused > 0 and not outcome.failures
