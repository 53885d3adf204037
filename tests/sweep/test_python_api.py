"""``diffsearch.search`` on a Python function and ``diffsearch.report``: the same engine as the command."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import diffsearch
from diffsearch.errors import TrialFailed
from diffsearch.searchers import SEARCHERS

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

OBJECTIVES = Path(__file__).resolve().parent / "sweep_objectives.py"
SPACE = {
    "x": {"min": -1.0, "max": 1.0},
    "optimizer": {"values": ["adam", "sgd"]},
    "momentum": {"min": 0.0, "max": 0.9, "when": {"optimizer": "sgd"}},
}


def test_search_a_function_and_resume_without_repeating(tmp_path):
    seen = []

    def objective(params, report):
        seen.append(dict(params))
        assert ("momentum" in params) == (params["optimizer"] == "sgd")  # conditionals, as in a sweep file
        return (params["x"] - 0.3) ** 2

    result = diffsearch.search(objective, SPACE, trials=8, out=str(tmp_path / "run"), study="quad")
    assert len(seen) == 8 and result.best_value == min(t.value for t in result.study.trials)
    assert result.best_params == result.best_trial.user_attrs["arguments"]
    assert json.loads(Path(result.results_file).read_text())["best"]["value"] == result.best_value
    again = diffsearch.search(objective, SPACE, trials=10, out=str(tmp_path / "run"), study="quad")
    assert len(seen) == 10 and len(again.study.trials) == 10  # the 8 finished trials were not run again


def test_maximize_prune_and_failures(tmp_path):
    def objective(params, report):
        if params["x"] > 0.65:
            raise ValueError("x too large for this model")
        for step in range(1, 6):
            report(step, params["x"] * step / 5)
        return params["x"]

    result = diffsearch.search(
        objective,
        {"x": {"min": 0.0, "max": 1.0}},
        direction="maximize",
        searcher="random",
        trials=12,
        pruner={"type": "successive_halving", "min_iter": 1, "eta": 2},
        out=str(tmp_path / "run"),
        seed=1,
    )
    trials = result.study.trials
    assert result.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert result.best_value == max(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert any(t.state == TrialState.PRUNED and "pruned_at_step" in t.user_attrs for t in trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(
        t.user_attrs["fail_reason"].startswith("ValueError: x too large for this model (") for t in failed
    )
    assert sum(t.state != TrialState.RUNNING for t in trials) == 12  # failures count toward the budget


def test_when_every_trial_fails_search_says_why(tmp_path):
    def objective(params, report):
        return float("nan")

    with pytest.raises(TrialFailed, match="every trial failed; the first: the objective returned nan"):
        diffsearch.search(objective, {"x": {"min": 0.0, "max": 1.0}}, trials=2, out=str(tmp_path / "run"))


@pytest.mark.parametrize("searcher", [*SEARCHERS, "grid"])
def test_every_searcher_runs_the_search(tmp_path, searcher):
    space = (
        {"x": {"values": [-0.5, 0.0, 0.3, 0.6]}, "optimizer": {"values": ["adam", "sgd"]}}
        if searcher == "grid"
        else SPACE
    )
    trials = 8 if searcher == "grid" else 7  # generative: five random trials, then the model proposes
    result = diffsearch.search(
        "sweep_objectives:quadratic", space, searcher=searcher, trials=trials, out=str(tmp_path / "run")
    )
    assert len(result.study.trials) == trials
    assert all(t.state == TrialState.COMPLETE for t in result.study.trials)
    if searcher == "grid":  # every point once
        assert len({(t.params["x"], t.params["optimizer"]) for t in result.study.trials}) == 8


@pytest.mark.slow
def test_two_workers_by_module_function_share_the_study(tmp_path):
    result = diffsearch.search(
        f"{OBJECTIVES}:quadratic", {"x": {"min": -1.0, "max": 1.0}}, trials=30, workers=2, out=str(tmp_path / "run")
    )
    trials = result.study.trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 30
    assert result.study.user_attrs["objective"] == f"{OBJECTIVES}:quadratic"
    # the spawned worker ran under its own pid; the budget was kept exactly across both
    assert len({t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE}) in (1, 2)


def test_a_script_function_becomes_its_file_for_workers():
    from diffsearch.sweeps.function_trial import importable_name
    import sweep_objectives

    assert importable_name(sweep_objectives.quadratic) == "sweep_objectives:quadratic"


def test_report_prints_one_flushed_line_and_imports_nothing_heavy():
    code = (
        "import sys, diffsearch\ndiffsearch.report(step=3, fid=12.5, kid=0.25)\ndiffsearch.report(loss=1)\n"
        "print(sorted(m for m in ('torch', 'optuna', 'numpy') if m in sys.modules))"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert json.loads(lines[0]) == {"step": 3, "fid": 12.5, "kid": 0.25}
    assert json.loads(lines[1]) == {"loss": 1}
    assert lines[2] == "[]"


def test_report_takes_numpy_scalars(capsys):
    import numpy as np

    diffsearch.report(step=np.int64(2), fid=np.float32(1.5))
    assert json.loads(capsys.readouterr().out) == {"step": 2, "fid": 1.5}
    with pytest.raises(TypeError, match="at least one metric"):
        diffsearch.report(step=1)


def test_search_takes_a_whole_sweep_dict(tmp_path):
    sweep = {
        "method": "random",
        "name": "dict-sweep",
        "run_cap": 3,
        "metric": {"name": "acc", "goal": "maximize"},
        "parameters": {"model": {"parameters": {"width": {"values": [8, 16]}}}, "x": {"min": 0.0, "max": 1.0}},
        "early_terminate": {"type": "hyperband", "max_iter": 9, "s": 1, "eta": 3},
    }
    seen = []

    def objective(params, report):
        seen.append(params)
        return params["x"] * params["model"]["width"]

    result = diffsearch.search(objective, sweep, out=str(tmp_path / "run"), storage=str(tmp_path / "journal.log"))
    assert len(seen) == 3 and all(set(p["model"]) == {"width"} for p in seen)  # nested, as wandb.config holds it
    assert result.study.study_name == "dict-sweep" and result.results["goal"] == "maximize"
    assert result.best_value == max(p["x"] * p["model"]["width"] for p in seen)
    assert result.results["sweep"]["early_terminate"]["s"] == 1


def test_a_parameter_named_parameters_is_still_a_space():
    from diffsearch.jobs.python_api import _sweep_config

    assert _sweep_config({"parameters": {"values": [1, 2]}})[0] == {"parameters": {"parameters": {"values": [1, 2]}}}
    assert _sweep_config({"method": "grid", "parameters": {"a": {"values": [1]}}})[0]["method"] == "grid"


def test_the_sweeps_layer_imports_nothing_above_it():
    """docs/architecture.md: imports run downwards; diffsearch.search (which runs the sweep job) is in jobs/."""
    import ast

    above = ("diffsearch.jobs", "diffsearch.cli")
    for path in (Path(diffsearch.__file__).parent / "sweeps").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            assert not [n for n in names if n.startswith(above)], f"{path.name} imports {names}"
