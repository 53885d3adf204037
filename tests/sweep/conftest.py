"""Fixtures of the sweep tests: sweep files written next to a small real training program."""

from pathlib import Path

import pytest
import yaml

PROGRAMS = Path(__file__).resolve().parent / "programs"


@pytest.fixture
def sweep_file(tmp_path):
    """``sweep_file(**settings)``: a sweep file in tmp_path for programs/train_regression.py; its path.

    ``parameters`` given are added to (or, set to None, removed from) the default ones.
    """

    def write(name="sweep.yaml", parameters=None, **settings):
        params = {
            "learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-3, "max": 0.3},
            "optimizer": {"values": ["sgd", "momentum"]},
            "momentum": {"distribution": "uniform", "min": 0.5, "max": 0.95, "when": {"optimizer": "momentum"}},
            "steps": {"value": 4},
        }
        for key, value in (parameters or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        config = {
            "program": str(PROGRAMS / "train_regression.py"),
            "method": "tpe",
            "metric": {"name": "val_loss", "goal": "minimize"},
            "trials": 3,
            "parameters": params,
            **settings,
        }
        config = {k: v for k, v in config.items() if v is not None}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write
