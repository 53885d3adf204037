"""benchmarks/gpu_check.sh: its dry run works on any machine; without a GPU the real run stops in one line."""

import subprocess
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


@pytest.mark.slow
def test_dry_run_prints_the_plan():
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for family in ("sdxl", "sd3", "flux", "tiny-sdxl", "tiny-sd3", "tiny-flux"):
        assert f" {family} " in out.stdout
    assert "hparams_images.py" in out.stdout and "nothing measured" in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_fails_clearly():
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "no CUDA GPU" in out.stderr
