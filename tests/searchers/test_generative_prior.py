import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from diffsearch.searchers.hparams.generative import GenerativeConfig, GenerativeHPO
from diffsearch.searchers.hparams.generative_prior import bump_function, prior_histories
from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler, SpaceCodec

from helpers import MIXED_SPACE as SPACE
from helpers import fast_config


def test_prior_histories_are_random_search_on_bump_functions():
    histories = prior_histories(SPACE, functions=5, trials=40)
    codec = SpaceCodec(SPACE)
    assert len(histories) == 5
    rng = np.random.default_rng(2000)
    for X, y in histories:
        assert X.shape == (40, codec.dim) and y.shape == (40,)
        # valid codes of the space: integers rounded, steps kept, categoricals one-hot
        np.testing.assert_array_equal(codec.project(X), X)
        rng.integers(1 << 31)  # the random sampler's seed, drawn before each function
        function = bump_function(rng, codec.dim)
        np.testing.assert_array_equal(y, [function(x) for x in X])
        assert (y > 0).all() and y.std() > 0
    # fixed draws: a resumed study, or another study of the same space, pre-trains on the same histories
    again = prior_histories(SPACE, functions=5, trials=40)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(histories, again))
    assert not np.array_equal(histories[0][0], histories[1][0])


def test_config_rejects_a_negative_prior():
    with pytest.raises(ValueError, match="prior_functions"):
        GenerativeConfig(prior_functions=-1)


def _pretrained_histories(monkeypatch, **sampler_kwargs) -> list:
    seen = []
    original = GenerativeHPO.pretrain
    monkeypatch.setattr(
        GenerativeHPO,
        "pretrain",
        lambda self, histories, steps=None: seen.append(histories) or original(self, histories, steps),
    )
    study = optuna.create_study(sampler=GenerativeSampler(seed=0, n_startup_trials=2, **sampler_kwargs))
    study.optimize(
        lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2 + t.suggest_float("w", 1e-3, 1.0, log=True), n_trials=4
    )
    assert len(seen) == 1  # once per space, before the first model trial
    return seen[0]


@pytest.mark.slow
def test_the_sampler_pretrains_on_the_prior_only_without_earlier_studies(monkeypatch):
    config = fast_config(pretrain_steps=20, prior_functions=3)
    histories = _pretrained_histories(monkeypatch, config=config)
    # drawn in the objective's order (x, then w), coded in the codec's (sorted: w, x)
    expected = prior_histories({"x": FloatDistribution(0.0, 1.0), "w": FloatDistribution(1e-3, 1.0, log=True)}, 3)
    assert len(histories) == 3
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(histories, expected))

    source = optuna.create_study()
    source.optimize(lambda t: t.suggest_float("x", 0.0, 1.0) + t.suggest_float("w", 1e-3, 1.0, log=True), n_trials=5)
    histories = _pretrained_histories(
        monkeypatch, config=fast_config(pretrain_steps=20, prior_functions=3), source_studies=[source]
    )
    assert len(histories) == 1 and len(histories[0][0]) == 5  # an earlier study of the space takes precedence
    assert _pretrained_histories(monkeypatch, config=fast_config(prior_functions=0)) == []  # a cold start
