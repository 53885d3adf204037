"""``preload``: trials forked from a warm interpreter behave as programs started afresh, only sooner."""

import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import PROGRAMS
from diffsearch.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def run_cli(*args):
    return main([str(a) for a in args])


def trials(out, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db").trials


@pytest.mark.slow
def test_a_forked_trial_is_the_program_run_afresh(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"program: {PROGRAMS / 'report_interpreter.py'}\nmetric: {{name: draw}}\nmethod: grid\n"
        "preload: [wave, torch, 'warm_up:compute']\n"
        "parameters:\n  exit_code: {values: [0, 1, 3]}\n"
    )
    out = tmp_path / "run"
    # a trial that hung (OpenMP after a fork) would fail by the timeout rather than block the test
    assert run_cli("sweep", sweep, "--out", out, "--trial-timeout", 120) == 0
    done = trials(out, "sweep-report_interpreter-grid")
    reports = [json.loads((out / "trials" / str(t.number) / "stdout.log").read_text()) for t in done]
    by_code = {t.params["exit_code"]: t for t in done}
    assert by_code[0].state == by_code[1].state == TrialState.COMPLETE  # the program exits 3 only
    assert by_code[3].state == TrialState.FAIL and by_code[3].user_attrs["fail_reason"].startswith("exit code 3")
    for trial, seen in zip(done, reports):
        assert seen["preloaded"] == ["torch", "warm_up", "wave"]  # imported before the program started
        assert seen["name"] == "__main__" and seen["path0"] == str(PROGRAMS)
        assert seen["argv"] == [str(PROGRAMS / "report_interpreter.py"), f"--exit_code={trial.params['exit_code']}"]
        assert seen["trial"] == str(trial.number) and seen["threads"] == torch.get_num_threads()
    # every trial's random generators are its own, as in a new interpreter
    assert len({r["draw"] for r in reports}) == 3 and len({r["torch_draw"] for r in reports}) == 3


@pytest.mark.slow
def test_preloaded_and_fresh_trials_give_the_same_study(sweep_file, tmp_path):
    """Same sweep, same random seed: the warm route changes how trials start, not what they compute;
    successive halving stops forked programs from their reports as it stops fresh ones."""
    halving = {"type": "successive_halving", "min_iter": 1, "eta": 2}
    studies = {}
    for route, preload in (("fresh", None), ("forked", ["numpy", "diffsearch.reporter"])):
        path = sweep_file(
            name=f"{route}.yaml",
            method="random",
            trials=5,
            early_terminate=halving,
            preload=preload,
            parameters={"steps": {"value": 5}, "step_seconds": {"value": 0.05}},
        )
        assert run_cli("sweep", path, "--out", tmp_path / route, "--seed", 3) == 0
        studies[route] = trials(tmp_path / route, "sweep-train_regression-random")
    fresh, forked = studies["fresh"], studies["forked"]
    assert [t.params for t in fresh] == [t.params for t in forked]
    assert [t.state for t in fresh] == [t.state for t in forked]
    assert TrialState.PRUNED in [t.state for t in forked]
    assert [t.intermediate_values for t in fresh] == [t.intermediate_values for t in forked]


@pytest.mark.slow
def test_a_hanging_forked_program_is_stopped_by_the_timeout(sweep_file, tmp_path):
    path = sweep_file(
        method="grid",
        trials=None,
        preload=["numpy"],
        parameters={
            "learning_rate": {"value": 0.05},
            "optimizer": {"value": "sgd"},
            "momentum": None,
            "mode": {"values": ["hang", "ok", "crash"]},
        },
    )
    out = tmp_path / "run"
    assert run_cli("sweep", path, "--out", out, "--trial-timeout", 3) == 0
    results = json.loads((out / "results.json").read_text())
    reasons = {t["params"]["mode"]: t.get("fail_reason") for t in results["trials"]}
    assert reasons == {
        "hang": "timed out after 3 s (--trial-timeout)",
        "ok": None,
        "crash": "exit code 1: RuntimeError: CUDA error: an illegal memory access was encountered",
    }


def test_a_preload_that_fails_to_import_is_one_line(tmp_path, capsys):
    (tmp_path / "broken_helper.py").write_text("raise ImportError('needs a GPU build of something')\n")
    program = tmp_path / "train.py"
    program.write_text('print(\'{"step": 1, "loss": 1.0}\')\n')
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"program: {program}\nmetric: {{name: loss}}\npreload: [broken_helper]\nparameters:\n  x: {{values: [1, 2]}}\n"
    )
    assert run_cli("sweep", sweep, "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "preload: broken_helper: ImportError: needs a GPU build of something" in err


def test_the_example_sweep_file_preloads_an_editable_install_and_a_module_beside_it():
    """examples/sweep.yaml preloads diffsearch (installed in editable mode: found by a finder, not a path
    entry) and train_unet (beside the program)."""
    from pathlib import Path

    from diffsearch.sweeps.schema import parse_sweep, read_sweep_file

    path = Path(__file__).resolve().parents[2] / "examples" / "sweep.yaml"
    sweep = parse_sweep(read_sweep_file(path), str(path))
    assert sweep.preload == ("train_unet", "diffsearch.objectives.fid:load_inception")
