"""Judging at the length that matters: --promote re-trains the search's best rules longer and ranks by that."""

import math

import optuna
import pytest

from diffsearch.errors import UsageError
from diffsearch.jobs.optimizer import OptimizerOptions, run_optimizer

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.mark.slow  # 5 rules searched and promoted twice, 2 baselines at both lengths: ~45 s on loaded shared cores
def test_promotion_ranks_by_the_longest_run_and_keeps_the_short_score(tmp_path):
    options = OptimizerOptions(
        budget=5,
        levels=1,
        scale=0.01,
        top=1,
        baselines=("AdamW", "Muon"),
        promote=(2.0, 3.0),
        lr_grid="1e-3,1e-2",
        out=str(tmp_path),
    )
    results = run_optimizer(options)
    rows = results["leaderboard"]
    assert [r["name"] for r in rows if r["kind"] == "rule"] == ["rule 1"] and {"AdamW", "Muon"} <= {
        r["name"] for r in rows
    }
    assert all(r["steps"] == 9 and r["short_steps"] == 3 for r in rows)  # moons 300 x 0.01 x 3, and x 1
    finite = [r["score"] for r in rows if r["score"] is not None]
    assert finite == sorted(finite)  # ranked by the longest run
    rungs = results["promotion"]
    assert [(g["factor"], g["steps"]) for g in rungs] == [(2.0, 6), (3.0, 9)]
    searched = [
        t
        for t in optuna.load_study(study_name=results["study"], storage=results["storage"]).trials
        if t.user_attrs["role"] == "search" and t.value is not None
    ]
    assert rungs[0]["trained"] == math.ceil(len(searched) / 4) and rungs[1]["trained"] == 1  # best quarter, >= --top
    study = optuna.load_study(study_name=results["study"], storage=results["storage"])
    long = [t for t in study.trials if t.user_attrs.get("scale") == 0.03]
    assert {t.user_attrs["role"] for t in long} == {"promote", "baseline"}
    muon = [t for t in study.trials if t.user_attrs.get("optimizer") == "Muon"]
    assert len(muon) == 2 and all(math.isfinite(t.value) for t in muon)  # at the search length and the longest
    rule = next(r for r in rows if r["kind"] == "rule")
    search = {t.user_attrs["expr"]: t.value for t in study.trials if t.user_attrs["role"] == "search"}
    assert rule["short_score"] == search[rule["expr"]]
    n = len(study.trials)
    assert run_optimizer(options)["leaderboard"] == rows and len(study.trials) == n  # rerun: nothing re-trained


@pytest.mark.parametrize("promote", [(1.0,), (4.0, 2.0), (float("nan"),), (200.0,)])
def test_bad_promotion_ladders_are_refused(promote, tmp_path):
    with pytest.raises(UsageError, match="--promote"):
        OptimizerOptions(promote=promote, out=str(tmp_path)).resolved()
