"""The sweep file's parameters as a space: distributions, W&B's implied ones, conditionals, drawing order."""

import datetime
import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from diffsearch.errors import UsageError
from diffsearch.sweeps.report_lines import read_report
from diffsearch.sweeps.schema import parse_early_terminate
from diffsearch.sweeps.space import parse_parameters
from diffsearch.errors import TrialFailed

SPACE = {
    "lr_warmup_steps": {
        "distribution": "int_uniform",
        "min": 0,
        "max": 50,
        "when": {"lr_scheduler": {"not": "constant"}},
    },
    "learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-2},
    "train_batch_size": {"values": [16, 32]},
    "num_epochs": {"value": 2},
    "lr_scheduler": {"values": ["constant", "cosine"]},
    "adam_weight_decay": {"distribution": "uniform", "min": 0.0, "max": 0.1},
    "dropout": {"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.1},
    "width": {"distribution": "q_uniform", "min": 32, "max": 256, "q": 32},
    "channels": {"distribution": "q_log_uniform_values", "min": 8, "max": 512, "q": 8},
    "layers": {"min": 1, "max": 4},  # W&B: two ints without a distribution are int_uniform
    "ratio": {"min": 0.1, "max": 0.9},  # ... and otherwise uniform
}


def test_every_distribution_maps_to_its_optuna_distribution():
    space = {p.name: p for p in parse_parameters(SPACE, "sweep.yaml").parameters}
    assert space["learning_rate"].distribution == FloatDistribution(1e-5, 1e-2, log=True)
    assert space["train_batch_size"].distribution == CategoricalDistribution((16, 32))
    assert space["num_epochs"].distribution is None and space["num_epochs"].value == 2
    assert space["lr_warmup_steps"].distribution == IntDistribution(0, 50)
    assert space["dropout"].distribution == FloatDistribution(0.0, 0.5, step=0.1)
    assert space["width"].distribution == IntDistribution(32, 256, step=32)  # whole numbers stay ints
    assert space["layers"].distribution == IntDistribution(1, 4)
    assert space["ratio"].distribution == FloatDistribution(0.1, 0.9)


def test_parents_are_drawn_first_and_inactive_parameters_are_not_drawn():
    space = parse_parameters(SPACE, "sweep.yaml")
    order = [p.name for p in space.parameters]
    assert order.index("lr_scheduler") < order.index("lr_warmup_steps")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        seen.add(values["lr_scheduler"])
        assert ("lr_warmup_steps" in values) == (values["lr_scheduler"] != "constant")
        assert ("lr_warmup_steps" in trial.params) == (values["lr_scheduler"] != "constant")
        assert "num_epochs" not in trial.params and values["num_epochs"] == 2  # a constant is passed, not drawn
        assert values["channels"] % 8 == 0 and 8 <= values["channels"] <= 512 and isinstance(values["channels"], int)
        study.tell(trial, 0.0)
    assert seen == {"constant", "cosine"}


def test_a_condition_on_a_conditional_parent_needs_the_parent_active():
    space = parse_parameters(
        {
            "optimizer": {"values": ["sgd", "adam"]},
            "schedule": {"values": ["none", "step"], "when": {"optimizer": ["adam"]}},
            "gamma": {"min": 0.1, "max": 0.9, "when": {"schedule": "step"}},
        },
        "sweep.yaml",
    )
    assert space.suggest(optuna.trial.FixedTrial({"optimizer": "sgd"})) == {"optimizer": "sgd"}
    assert space.suggest(optuna.trial.FixedTrial({"optimizer": "adam", "schedule": "step", "gamma": 0.5})) == {
        "optimizer": "adam",
        "schedule": "step",
        "gamma": 0.5,
    }


@pytest.mark.parametrize(
    "spec, words",
    [
        (
            {"lr": {"distribution": "gaussian", "min": 0, "max": 1}},
            ["parameters.lr.distribution", "unknown distribution 'gaussian'"],
        ),
        (
            {"lr": {"distribution": "normal", "min": 0, "max": 1}},
            ["parameters.lr", "unknown key 'min' for distribution normal"],
        ),
        (
            {"lr": {"distribution": "uniform", "min": 1.0, "max": 0.1}},
            ["parameters.lr", "min 1.0 must be below max 0.1"],
        ),
        ({"lr": {"distribution": "uniform", "min": 1.0, "max": 1.0}}, ["parameters.lr", "must be below"]),
        ({"lr": {"distribution": "log_uniform_values", "min": 0.0, "max": 1.0}}, ["parameters.lr", "min > 0"]),
        ({"lr": {"distribution": "categorical"}}, ["parameters.lr.values", "non-empty list"]),
        ({"lr": {"values": []}}, ["parameters.lr.values", "non-empty list"]),
        ({"lr": {"distribution": "uniform", "max": 1.0}}, ["parameters.lr", "needs `min` and `max`"]),
        ({"lr": {"min": 0.1, "max": 1.0, "mu": 3}}, ["parameters.lr", "unknown key 'mu'"]),
        ({"lr": {"distribution": "int_uniform", "min": 0.5, "max": 3}}, ["parameters.lr.min", "whole numbers"]),
        ({"lr": {"distribution": "q_uniform", "min": 0.1, "max": 0.4, "q": 1}}, ["parameters.lr", "no multiple of q"]),
        ({"lr": {"min": "low", "max": 1.0}}, ["parameters.lr.min", "expected a finite number"]),
        ({"lr": {"desc": 1}}, ["parameters.lr", "give `value`, `values`, or `min` and `max`"]),
        (
            {"a": {"values": [1, 2], "when": {"b": 1}}, "b": {"values": [1, 2], "when": {"a": 1}}},
            ["conditions form a cycle", "a -> b -> a"],
        ),
        ({"a": {"values": [1, 2], "when": {"a": 1}}}, ["cycle", "a -> a"]),
        ({"a": {"values": [1, 2], "when": {"ghost": 1}}}, ["parameters.a.when", "unknown parent 'ghost'"]),
        (
            {"a": {"values": [1, 2]}, "b": {"min": 0, "max": 1, "when": {"a": 3}}},
            ["parameters.b.when.a", "3 is not one of its values"],
        ),
        (
            {"a": {"min": 0, "max": 1}, "b": {"min": 0, "max": 1, "when": {"a": 0.5}}},
            ["parameters.b.when.a", "must be a categorical"],
        ),
        ({"a": {"values": [datetime.date(2024, 1, 1)]}}, ["parameters.a.values", "a value JSON can hold"]),
        ({"a": {"values": [[1, 2], [1, 2]]}}, ["parameters.a.values", "listed twice"]),
        ([], ["parameters: expected a mapping"]),
        (
            {"lr": {"distribution": "log_normal", "mu": 0, "sigma": 500}},
            ["parameters.lr", "log_normal", "smaller mu or sigma"],
        ),
        ({"lr": {"distribution": "q_log_normal", "mu": 800, "sigma": 1}}, ["parameters.lr", "smaller mu or sigma"]),
    ],
)
def test_a_bad_parameter_is_one_line_naming_the_file_and_key(spec, words):
    with pytest.raises(UsageError) as error:
        parse_parameters(spec, "sweep.yaml")
    message = str(error.value)
    assert message.startswith("sweep.yaml: ") and "\n" not in message
    for word in words:
        assert word in message, message


def test_yaml_exponents_without_a_dot_are_numbers():
    space = parse_parameters({"lr": {"distribution": "log_uniform_values", "min": "1e-5", "max": "1e-2"}}, "s")
    assert space.parameters[0].distribution == FloatDistribution(1e-5, 1e-2, log=True)


def test_report_lines():
    assert read_report("step 3: training", "fid") is None
    assert read_report('{"step": 3, "loss": 1.0}', "fid") is None  # another metric: a log line
    report = read_report('{"epoch": 3, "fid": 12.5, "kid": 0.1}', "fid")
    assert (report.step, report.value, report.line["kid"]) == (3, 12.5, 0.1)
    assert read_report('{"fid": 1}', "fid").step is None
    assert read_report('{"step": 2, "fid": NaN}', "fid").value != read_report('{"step": 2, "fid": NaN}', "fid").value
    with pytest.raises(TrialFailed, match="not a number"):
        read_report('{"step": 2, "fid": "high"}', "fid")
    with pytest.raises(TrialFailed, match="whole number"):
        read_report('{"step": 2.5, "fid": 1.0}', "fid")


def test_early_terminate_is_checked():
    assert parse_early_terminate({"type": "hyperband"}, "s") == {
        "type": "hyperband",
        "min_iter": 1,
        "max_iter": None,
        "eta": 3,
    }
    for spec, words in (
        ({"type": "median"}, "expected hyperband or successive_halving"),
        ({"type": "hyperband", "s": 2}, "give max_iter too"),
        ({"type": "hyperband", "bands": 2}, "unknown key 'bands'"),
        ({"type": "hyperband", "eta": 1}, "eta"),
        ({"type": "hyperband", "min_iter": 4, "max_iter": 2}, "must be above"),
    ):
        with pytest.raises(UsageError, match=words):
            parse_early_terminate(spec, "s")


def draws(spec, n=400, seed=0):
    """n random-search draws of one parameter, as the program gets them."""
    space = parse_parameters({"p": spec}, "sweep.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    values = []
    for _ in range(n):
        trial = study.ask()
        values.append(space.suggest(trial)["p"])
        study.tell(trial, 0.0)
    return values


@pytest.mark.parametrize(
    "spec, reference",
    [
        # W&B's definitions (wandb/sweeps params.py): the same distribution under random search
        ({"distribution": "normal", "mu": 100, "sigma": 10}, lambda s: s.norm(100, 10)),
        ({"distribution": "normal"}, lambda s: s.norm(0, 1)),
        ({"distribution": "log_normal", "mu": -3, "sigma": 0.5}, lambda s: s.lognorm(s=0.5, scale=math.exp(-3))),
        ({"distribution": "beta", "a": 2, "b": 5}, lambda s: s.beta(2, 5)),
        (
            {"distribution": "log_uniform", "min": -9.2, "max": -2.3},
            lambda s: s.loguniform(math.exp(-9.2), math.exp(-2.3)),
        ),
        (
            {"distribution": "inv_log_uniform", "min": 2.3, "max": 9.2},
            lambda s: s.loguniform(math.exp(-9.2), math.exp(-2.3)),
        ),
        ({"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 0.1}, lambda s: s.loguniform(1e-4, 0.1)),
    ],
)
def test_unbounded_and_log_distributions_draw_as_wandb_defines_them(spec, reference):
    from scipy import stats

    values = draws(spec)
    assert stats.kstest(values, reference(stats).cdf).pvalue > 0.01


def test_quantized_forms_round_to_q_as_wandb_does():
    for spec, q in (
        ({"distribution": "q_normal", "mu": 100, "sigma": 20, "q": 10}, 10),
        ({"distribution": "q_log_normal", "mu": 4.6, "sigma": 0.5, "q": 16}, 16),
        ({"distribution": "q_log_uniform", "min": 2.0, "max": 6.0, "q": 8}, 8),
    ):
        values = draws(spec, n=50)
        assert all(isinstance(v, int) and v % q == 0 for v in values), values
    keep = draws({"distribution": "q_beta", "a": 2, "b": 5, "q": 0.05}, n=50)
    assert all(0 <= v <= 1 and abs(v / 0.05 - round(v / 0.05)) < 1e-9 for v in keep)
    assert len(set(keep)) > 3
    rates = draws({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.3}, n=50)  # W&B: max - min need not be k*q
    assert set(rates) <= {0.0, 0.3, 0.6, 0.9} and len(set(rates)) >= 3


def test_probabilities_weight_a_random_categorical():
    values = draws({"values": ["a", "b", "c"], "probabilities": [0.7, 0.0, 0.3]}, n=500)
    assert values.count("b") == 0 and 0.62 < values.count("a") / 500 < 0.78
    assert parse_parameters({"p": {"values": [1, 2], "probabilities": [0.5, 0.5]}}, "s").parameters[0].choices == (1, 2)
    named = {"distribution": "categorical_w_probabilities", "values": [1, 2], "probabilities": [0.25, 0.75]}
    assert parse_parameters({"p": named}, "s").parameters[0].weighted == ((1, 2), (0.25, 1.0))


def test_nested_parameters_are_searched_flat_and_passed_nested():
    space = parse_parameters(
        {
            "batch_size": {"values": [32, 64]},
            "optimizer": {
                "parameters": {"lr": {"values": [0.1, 0.01]}, "nadam": {"parameters": {"beta": {"value": 0.9}}}}
            },
            "momentum": {"min": 0.1, "max": 0.9, "when": {"optimizer.lr": 0.1}},
        },
        "sweep.yaml",
    )
    assert [p.name for p in space.parameters] == ["batch_size", "optimizer.lr", "optimizer.nadam.beta", "momentum"]
    trial = optuna.trial.FixedTrial({"batch_size": 32, "optimizer.lr": 0.1, "momentum": 0.5})
    assert space.suggest(trial) == {"batch_size": 32, "optimizer": {"lr": 0.1, "nadam": {"beta": 0.9}}, "momentum": 0.5}
    # a flat name with a dot stays flat (as in W&B): only `parameters:` nests
    flat = parse_parameters({"model.depth": {"values": [2, 3]}}, "s")
    assert flat.suggest(optuna.trial.FixedTrial({"model.depth": 2})) == {"model.depth": 2}


def test_values_may_be_lists_as_in_wandb():
    space = parse_parameters(
        {
            "encoder": {"values": [[8, 16, 32], [32, 64, 128]]},
            "head": {"values": ["mlp", "linear"], "when": {"encoder": [[8, 16, 32]]}},
        },
        "s",
    )
    assert space.parameters[0].distribution == CategoricalDistribution(("[8, 16, 32]", "[32, 64, 128]"))
    assert space.suggest(optuna.trial.FixedTrial({"encoder": "[8, 16, 32]", "head": "mlp"})) == {
        "encoder": [8, 16, 32],
        "head": "mlp",
    }
    assert space.suggest(optuna.trial.FixedTrial({"encoder": "[32, 64, 128]"})) == {"encoder": [32, 64, 128]}


def test_a_when_inside_a_nested_parameter_may_name_its_sibling():
    space = parse_parameters(
        {
            "optimizer": {
                "parameters": {
                    "name": {"values": ["adam", "sgd"]},
                    "momentum": {"min": 0.5, "max": 0.9, "when": {"name": "sgd"}},
                }
            }
        },
        "s",
    )
    assert space.parameters[1].conditions[0].parent == "optimizer.name"
    assert space.suggest(optuna.trial.FixedTrial({"optimizer.name": "adam"})) == {"optimizer": {"name": "adam"}}
    assert space.suggest(optuna.trial.FixedTrial({"optimizer.name": "sgd", "optimizer.momentum": 0.7})) == {
        "optimizer": {"name": "sgd", "momentum": 0.7}
    }
