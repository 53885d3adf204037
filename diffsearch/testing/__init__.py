"""Conformance suites for what plugs into diffsearch, shipped as ``optuna.testing`` ships Optuna's.

Subclass a suite in your own tests and give it the fixture it asks for; pytest then runs every check on
your piece. The project's own registries run the same suites over every entry (tests/test_conformance.py),
so a new entry is tested the moment it exists.

- ``HparamsSearcherSuite`` (hparams.py): fixture ``name``, an hparams searcher's registry name (an Optuna
  sampler factory, built in or an entry point). Optuna's own ``optuna.testing.pytest_samplers`` cases check
  the sampler class itself; subclass those too.
- ``TreeSearcherSuite`` (tree.py): fixture ``name``, an optimizer (update-rule) searcher's name.
- ``PromptSearcherSuite`` (prompt.py): fixture ``name``, a prompt searcher's name (a tiny Stable Diffusion
  and CLIP, built from configs, no download).
- ``RewardSuite`` (reward.py): fixture ``reward_name``, a ``--reward`` value (``MODULE:FUNCTION`` too).

Each suite checks the same three things where they apply: a fixed seed gives the same run, the budget is
kept exactly, and bad input is refused with one line (exit code 2 from the command line, nothing written).

    # tests/test_my_searcher.py
    import pytest
    from diffsearch.testing import TreeSearcherSuite

    class TestMySearcher(TreeSearcherSuite):
        @pytest.fixture
        def name(self) -> str:
            return "my-searcher"          # the entry point's name

The suites need pytest (``pip install diffsearch[dev]``); importing this package imports no suite.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["HparamsSearcherSuite", "PromptSearcherSuite", "RewardSuite", "TreeSearcherSuite"]

_SUITES = {
    "HparamsSearcherSuite": "hparams",
    "TreeSearcherSuite": "tree",
    "PromptSearcherSuite": "prompt",
    "RewardSuite": "reward",
}


def __getattr__(name: str) -> Any:
    if name in _SUITES:  # each suite imports its job's libraries (torch, diffusers ...) only when asked for
        return getattr(importlib.import_module(f"diffsearch.testing.{_SUITES[name]}"), name)
    raise AttributeError(f"module 'diffsearch.testing' has no attribute {name!r}")
