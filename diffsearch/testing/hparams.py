"""``HparamsSearcherSuite``: what every hparams searcher (``diffsearch hparams --searcher``, a sweep's
``method``) must do, on diffsearch's own training space (conditional parameters included)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest

from diffsearch.searchers.hparams.registry import SEARCHERS
from diffsearch.spaces.training import TOY2D


def objective(trial: optuna.Trial) -> float:
    """A cheap stand-in for a training run on the toy2d space: a bowl around lr 1e-3, batch 256, adamw."""
    params = TOY2D.suggest(trial)
    value = (math.log10(params["lr"]) + 3.0) ** 2 + abs(math.log2(params["batch_size"] / 256))
    return value + (0.0 if params["optimizer"] == "adamw" else 0.5)


class HparamsSearcherSuite:
    """Subclass and give the fixture ``name`` (the searcher's registry or entry point name)."""

    trials = 8

    @pytest.fixture
    def name(self) -> str:
        raise NotImplementedError("give the fixture `name`: the searcher's registry or entry point name")

    def study(self, name: str, seed: int) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = SEARCHERS.lookup(name, "searcher").value(seed)
            assert isinstance(sampler, optuna.samplers.BaseSampler), "the factory must return an Optuna sampler"
            study = optuna.create_study(sampler=sampler)
            study.optimize(objective, n_trials=self.trials)
        return study

    def params(self, study: optuna.Study) -> list[dict[str, Any]]:
        return [t.params for t in study.trials]

    def test_the_same_seed_gives_the_same_run(self, name: str) -> None:
        first = self.params(self.study(name, 3))
        assert self.params(self.study(name, 3)) == first, "the same seed proposed other trials"
        assert self.params(self.study(name, 4)) != first, "another seed proposed the same trials: is it used?"

    def test_the_budget_is_kept_and_every_trial_is_in_the_space(self, name: str) -> None:
        study = self.study(name, 3)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(study.trials) == len(complete) == self.trials
        for trial in complete:
            TOY2D.validate(trial.params)  # a one-line UsageError for a value outside the space

    def test_bad_input_is_refused_in_one_line(
        self, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from diffsearch.testing.cli import assert_refused

        assert_refused(["hparams", "--searcher", name, "--trials", "0"], "--trials", tmp_path / "run", capsys)
        assert_refused(
            ["hparams", "--searcher", name + "-misspelt"], f"known: {', '.join(SEARCHERS)}", tmp_path / "run", capsys
        )
