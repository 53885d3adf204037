"""Bad input to ``diffsearch sweep`` and ``diffsearch.search``: one line naming the file and key, exit code 2,
and no study written (the storage file is not even created)."""

import pytest

import diffsearch
from diffsearch.cli.main import main
from diffsearch.errors import UsageError


def run_cli(*args):
    return main([str(a) for a in args])


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"trails": 3}, ["unknown key 'trails'"]),
        (
            {"parameters": {"lr": {"distribution": "gaussian", "min": 0, "max": 1}}},
            ["parameters.lr.distribution", "gaussian"],
        ),
        (
            {"parameters": {"learning_rate": {"distribution": "uniform", "min": 0.5, "max": 0.1}}},
            ["parameters.learning_rate", "below max"],
        ),
        ({"parameters": {"learning_rate": {"distribution": "log_uniform_values", "min": 0, "max": 0.1}}}, ["min > 0"]),
        ({"parameters": {"optimizer": {"distribution": "categorical"}}}, ["parameters.optimizer.values"]),
        (
            {"parameters": {"optimizer": {"values": ["sgd", "momentum"], "when": {"momentum": 0.5}}}},
            ["parameters.optimizer.when.momentum", "categorical"],
        ),
        (
            {"parameters": {"a": {"values": [1, 2], "when": {"b": 1}}, "b": {"values": [1, 2], "when": {"a": 2}}}},
            ["cycle"],
        ),
        (
            {"parameters": {"momentum": {"min": 0.5, "max": 0.9, "when": {"optimiser": "momentum"}}}},
            ["unknown parent 'optimiser'"],
        ),
        ({"program": "no_such_train.py"}, ["program:", "no_such_train.py does not exist"]),
        ({"method": "bayesian"}, ["method: unknown searcher 'bayesian'", "tpe"]),
        ({"metric": {"name": "val_loss", "goal": "lowest"}}, ["metric.goal"]),
        ({"metric": None}, ["metric: expected", "only grid and random run without one"]),
        ({"command": ["${interpreter}", "${program}", "${arguments}"]}, ["unknown macro '${arguments}'"]),
        ({"command": ["no-such-launcher", "${program}", "${args}"]}, ["'no-such-launcher' is not a program on PATH"]),
        ({"early_terminate": {"type": "median"}}, ["early_terminate.type"]),
        ({"preload": ["torch", "not a module"]}, ["preload: expected a list of modules"]),
        ({"preload": ["no_such_module_anywhere"]}, ["preload: no module named 'no_such_module_anywhere'"]),
        ({"preload": ["numpy"], "command": ["bash", "${program}", "${args}"]}, ["preload needs a command that runs"]),
        ({"trials": 0}, ["trials"]),
        ({"method": "grid", "trials": 50}, ["method grid needs `values`", "learning_rate"]),
        # W&B's whole schema: what is still refused names the key and what to write instead
        ({"metric": {"name": "val_loss", "source": "mlflow"}}, ["metric.source", "'mlflow'", "tensorboard"]),
        ({"metric": {"name": "val_loss", "source": "stdout", "path": "logs"}}, ["metric.path", "source: tensorboard"]),
        ({"metric": {"name": "val_loss", "target": "low"}}, ["metric.target", "finite number"]),
        ({"metric": {"name": "val_loss", "aggregate": "max"}}, ["metric: unknown key 'aggregate'"]),
        (
            {"parameters": {"momentum": {"distribution": "normal", "mu": 0.9, "sigma": 0}}},
            ["parameters.momentum.sigma", "above 0"],
        ),
        ({"parameters": {"momentum": {"distribution": "beta", "a": -1}}}, ["parameters.momentum.a", "above 0"]),
        (
            {"parameters": {"learning_rate": {"distribution": "log_uniform", "min": -5, "max": 1000}}},
            ["parameters.learning_rate.max", "natural-log exponents", "log_uniform_values"],
        ),
        (
            {"parameters": {"learning_rate": {"distribution": "inv_log_uniform_values", "min": 0, "max": 0.1}}},
            ["min > 0"],
        ),
        (
            {
                "parameters": {
                    "learning_rate": {"distribution": "q_log_uniform_values", "min": 0.01, "max": 0.1, "q": 1}
                }
            },
            ["parameters.learning_rate", "no multiple of q"],
        ),
        (
            {"parameters": {"optimizer": {"values": ["sgd", "momentum"], "probabilities": [0.5, 0.6]}}},
            ["parameters.optimizer.probabilities", "add up to 1"],
        ),
        (
            {"parameters": {"optimizer": {"values": ["sgd", "momentum"], "probabilities": [1.0]}}},
            ["parameters.optimizer.probabilities", "one per value"],
        ),
        (
            {"parameters": {"net.depth": {"value": 2}, "net": {"parameters": {"depth": {"values": [2, 3]}}}}},
            ["parameters.net.parameters.depth", "'net.depth'", "parameters.net.depth", "rename one"],
        ),
        (
            {"parameters": {"net": {"parameters": {"depth": {"values": [2, 3]}}, "values": [1]}}},
            ["parameters.net", "only `parameters:`"],
        ),
        (
            {"parameters": {"output_dir": {"value": "${run_dir}/ckpt"}}},
            ["parameters.output_dir.value", "'${run_dir}'", "${trial_dir}"],
        ),
        (
            {"command": ["${env}", "${interpreter}", "${program}", "--out=${run_dir}", "${args}"]},
            ["command", "unknown macro '${run_dir}'"],
        ),
        ({"command": ["${interpreter}", "${program}", "--all=${args}"]}, ["command", "${args}", "word of its own"]),
        (
            {"command": ["${interpreter}", "${program}", "--data=${envvar:NO_SUCH_VARIABLE_35}", "${args}"]},
            ["${envvar:NO_SUCH_VARIABLE_35}", "not set"],
        ),
        ({"job": "team/project/train:v0"}, ["job:", "program: train.py"]),
        (
            {"early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "min_iter": 3}},
            ["min_iter, or max_iter with s"],
        ),
        ({"early_terminate": {"type": "hyperband", "s": 2}}, ["early_terminate.s", "give max_iter too"]),
        ({"early_terminate": {"type": "hyperband", "max_iter": 2, "s": 2, "eta": 3}}, ["no band"]),
        (
            {"early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2.5}},
            ["early_terminate.eta", "whole number"],
        ),
        (
            {
                "method": "grid",
                "trials": None,
                "parameters": {
                    "learning_rate": {"value": 0.05},
                    "momentum": None,
                    "optimizer": {"values": ["sgd", "momentum"], "probabilities": [0.5, 0.5]},
                },
            },
            ["parameters.optimizer", "probabilities has no grid"],
        ),
    ],
)
def test_a_bad_sweep_file_is_one_line_and_writes_nothing(sweep_file, tmp_path, capsys, settings, words):
    settings = dict(settings)
    parameters = settings.pop("parameters", None)
    if settings.get("program") == "no_such_train.py":
        settings["program"] = "no_such_train.py"  # relative to the sweep file, as users write it
    path = sweep_file(parameters=parameters, **settings)
    if "metric" in settings and settings["metric"] is None:
        path.write_text(path.read_text() + "metric: null\n")
    out = tmp_path / "run"
    assert run_cli("sweep", path, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffsearch: error: ")
    assert str(path) in err or words[0].startswith(("--",)), err
    for word in words:
        assert word in err, err
    assert not out.exists()  # no folder, no storage, no study


def test_bad_yaml_a_missing_file_and_bad_flags(tmp_path, capsys, sweep_file):
    broken = tmp_path / "broken.yaml"
    broken.write_text("program: train.py\nparameters: {lr: [1, 2\n")
    for args, words in (
        ([broken], ["broken.yaml: not valid YAML", "line"]),
        ([tmp_path / "absent.yaml"], ["absent.yaml", "not found"]),
        ([sweep_file(), "--searcher", "cmaes"], ["--searcher: unknown searcher 'cmaes'"]),
        ([sweep_file(), "--trial-timeout", 0], ["--trial-timeout"]),
        ([sweep_file(), "--gpus", "0,,1"], ["--gpus"]),
        ([sweep_file(), "--workers", 0], ["--workers"]),
    ):
        assert run_cli("sweep", *args, "--out", tmp_path / "run") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and all(word in err for word in words), err
    assert not (tmp_path / "run").exists()


def test_a_study_made_for_another_space_is_refused_and_left_unchanged(sweep_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("sweep", sweep_file(trials=1), "--out", out) == 0
    before = (out / "study.db").read_bytes()
    capsys.readouterr()
    changed = sweep_file(trials=1, parameters={"steps": {"value": 5}})
    assert run_cli("sweep", changed, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was made with parameters=" in err and "another --study name" in err
    assert (out / "study.db").read_bytes() == before


def quadratic_local():
    return lambda params, report: params["x"] ** 2


@pytest.mark.parametrize(
    "objective, workers, words",
    [
        (
            "no_such_module_xyz:objective",
            1,
            ["'no_such_module_xyz:objective' cannot be imported", "ModuleNotFoundError"],
        ),
        ("sweep_objectives:no_such_function", 1, ["has no function 'no_such_function'"]),
        ("just_a_name", 1, ["expected 'module:function'"]),
        (quadratic_local(), 2, ["cannot be imported by worker processes", "lambda"]),
    ],
)
def test_python_api_refuses_an_objective_it_cannot_import(tmp_path, objective, workers, words):
    with pytest.raises(UsageError) as error:
        diffsearch.search(
            objective, {"x": {"min": -1.0, "max": 1.0}}, trials=2, workers=workers, out=str(tmp_path / "run")
        )
    assert "\n" not in str(error.value) and all(word in str(error.value) for word in words), str(error.value)
    assert not (tmp_path / "run").exists()


def test_python_api_names_its_space_in_errors(tmp_path):
    with pytest.raises(UsageError, match=r"^diffsearch.search\(\): parameters.x: min 1.0 must be below max -1.0$"):
        diffsearch.search(lambda p, r: 0.0, {"x": {"min": 1.0, "max": -1.0}}, out=str(tmp_path / "run"))
    with pytest.raises(UsageError, match="pruner"):
        diffsearch.search(lambda p, r: 0.0, {"x": {"min": 0.0, "max": 1.0}}, pruner="median", out=str(tmp_path / "r"))
    assert not (tmp_path / "run").exists()


def test_a_grid_without_metric_cannot_stop_trials_early(sweep_file, tmp_path, capsys):
    path = sweep_file(
        method="grid",
        trials=None,
        metric=None,
        parameters={"learning_rate": {"values": [0.01, 0.1]}, "optimizer": {"value": "sgd"}, "momentum": None},
        early_terminate={"type": "hyperband", "min_iter": 1},
    )
    assert run_cli("sweep", path, "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "early_terminate needs a metric" in err and str(path) in err
    assert not (tmp_path / "run").exists()


def test_python_api_refuses_what_a_function_cannot_use(tmp_path):
    sweep = {"method": "random", "metric": {"name": "loss"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    for extra, words in (
        ({"program": "train.py"}, "program: diffsearch.search calls your function"),
        ({"metric": {"name": "loss", "source": "tensorboard"}}, "metric.source"),
        ({"parameters": {"x": {"distribution": "normal", "sigma": -1}}}, "parameters.x.sigma"),
    ):
        with pytest.raises(UsageError, match=words) as error:
            diffsearch.search(lambda p, r: 0.0, {**sweep, **extra}, trials=1, out=str(tmp_path / "run"))
        assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_a_wandb_source_without_the_wandb_package_is_refused(sweep_file, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    path = sweep_file(metric={"name": "val_loss", "source": "wandb"})
    assert run_cli("sweep", path, "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metric.source: wandb" in err and "pip install wandb" in err and str(path) in err
    assert not (tmp_path / "run").exists()
