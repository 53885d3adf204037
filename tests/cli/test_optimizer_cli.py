"""``diffsearch optimizer`` end to end (tiny scales), its resume and Ctrl-C, and its one-line errors."""

import json

import optuna
import pytest

from diffsearch.cli.main import main
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import parse

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def run_cli(*args):
    return main([str(a) for a in args])


@pytest.mark.slow
def test_cli_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    common = [
        "optimizer",
        "--budget",
        3,
        "--levels",
        1,
        "--scale",
        0.03,
        "--baselines",
        "Adam,AdamW,Lion,Muon",
        "--top",
        2,
        "--transfer",
        "digits",
        "--out",
        out,
    ]
    assert run_cli(*common, "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text())
    assert printed["leaderboard"] == saved["leaderboard"]
    names = [r["name"] for r in saved["leaderboard"]]
    assert {"Adam", "AdamW", "Lion", "Muon"} <= set(names) and sum(n.startswith("rule") for n in names) >= 1
    assert all("transfer_score" in r for r in saved["leaderboard"])
    assert saved["search"]["evaluated"] == 3 and (out / "loss_curves.png").stat().st_size > 10_000
    study = optuna.load_study(study_name="optimizer-toy2d-moons-mct", storage=f"sqlite:///{out}/study.db")
    search = [t for t in study.trials if t.user_attrs["role"] == "search"]
    assert len(search) >= 3 and all(parse(t.user_attrs["expr"]) for t in search)
    assert all(UpdateRuleSpace().from_params(t.params) == parse(t.user_attrs["expr"]) for t in search)
    n_trials = len(study.trials)
    assert run_cli(*common) == 0  # rerun: everything comes from the storage
    assert (
        len(optuna.load_study(study_name="optimizer-toy2d-moons-mct", storage=f"sqlite:///{out}/study.db").trials)
        == n_trials
    )
    assert "update rules on toy2d-moons" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--check", "m1h / (sqrt(m2h)"],
        ["--check", "foo + g"],
        ["--searcher", "nope"],
        ["--task", "cifar"],
        ["--budget", 0],
        ["--baselines", "Adam,Nadam"],
        ["--lr-grid", "quarter"],
        ["--lr-grid", "1e-3,-1"],
        ["--lr-grid", "1e-3,,1"],
        ["--promote", "1,4"],
        ["--promote", "4,x"],
        ["--promote", "10,4"],
        ["--searcher", "evolution", "--start-from", "Muon"],
    ],
)
def test_bad_input_is_one_line_exit_2(args, capsys, tmp_path):
    assert run_cli("optimizer", *args, "--out", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffsearch: error:")


def test_check_prints_the_verdict(capsys):
    assert run_cli("optimizer", "--check=-g") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["expr"] == "-g" and "descent" in result["rejected"] and result["descent_cosine"] < -0.99


@pytest.mark.slow
def test_ctrl_c_mid_level_then_rerun_trains_each_rule_once(tmp_path):
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "diffsearch",
        "optimizer",
        "--budget",
        "8",
        "--levels",
        "1",
        "--scale",
        "0.15",
        "--baselines",
        "none",
        "--top",
        "1",
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # interrupt once a few rules of the level are trained
        time.sleep(0.1)
        try:
            with sqlite3.connect(f"file:{out}/study.db?mode=ro", uri=True) as db:
                if db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0] >= 2:
                    break
        except sqlite3.Error:
            continue
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and b"Traceback" not in err, err
    subprocess.run(cmd, check=True, capture_output=True)
    study = optuna.load_study(study_name="optimizer-toy2d-moons-mct", storage=f"sqlite:///{out}/study.db")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8 == len({t.user_attrs["key"] for t in complete})
    assert not [
        t for t in study.trials if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    ]


