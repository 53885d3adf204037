"""W&B's sweep schema, feature by feature: each file of wandb_docs/ (written from W&B's documentation, one
feature each) is parsed and run with ``--trials 1`` on a program that accepts any command line
(programs/accept_anything.py, which keeps what it got); what the program got is checked against W&B's
definition of the feature."""

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

import diffsearch
from conftest import PROGRAMS
from diffsearch.cli.main import main
from diffsearch.sweeps.schema import parse_sweep, read_sweep_file

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

DOCS = Path(__file__).resolve().parent / "wandb_docs"
PROGRAM_FILES = sorted(p.name for p in DOCS.glob("*.yaml") if p.name != "no_program.yaml")


def copy_with_program(source: Path, folder: Path) -> Path:
    """The sweep file beside a copy of accept_anything.py named as the file's program (train.py)."""
    config = yaml.safe_load(source.read_text())
    shutil.copy(PROGRAMS / "accept_anything.py", folder / config["program"])
    path = folder / source.name
    shutil.copy(source, path)
    return path


def run_file(name, tmp_path, monkeypatch, capsys):
    """Parse and run the file with --trials 1; (the parsed sweep, results.json, what the program got)."""
    path = copy_with_program(DOCS / name, tmp_path)
    config = read_sweep_file(path)
    metric = (config.get("metric") or {}).get("name", "unused")
    monkeypatch.setenv("ACCEPT_ANYTHING_METRICS", metric)
    monkeypatch.setenv("CONFORMANCE_DATA_DIR", str(tmp_path / "data"))
    sweep = parse_sweep(config, str(path))
    out = tmp_path / "run"
    # a journal file: a study in it opens in a tenth of the time SQLite's takes, for 40 one-trial sweeps
    code = main(
        ["sweep", str(path), "--trials", "1", "--out", str(out), "--storage", str(tmp_path / "journal.log"), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads(captured.out)
    assert results["counts"]["complete"] == 1, results
    trial = results["trials"][0]
    got = json.loads((Path(trial["stdout_log"]).parent / "argv.json").read_text())
    return sweep, results, trial, got, captured.err


def number(text):
    return float(text.partition("=")[2])


CHECKS = {
    "top_level_keys.yaml": lambda s, r, t, got: (
        s.notes == ("ignored (only W&B's servers use them): entity, project",)
        and s.trials == 5
        and s.config["name"] == "top-level-keys"
        and r["study"] == "top-level-keys"
    ),
    "method_grid.yaml": lambda s, r, t, got: (
        s.space.grid(s.where) == {"batch_size": [16, 32, 64], "epochs": [1, 2], "width": [0, 128]}
        and s.trials == 12
        and s.method == "grid"
    ),
    "method_grid_without_metric.yaml": lambda s, r, t, got: s.metric is None and s.trials == 4,
    "method_random_without_metric.yaml": lambda s, r, t, got: (
        s.metric is None and s.method == "random" and r["best"] is None
    ),
    "method_random.yaml": lambda s, r, t, got: s.method == "random" and 0.0001 <= t["params"]["lr"] <= 0.1,
    "method_bayes.yaml": lambda s, r, t, got: s.method == "gp" and s.notes[0].startswith("method bayes runs as gp"),
    "metric_target.yaml": lambda s, r, t, got: s.target == 0.95 and s.goal == "maximize",
    "dist_constant.yaml": lambda s, r, t, got: (
        t["params"]["parameter_name"] == 2.71828
        and "--parameter_name=2.71828" in got["argv"]
        and "--other=1.618" in got["argv"]
    ),
    "dist_categorical.yaml": lambda s, r, t, got: (
        t["params"]["parameter_name"] in ["elu", "relu", "gelu", "selu", "prelu", "lrelu", "rrelu", "relu6"]
        and t["params"]["digits"] in [8, 6, 7, 5, 3, 0, 9]
    ),
    "dist_categorical_probabilities.yaml": lambda s, r, t, got: t["params"]["parameter_name"] in [1, 2, 3, 4, 5],
    "dist_int_uniform.yaml": lambda s, r, t, got: (
        isinstance(t["params"]["layers"], int) and 1 <= t["params"]["layers"] <= 8 and 1 <= t["params"]["heads"] <= 4
    ),
    "dist_uniform.yaml": lambda s, r, t, got: 0 <= t["params"]["parameter_name"] <= 1,
    "dist_q_uniform.yaml": lambda s, r, t, got: (
        isinstance(t["params"]["parameter_name"], int)
        and round(t["params"]["rate"] / 0.3, 9) == round(t["params"]["rate"] / 0.3)
    ),
    "dist_log_uniform.yaml": lambda s, r, t, got: math.exp(-9.21) <= t["params"]["learning_rate"] <= math.exp(-2.3),
    "dist_log_uniform_values.yaml": lambda s, r, t, got: 0.0001 <= t["params"]["learning_rate"] <= 0.1,
    "dist_q_log_uniform.yaml": lambda s, r, t, got: t["params"]["batch_size"] % 8 == 0,
    "dist_q_log_uniform_values.yaml": lambda s, r, t, got: (
        t["params"]["batch_size"] % 8 == 0 and 8 <= t["params"]["batch_size"] <= 512
    ),
    "dist_inv_log_uniform.yaml": lambda s, r, t, got: (math.exp(-9.2) <= t["params"]["weight_decay"] <= math.exp(-2.3)),
    "dist_inv_log_uniform_values.yaml": lambda s, r, t, got: 0.0001 <= t["params"]["weight_decay"] <= 0.1,
    "dist_normal.yaml": lambda s, r, t, got: (
        abs(t["params"]["parameter_name"] - 100) < 50 and abs(t["params"]["standard"]) < 5
    ),
    "dist_q_normal.yaml": lambda s, r, t, got: t["params"]["steps"] % 10 == 0,
    "dist_log_normal.yaml": lambda s, r, t, got: t["params"]["learning_rate"] > 0,
    "dist_q_log_normal.yaml": lambda s, r, t, got: t["params"]["hidden"] % 16 == 0,
    "dist_beta.yaml": lambda s, r, t, got: 0 <= t["params"]["momentum"] <= 1,
    "dist_q_beta.yaml": lambda s, r, t, got: (
        0 <= t["params"]["keep"] <= 1 and round(t["params"]["keep"] / 0.05, 9) == round(t["params"]["keep"] / 0.05)
    ),
    "values_under_distribution.yaml": lambda s, r, t, got: (
        t["params"]["learning_rate"] in [0.001, 0.01, 0.1] and t["params"]["layers"] in [2, 4]
    ),
    "nested_parameters.yaml": lambda s, r, t, got: (
        t["params"]["nested_param"]["double_nested_param"] == {"x": 0.9, "y": 0.8}
        and t["params"]["nested_param"]["learning_rate"] in [0.01, 0.001]
        # W&B's agent writes a nested parameter as Python writes the dict
        and f"--nested_param={t['params']['nested_param']}" in got["argv"]
        and "nested_param.learning_rate" in [p.name for p in s.space.parameters]
    ),
    "early_terminate_min_iter.yaml": lambda s, r, t, got: (
        s.early_terminate == {"type": "hyperband", "min_iter": 3, "max_iter": None, "eta": 3}
    ),
    "early_terminate_max_iter.yaml": lambda s, r, t, got: (
        s.early_terminate == {"type": "hyperband", "min_iter": 3, "max_iter": 27, "eta": 3}
        and any("strict" in note for note in s.notes)
    ),
    "command_default.yaml": lambda s, r, t, got: (
        f"--flag={t['params']['flag']}" in got["argv"] and f"--x={t['params']['x']}" in got["argv"]
    ),
    "command_python3.yaml": lambda s, r, t, got: got["argv"][:2] == ["--config", "your-training-config.json"],
    "command_omit_arguments.yaml": lambda s, r, t, got: got["argv"] == [],
    "command_args_no_hyphens.yaml": lambda s, r, t, got: got["argv"] == [f"x={t['params']['x']}"],
    "command_args_no_boolean_flags.yaml": lambda s, r, t, got: got["argv"] == ["--use_ema", "--lr=0.01"],
    "command_args_json.yaml": lambda s, r, t, got: (
        got["argv"][0] == "--params"
        and json.loads(got["argv"][1]) == t["params"]
        and set(t["params"]["model"]) == {"depth"}
    ),
    "command_args_json_file.yaml": lambda s, r, t, got: (
        got["argv"][0].startswith("--config=")
        and got["files"][got["argv"][0][len("--config=") :]] == t["params"]
        and Path(got["argv"][0][len("--config=") :]).parent == Path(t["stdout_log"]).parent
    ),
    "command_envvar.yaml": lambda s, r, t, got: got["argv"][0].startswith("--data=")
    and got["argv"][0].endswith("/data"),
    "trial_dir.yaml": lambda s, r, t, got: (
        f"--logging_dir={Path(t['stdout_log']).parent}/logs" in got["argv"]
        and t["params"]["output_dir"] == f"{Path(t['stdout_log']).parent}/checkpoints"
        and f"--output_dir={Path(t['stdout_log']).parent}/checkpoints" in got["argv"]
    ),
}


def test_every_file_has_its_check():
    assert sorted(CHECKS) == PROGRAM_FILES


@pytest.mark.parametrize("name", PROGRAM_FILES)
def test_a_wandb_sweep_file_parses_and_runs_one_trial(name, tmp_path, monkeypatch, capsys):
    sweep, results, trial, got, err = run_file(name, tmp_path, monkeypatch, capsys)
    assert CHECKS[name](sweep, results, trial, got), (trial["params"], got, sweep.notes)
    said = " ".join(err.split())  # the terminal may wrap a line
    for note in sweep.notes:  # bayes runs gp, keys only W&B's servers use: each said once
        assert said.count(note) == 1, err


def test_a_sweep_file_without_program_runs_a_function(tmp_path):
    seen = []

    def train(params, report):
        seen.append(params)
        for step in (1, 2):
            report(step, params["x"] * params["y"] / step)
        return params["x"] * params["y"] / 2

    result = diffsearch.search(
        train, str(DOCS / "no_program.yaml"), trials=1, out=str(tmp_path / "run"), storage=str(tmp_path / "journal.log")
    )
    assert len(seen) == 1 and 0.01 <= seen[0]["x"] <= 0.1 and seen[0]["y"] in (1, 3, 7)
    assert result.results["method"] == "gp" and result.study.study_name == "function-sweep"
    assert result.results["metric"] == "score" and result.best_value == seen[0]["x"] * seen[0]["y"] / 2
