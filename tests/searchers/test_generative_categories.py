"""The generative searcher must not collapse onto the category its start-up trials happened to favour."""

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler, SpaceCodec

from helpers import fast_config

KINDS = ["a", "b", "c", "d"]
SPACE = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "kind": CategoricalDistribution(KINDS)}


def objective(trial):
    params = {name: trial._suggest(name, dist) for name, dist in SPACE.items()}
    # "a" is the worst kind: a searcher that stays on it never finds the optimum
    return (np.log10(params["lr"]) + 3) ** 2 + {"a": 1.0, "b": 0.5, "c": 0.0, "d": 0.2}[params["kind"]]


@pytest.mark.slow
def test_every_category_is_tried_within_k_minus_1_model_suggestions():
    # the collapse: every start-up trial drew "a", so the model learns a history of "a" alone; decoded by
    # argmax, its samples all said "a" and every later suggestion kept it
    sampler = GenerativeSampler(
        seed=3,
        n_startup_trials=5,
        config=fast_config(first_fit_steps=100, refit_steps=10, candidates=16, score_draws=8),
    )
    study = optuna.create_study(sampler=sampler)
    for lr in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1):
        study.enqueue_trial({"lr": lr, "kind": "a"})
    study.optimize(objective, n_trials=5 + len(KINDS) - 1)
    assert sampler._model is not None  # the last three came from the model, not the random start-up
    assert sorted(t.params["kind"] for t in study.trials[5:]) == ["b", "c", "d"]


def test_least_tried_choices_and_forcing_them():
    codec = SpaceCodec(SPACE)
    X = np.stack([codec.encode({"lr": 1e-3, "kind": kind}) for kind in "aaab"])
    assert list(codec.least_tried(X, 1)["kind"]) == [2, 3]  # c and d: never tried
    assert codec.least_tried(np.concatenate([X, X[:0]]), 0) == {}  # category_tries=0: never forces
    X_all = np.stack([codec.encode({"lr": 1e-3, "kind": kind}) for kind in "aaabcd"])
    assert codec.least_tried(X_all, 1) == {}
    assert list(codec.least_tried(X_all, 2)["kind"]) == [1, 2, 3]
    forced = codec.with_choices(X, {"kind": np.array([2, 3])}, np.random.default_rng(0))
    assert {codec.decode(row)["kind"] for row in forced} <= {"c", "d"}
    assert all(codec.decode(row)["lr"] == codec.decode(x)["lr"] for row, x in zip(forced, X))


@pytest.mark.slow
def test_spaces_without_categoricals_are_searched_exactly_as_before():
    # neither the tries of untried categories nor the Thompson draws take a random number where there is no
    # categorical, so on continuous spaces (10 of the 17 benchmark tasks) every suggestion is the one the
    # searcher made before either existed
    space = {"x": FloatDistribution(0.0, 1.0), "lr": FloatDistribution(1e-5, 1e-1, log=True)}

    def values(tries, choice):
        config = fast_config(timesteps=50, first_fit_steps=20, refit_steps=5, candidates=8, score_draws=4)
        study = optuna.create_study(
            sampler=GenerativeSampler(
                seed=1, n_startup_trials=3, config=config, category_tries=tries, category_choice=choice
            )
        )
        study.optimize(lambda t: sum(t._suggest(n, d) for n, d in space.items()), n_trials=5)
        return [t.params for t in study.trials]

    assert values(0, "model") == values(1, "model") == values(1, "thompson")


def test_thompson_choice_favours_the_choice_of_the_best_trials_and_keeps_the_others_alive():
    codec = SpaceCodec(SPACE)
    # 12 trials: "c" holds the best three (y higher is better), "a" the nine others
    X = np.stack([codec.encode({"lr": 1e-3, "kind": kind}) for kind in "ccc" + "a" * 9])
    y = np.array([3.0, 2.9, 2.8] + [0.0] * 9)
    rng = np.random.default_rng(0)
    drawn = [KINDS[int(codec.thompson_choices(X, y, rng)["kind"][0])] for _ in range(400)]
    counts = {kind: drawn.count(kind) for kind in KINDS}
    assert counts["c"] > 200  # Beta(4, 1): the best trials' choice wins most draws
    assert counts["a"] < 20  # Beta(1, 10): nine tries, never among the best
    assert counts["b"] > 10 and counts["d"] > 10  # untried: Beta(1, 1), still drawn


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["model", "thompson"])
def test_thompson_choice_sets_the_category_of_every_model_suggestion(monkeypatch, choice):
    # once every kind was tried, category_choice="thompson" hands the categorical to the bandit draw and the
    # model proposes the rest; "model" (the default) never asks the bandit
    asked = []

    def always_b(self, X, y, rng):
        asked.append(len(X))
        return {"kind": np.array([KINDS.index("b")])}

    monkeypatch.setattr(SpaceCodec, "thompson_choices", always_b)
    config = fast_config(first_fit_steps=50, refit_steps=5, candidates=8, score_draws=4)
    sampler = GenerativeSampler(seed=0, n_startup_trials=5, config=config, category_choice=choice)
    study = optuna.create_study(sampler=sampler)
    for kind, lr in zip("abcda", (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)):
        study.enqueue_trial({"lr": lr, "kind": kind})
    study.optimize(objective, n_trials=9)
    later = [t.params["kind"] for t in study.trials[5:]]
    if choice == "thompson":
        assert later == ["b"] * 4 and asked == [5, 6, 7, 8]
    else:
        assert asked == [] and len(set(t.params["lr"] for t in study.trials[5:])) == 4
    with pytest.raises(ValueError, match="category_choice"):
        GenerativeSampler(category_choice="argmax")
