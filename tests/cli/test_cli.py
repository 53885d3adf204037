import json
import math
import signal
import subprocess
import sys

import numpy as np
import optuna
import pytest

from diffsearch.cli.main import main
from diffsearch.jobs.training_trials import trial_config
from helpers import wait_for_a_complete_trial

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def run_cli(*args):
    return main([str(a) for a in args])


def load(out, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db")


@pytest.mark.slow
def test_search_end_to_end_writes_results_plot_and_ledger(tmp_path, tiny_args, capsys):
    out = tmp_path / "run"
    assert (
        run_cli(
            "hparams",
            "--dataset",
            "moons",
            "--searcher",
            "tpe",
            "--trials",
            3,
            *tiny_args,
            "--repeats",
            2,
            "--out",
            out,
            "--json",
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text())
    assert printed["best"] == saved["best"]
    assert len(saved["trials"]) == 3 and saved["best"]["score"] == min(t["score"] for t in saved["trials"])
    assert saved["best_repeats"]["runs"] == 2 and saved["baseline"]["runs"] == 1
    assert saved["elapsed_seconds"] > 0 and (out / "samples.png").stat().st_size > 10_000
    study = load(out, "hparams-moons-tpe")
    trial = study.best_trial
    for key in ("precision", "recall", "density", "coverage", "seconds", "scores", "config.beta_schedule"):
        assert key in trial.user_attrs
    assert study.user_attrs["job"] == "hparams" and study.user_attrs["dataset"] == "moons"
    # the results hold what the ledger holds: every trial scored with its PRDC parts, the best one named
    prdc_parts = {"precision", "recall", "density", "coverage"}
    for record in saved["trials"]:
        assert record["state"] == "COMPLETE" and math.isfinite(record["score"]) and record["params"]
        assert set(record["parts"]) == prdc_parts and all(math.isfinite(v) for v in record["parts"].values())
        assert record["params"] == study.trials[record["number"]].params
    best = saved["best"]
    assert math.isfinite(best["score"]) and best["number"] == trial.number and best["score"] == trial.value
    assert best["params"] == trial.params and set(best["params"]) >= {"lr", "batch_size", "optimizer"}
    assert set(best["parts"]) == prdc_parts
    # without --json the same command resumes (nothing to train) and its table names the best configuration
    assert (
        run_cli(
            "hparams",
            "--dataset",
            "moons",
            "--searcher",
            "tpe",
            "--trials",
            3,
            *tiny_args,
            "--repeats",
            2,
            "--out",
            out,
        )
        == 0
    )
    table = capsys.readouterr().out
    # (the title wraps to the table's width)
    assert f"best of study hparams-moons-tpe (trial {best['number']})" in " ".join(table.split())
    for name, value in best["params"].items():
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        assert any(name in line and shown in line for line in table.splitlines()), (name, shown, table)
    assert len(load(out, "hparams-moons-tpe").trials) == 3


@pytest.mark.slow
def test_rerun_resumes_without_repeating(tmp_path, tiny_args):
    out = tmp_path / "run"
    common = ["hparams", "--searcher", "random", *tiny_args, "--out", out, "--baseline-runs", 0]
    assert run_cli(*common, "--trials", 2) == 0
    assert run_cli(*common, "--trials", 2) == 0  # already done: nothing new
    assert len(load(out, "hparams-moons-random").trials) == 2
    assert run_cli(*common, "--trials", 3) == 0
    trials = load(out, "hparams-moons-random").trials
    assert len(trials) == 3
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3


@pytest.mark.slow
@pytest.mark.parametrize("searcher", ["random", "gp"])
def test_other_searchers_and_journal_storage(tmp_path, tiny_args, searcher):
    journal = tmp_path / "ledger.log"
    assert (
        run_cli(
            "hparams",
            "--searcher",
            searcher,
            "--trials",
            2,
            *tiny_args,
            "--out",
            tmp_path,
            "--storage",
            journal,
            "--baseline-runs",
            0,
        )
        == 0
    )
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name=f"hparams-moons-{searcher}", storage=storage)
    assert len(study.trials) == 2


@pytest.mark.slow
def test_successive_halving_prunes(tmp_path):
    assert (
        run_cli(
            "hparams",
            "--searcher",
            "random",
            "--trials",
            6,
            "--epochs",
            8,
            "--prune",
            "sh",
            "--min-epochs",
            2,
            "--points",
            3000,
            "--held-out",
            1000,
            "--out",
            tmp_path,
            "--baseline-runs",
            0,
        )
        == 0
    )
    study = load(tmp_path, "hparams-moons-random-sh")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(set(t.intermediate_values) <= {2, 4} for t in pruned)


@pytest.mark.slow
def test_baseline_repeats(tmp_path, tiny_args, capsys):
    assert run_cli("hparams", "--baseline", "--repeats", 2, *tiny_args, "--out", tmp_path, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["baseline"]["runs"] == 2 and result["baseline"]["std"] >= 0
    assert result["baseline"]["params"]["lr"] == 1e-3 and "trials" not in result


@pytest.mark.slow
def test_user_file_dataset(tmp_path, capsys):
    np.save(tmp_path / "points.npy", np.random.default_rng(0).normal(size=(1500, 3)).astype(np.float32))
    assert (
        run_cli(
            "hparams",
            "--dataset",
            tmp_path / "points.npy",
            "--trials",
            1,
            "--epochs",
            1,
            "--out",
            tmp_path / "run",
            "--baseline-runs",
            0,
            "--json",
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["best"]["score"] is not None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "mooons"], "unknown dataset"),
        (["--searcher", "cmaes"], "unknown searcher"),
        (["--trials", "0"], "--trials must be at least 1"),
        (["--prune", "asha"], "unknown pruner"),
        (["--storage", "notaurl"], "neither a database URL"),
        (["--storage", "sqlite:////nonexistent/dir/x.db"], "cannot open storage"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open storage"),
        (["--trials", "many"], "invalid int value"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        code = run_cli("hparams", "--out", tmp_path, *args)
        raise SystemExit(code)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_malformed_data_file_one_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    assert run_cli("hparams", "--dataset", tmp_path / "bad.csv", "--out", tmp_path) == 2
    assert "cannot read bad.csv" in capsys.readouterr().err


@pytest.mark.slow
def test_study_made_by_other_dataset_is_refused(tmp_path, tiny_args, capsys):
    assert run_cli("hparams", "--trials", 1, *tiny_args, "--out", tmp_path, "--study", "s", "--baseline-runs", 0) == 0
    assert run_cli("hparams", "--dataset", "spirals", "--trials", 1, *tiny_args, "--out", tmp_path, "--study", "s") == 2
    assert "made with dataset='moons'" in capsys.readouterr().err


def test_list_names_everything(capsys):
    assert run_cli("list") == 0
    text = capsys.readouterr().out
    for name in ("hparams", "toy2d", "images", "tpe", "gp", "random", "sh", "hyperband", "prdc", "moons"):
        assert name in text


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    # 8 trials of ~0.5 s: the interrupt lands mid-study; one storage object polled (opening one per
    # poll is slow enough on a loaded machine to miss the study)
    cmd = [
        sys.executable,
        "-m",
        "diffsearch",
        "hparams",
        "--searcher",
        "random",
        "--trials",
        "8",
        "--points",
        "3000",
        "--held-out",
        "1000",
        "--epochs",
        "40",
        "--out",
        str(out),
        "--baseline-runs",
        "0",
    ]
    # a shell's background job inherits SIGINT ignored; Ctrl-C in a terminal is never ignored
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_a_complete_trial(out / "study.db", 120)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert b"Traceback" not in err
    kept = {
        t.number: t.params
        for t in load(out, "hparams-moons-random").trials
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert 1 <= len(kept) < 8
    subprocess.run(cmd, check=True, capture_output=True)
    trials = load(out, "hparams-moons-random").trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8
    assert all(trials[n].params == p for n, p in kept.items())  # finished trials untouched
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == 8


@pytest.mark.slow
def test_dashboard_reads_the_study(tmp_path, tiny_args):
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    assert run_cli("hparams", "--trials", 1, *tiny_args, "--out", tmp_path, "--baseline-runs", 0) == 0
    from wsgiref.util import setup_testing_defaults

    app = optuna_dashboard.wsgi(f"sqlite:///{tmp_path}/study.db")
    environ = {"PATH_INFO": "/api/studies"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, h, *exc: status.append(s)))
    assert status[0].startswith("200") and b"hparams-moons-tpe" in body


@pytest.mark.slow
def test_generative_searcher_in_hparams(tmp_path, tiny_args, capsys):
    assert (
        run_cli(
            "hparams",
            "--searcher",
            "generative",
            "--trials",
            7,
            *tiny_args,
            "--out",
            tmp_path,
            "--baseline-runs",
            0,
            "--json",
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result["trials"]) == 7 and all(t["state"] == "COMPLETE" for t in result["trials"])


@pytest.mark.slow
def test_worker_joins_study_from_its_recorded_settings(tmp_path, tiny_args, capsys):
    storage = f"sqlite:///{tmp_path}/shared.db"
    assert (
        run_cli(
            "hparams",
            "--searcher",
            "random",
            "--trials",
            1,
            *tiny_args,
            "--storage",
            storage,
            "--study",
            "shared",
            "--out",
            tmp_path,
            "--baseline-runs",
            0,
        )
        == 0
    )
    assert run_cli("worker", "--study", "shared", "--storage", storage, "--trials", 3, "--out", tmp_path) == 0
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 3 and study.user_attrs["trials"] == 3
    assert {trial_config(t)["num_train_timesteps"] for t in study.trials} <= {20, 40, 60, 80, 100}
    assert run_cli("worker", "--study", "missing", "--storage", storage) == 2
    assert "no study 'missing'" in capsys.readouterr().err


def test_a_study_of_another_job_is_refused_in_one_line(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/shared.db"
    study = optuna.create_study(study_name="taken", storage=storage)
    study.set_user_attr("job", "optimizer")
    study.set_user_attr("space", "update-rules")
    assert (
        run_cli(
            "hparams",
            "--study",
            "taken",
            "--storage",
            storage,
            "--trials",
            1,
            "--points",
            2000,
            "--held-out",
            500,
            "--epochs",
            1,
            "--out",
            tmp_path,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "job='optimizer'" in err and "another --study name" in err
    study.set_user_attr("job", "an-unknown-job")
    assert run_cli("worker", "--study", "taken", "--storage", storage) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not made by `diffsearch hparams`" in err


def test_top_level_help_loads_no_job_libraries():
    code = (
        "import sys\nfrom diffsearch.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
        "    pass\nprint(sorted(m for m in ('torch', 'diffusers', 'open_clip', 'optuna') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "optimizer" in result.stdout and "worker" in result.stdout


@pytest.mark.slow
def test_generative_warm_start_from_an_earlier_study(tmp_path, tiny_args, capsys, monkeypatch):
    from diffsearch.searchers.hparams.generative import GenerativeHPO

    pretrained_on = []
    pretrain = GenerativeHPO.pretrain
    monkeypatch.setattr(
        GenerativeHPO,
        "pretrain",
        lambda self, histories, steps=None: (
            pretrained_on.extend(len(X) for X, _ in histories),
            pretrain(self, histories, steps=50),
        )[1],
    )
    storage = f"sqlite:///{tmp_path}/all.db"
    common = [*tiny_args, "--storage", storage, "--out", tmp_path, "--baseline-runs", 0]
    assert run_cli("hparams", "--searcher", "random", "--trials", 3, *common) == 0
    assert run_cli("hparams", "--searcher", "tpe", "--warm-start", "hparams-moons-random", *common) == 2
    assert run_cli("hparams", "--searcher", "generative", "--warm-start", "missing", *common) == 2
    capsys.readouterr()
    assert (
        run_cli(
            "hparams",
            "--searcher",
            "generative",
            "--trials",
            6,
            "--warm-start",
            "hparams-moons-random",
            *common,
            "--json",
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result["trials"]) == 6 and all(t["state"] == "COMPLETE" for t in result["trials"])
    assert pretrained_on == [3]  # the random study's three trials, once, before the first suggestion
    study = optuna.load_study(study_name="hparams-moons-generative", storage=storage)
    assert study.user_attrs["warm_start"] == ["hparams-moons-random"]  # a joining worker warm-starts too