@pytest.mark.slow
def test_prdc_score_ranks_a_trained_rule_above_a_useless_one(tmp_path, capsys):
    from diffsearch.tasks.optimizer_tasks import make_task

    task = make_task("toy2d-moons", scale=0.5, score="prdc")
    adam = task.evaluate(parse("m1h / sqrt(m2h)"))
    tiny_steps = task.evaluate(parse("noise"))  # a random walk: no lr of the grid trains the model
    assert 0 <= adam.score < tiny_steps.score <= task.initial_score + 0.2
    assert adam.final_loss is not None and adam.final_loss < task.initial_loss
    out = tmp_path / "run"
    assert (
        run_cli(
            "optimizer",
            "--budget",
            2,
            "--levels",
            1,
            "--scale",
            0.1,
            "--baselines",
            "Adam",
            "--top",
            1,
            "--score",
            "prdc",
            "--out",
            out,
            "--json",
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert results["options"]["score"] == "prdc" and results["study"].endswith("-prdc")
    adam_row = next(r for r in results["leaderboard"] if r["name"] == "Adam")
    assert 0 <= adam_row["score"] < results["initial_score"]
    assert run_cli("optimizer", "--score", "fid", "--out", out) == 2


@pytest.mark.slow
def test_lr_grid_option_reaches_every_training_and_guards_the_study(tmp_path, capsys):
    out = tmp_path / "run"
    common = [
        "optimizer",
        "--budget",
        2,
        "--levels",
        1,
        "--scale",
        0.03,
        "--baselines",
        "Adam",
        "--top",
        1,
        "--transfer",
        "digits",
        "--out",
        out,
    ]
    assert run_cli(*common, "--lr-grid", "3e-2, 3e-3", "--json") == 0
    results = json.loads(capsys.readouterr().out)
    assert results["study"] == "optimizer-toy2d-moons-mct-lr-0.003_0.03"
    study = optuna.load_study(study_name=results["study"], storage=f"sqlite:///{out}/study.db")
    assert study.user_attrs["lr_grid"] == [3e-3, 3e-2]
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.user_attrs["role"] for t in trained} == {"search", "baseline", "transfer"}
    assert all(
        set(t.user_attrs["lr_grid"]) == {"0.003", "0.03"} and t.user_attrs["lr"] in (3e-3, 3e-2) for t in trained
    )
    # the same study with another grid would mix two measurements
    assert run_cli(*common, "--study", results["study"], "--lr-grid", "half-decade") == 2
    assert "lr_grid" in capsys.readouterr().err


@pytest.mark.slow
def test_start_from_is_trained_but_not_listed_as_a_discovery(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run_cli(
            "optimizer",
            "--searcher",
            "evolution",
            "--start-from",
            "Adam",
            "--budget",
            3,
            "--scale",
            0.03,
            "--baselines",
            "Adam",
            "--top",
            3,
            "--out",
            out,
            "--json",
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    study = optuna.load_study(study_name=results["study"], storage=f"sqlite:///{out}/study.db")
    search = [t.user_attrs["expr"] for t in study.trials if t.user_attrs["role"] == "search"]
    assert "m1h / sqrt(m2h)" in search and len(search) == 3
    rules = [r["expr"] for r in results["leaderboard"] if r["kind"] == "rule"]
    assert len(rules) == 2 and "m1h / sqrt(m2h)" not in rules


def _summary_results(promote=False, transfer=None):
    """A finished run's results as the job writes them: two found rules, Adam, AdamW and Muon (whose rule
    column is a torch optimizer's description, not a program)."""

    def row(name, expr, wd, score):
        return {
            "name": name,
            "kind": "rule" if name.startswith("rule") else "hand-designed",
            "expr": expr,
            "formula": expr,
            "weight_decay": wd,
            "trial": 0,
            "score": score,
            "lr": 1e-3,
            "curve": [],
            "fail_reason": None,
            **({"short_score": 0.5, "steps": 3000, "short_steps": 300} if promote else {}),
            **({"transfer_score": 0.3, "transfer_lr": 1e-2} if transfer else {}),
        }

    from diffsearch.optimizers import TORCH_BASELINES

    rows = [
        row("rule 1", "m1h / sqrt(m2h + exp(sm1 * sg)) * clip(g)", 0.0, 0.41),
        row("rule 2", "sign(ml)", 0.0, 0.42),
        row("Adam", "m1h / sqrt(m2h)", 0.0, 0.43),
        row("AdamW", "m1h / sqrt(m2h)", 0.01, 0.44),
        row("Muon", TORCH_BASELINES["Muon"].description, 0.01, 0.45),
    ]
    return {
        "options": {
            "task": "toy2d-moons",
            "score": "loss",
            "transfer": transfer,
            "promote": [4, 10] if promote else [],
        },
        "leaderboard": rows,
        "initial_loss": 1.0,
        "initial_score": 1.0,
        "elapsed_seconds": 12.0,
        "search": {"evaluated": 3, "duplicates": 1, "rejected": 2, "proposed": 6, "replayed_from_storage": 0},
        "results_file": "runs/x/results.json",
        "storage": "sqlite:///runs/x/study.db",
        "study": "s",
    }


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("promote,transfer", [(False, None), (True, "digits")])
def test_leaderboard_is_one_line_per_row_at_80_columns(width, promote, transfer):
    import io

    from rich.console import Console

    from diffsearch.cli.optimizer import print_summary

    results = _summary_results(promote, transfer)
    before = json.dumps(results)
    out = io.StringIO()
    print_summary(results, Console(file=out, width=width, color_system=None))
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= width
    body = [line for line in lines if line.startswith("│")]  # the table's rows (the header uses ┃)
    assert len(body) == len(results["leaderboard"])
    notes = lines[
        next(i for i, line in enumerate(lines) if line.startswith("└")) + 1 : next(
            i for i, line in enumerate(lines) if line.startswith("search:")
        )
    ]
    assert 1 <= len(notes) <= 2 * len(results["leaderboard"])
    words = " ".join(out.getvalue().split())
    # every rule is readable somewhere: in its cell or, in full, in a note under the table
    assert all(" ".join(r["expr"].split()) in words for r in results["leaderboard"])
    assert any(note.startswith("[1] ") for note in notes) and json.dumps(results) == before
