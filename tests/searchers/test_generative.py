import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution

from diffsearch.searchers.hparams.generative import GenerativeConfig, GenerativeHPO, Network, Sampler, scale_y
from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler, SpaceCodec, source_history

from helpers import MIXED_SPACE as SPACE
from helpers import fast_config


def test_codec_round_trip():
    codec = SpaceCodec(SPACE)
    assert codec.dim == 5 + 3
    rng = np.random.default_rng(0)
    for _ in range(50):
        params = codec.decode(rng.uniform(size=codec.dim))
        for name, dist in SPACE.items():
            assert dist._contains(dist.to_internal_repr(params[name])), (name, params[name])
        again = codec.decode(codec.encode(params))
        for name in SPACE:
            if name == "optimizer":
                assert again[name] == params[name]
            else:
                assert again[name] == pytest.approx(params[name], rel=1e-6)
    x = codec.encode({"lr": 1e-5, "dropout": 0.5, "ratio": 0.1, "layers": 8, "width": 16, "optimizer": "sgd"})
    assert x.min() >= 0 and x.max() <= 1 and x[codec.slices["optimizer"]].tolist() == [0, 0, 1]


@pytest.mark.parametrize("share, queries", [(None, 1), (None, 4), (0.5, 4)])
def test_sampler_flags_improvement_against_context(share, queries):
    X = np.array([[0.1], [0.2], [0.3], [0.4]], dtype=np.float32)
    y = np.array([0.95, 0.97, 0.90, 0.50])
    x, improves, context, padding, group = Sampler(X, y, 3, np.random.default_rng(0), share, queries)(256)
    assert len(x) == len(improves) == len(group) == 256 and len(context) == 256 // queries
    for row in range(256):
        members = context[group[row]][~padding[group[row]]]
        query_y = y[np.argmin(np.abs(X[:, 0] - x[row, 0].item()))]
        best_in_context = y[[int(np.argmin(np.abs(X[:, 0] - m[0].item()))) for m in members]].max()
        assert improves[row].item() == float(query_y >= best_in_context)
    if share is not None:
        assert improves.mean().item() == pytest.approx(share)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("y", [np.zeros(5), np.array([1.0])])
def test_stratified_sampler_keeps_its_batch_when_no_triple_has_I_0(share, y):
    """All results equal, or one result: every triple has I = 1, and the batch still has its size."""
    X = np.random.default_rng(0).uniform(size=(len(y), 2)).astype(np.float32)
    x, improves, *_ = Sampler(X, y, 32, np.random.default_rng(0), share, 8)(64)
    assert len(x) == 64 and improves.min().item() == 1.0


def test_config_rejects_impossible_batch_settings():
    with pytest.raises(ValueError, match="improve_share"):
        GenerativeConfig(improve_share=1.5)
    with pytest.raises(ValueError, match="queries_per_context"):
        GenerativeConfig(queries_per_context=0)
    with pytest.raises(ValueError, match="dropout"):
        GenerativeConfig(dropout=1.0)


def test_stratified_sampler_keeps_the_conditional_of_p_H():
    """Stratifying on I changes how often each label is drawn, not which queries carry it."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(6, 1)).astype(np.float32)
    y = rng.normal(size=6)

    def query_frequencies(share):
        counts = np.zeros(6)
        sampler = Sampler(X, y, 6, np.random.default_rng(1), share, 4)
        for _ in range(150):
            x, improves, *_ = sampler(256)
            rows = improves.numpy() == 1
            counts += np.bincount(np.argmin(np.abs(X[:, 0][None] - x.numpy()[rows]), axis=1), minlength=6)
        return counts / counts.sum()

    plain, stratified = query_frequencies(None), query_frequencies(0.5)
    assert np.abs(plain - stratified).max() < 0.02
    assert stratified[np.argmax(y)] > 0.3  # the best point carries I = 1 most often


@pytest.mark.slow
def test_hpob_interface_continuous_and_discrete():
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(8, 3)), rng.normal(size=(8, 1))
    method = GenerativeHPO(seed=0, config=fast_config())
    x = method.observe_and_suggest(X, y)
    assert x.shape == (3,) and (0 <= x).all() and (x <= 1).all()
    pending = rng.uniform(size=(20, 3))
    index = method.observe_and_suggest(X, y, X_pen=pending)
    assert isinstance(index, int) and 0 <= index < 20


@pytest.mark.slow
@pytest.mark.parametrize("sample_steps", [0, 20])  # the full DDPM loop; 20 DDIM steps
def test_proposes_improving_points_more_often_than_random(sample_steps):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(30, 2)).astype(np.float32)
    quadratic = lambda P: -((P - 0.3) ** 2).sum(axis=1)  # noqa: E731
    y = quadratic(X)
    method = GenerativeHPO(seed=0, config=fast_config(first_fit_steps=400, sample_steps=sample_steps))
    method.fit(X, y)
    proposals = method.generate(X, y, n=300)
    generative_rate = (quadratic(proposals) > y.max()).mean()
    random_rate = (quadratic(rng.uniform(size=(20_000, 2))) > y.max()).mean()
    assert generative_rate > 1.5 * random_rate, (generative_rate, random_rate)
    assert method.config.losses[-1] < method.config.losses[0]


@pytest.mark.slow
def test_optuna_sampler_on_mixed_space(monkeypatch):
    def objective(trial):
        params = {name: trial._suggest(name, dist) for name, dist in SPACE.items()}
        return (np.log10(params["lr"]) + 3) ** 2 + params["dropout"] + (params["optimizer"] != "adam")

    proposed = []  # (trials in the model's history, the code it proposed), one per suggestion
    suggest = GenerativeHPO.suggest

    def spy(self, X, y, *args, **kwargs):
        x = suggest(self, X, y, *args, **kwargs)
        proposed.append((len(X), x))
        return x

    monkeypatch.setattr(GenerativeHPO, "suggest", spy)
    sampler = GenerativeSampler(seed=0, n_startup_trials=3, config=fast_config())
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=6)
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert sampler._model is not None
    # trials 4-6 came from the model: one suggestion each, made once the 3 start-up trials (and each
    # model trial before it) had finished, and each trial holds exactly the configuration proposed
    assert [seen for seen, _ in proposed] == [3, 4, 5]
    codec = SpaceCodec(SPACE)
    for trial, (_, x) in zip(study.trials[3:], proposed):
        assert trial.params == codec.decode(x), trial.number


def test_context_embedding_ignores_order_and_padding():
    import torch

    from diffsearch.searchers.hparams.generative import ContextEncoder

    torch.manual_seed(0)
    encoder = ContextEncoder(dim=3, width=16, layers=2, heads=4).eval()
    context = torch.randn(1, 7, 4)
    shuffled = context[:, torch.randperm(7)]
    padded = torch.cat([context, torch.randn(1, 3, 4)], dim=1)
    mask = torch.tensor([[False] * 7 + [True] * 3])
    with torch.no_grad():
        a = encoder(context, torch.zeros(1, 7, dtype=torch.bool))
        b = encoder(shuffled, torch.zeros(1, 7, dtype=torch.bool))
        c = encoder(padded, mask)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_guided_generation_stays_in_the_unit_cube():
    rng = np.random.default_rng(1)
    X, y = rng.uniform(size=(10, 4)), rng.normal(size=10)
    method = GenerativeHPO(seed=0, config=fast_config(guidance=2.0, first_fit_steps=20))
    method.fit(X, y)
    proposals = method.generate(X, y, n=16)
    assert proposals.shape == (16, 4) and proposals.min() >= 0 and proposals.max() <= 1


@pytest.mark.slow
def test_model_rates_improving_candidates_above_the_rest():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(30, 2)).astype(np.float32)
    quadratic = lambda P: -((P - 0.3) ** 2).sum(axis=1)  # noqa: E731
    y = quadratic(X)
    method = GenerativeHPO(seed=0, config=fast_config(first_fit_steps=400, score_draws=64))
    method.fit(X, y)
    candidates = rng.uniform(size=(200, 2)).astype(np.float32)
    scores = method.improvement_score(candidates, X, y)
    chosen = candidates[np.argsort(scores)[-20:]]  # the 20 the model rates highest
    assert quadratic(chosen).mean() > quadratic(candidates).mean() + 0.1, (
        quadratic(chosen).mean(),
        quadratic(candidates).mean(),
    )


def test_thompson_sampling_holds_one_dropout_mask_per_suggestion():
    """Samples and ranking of one suggestion see the same sub-network; the next suggestion another;
    outside a suggestion (training, plain generate) no mask is fixed."""
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(12, 3)), rng.normal(size=12)
    method = GenerativeHPO(seed=0, config=fast_config(first_fit_steps=20, candidates=8))
    method.fit(X, y)
    assert len(method.network.dropouts()) == 3
    seen = []
    for name in ("generate", "improvement_score"):
        original = getattr(method, name)

        def spy(*args, original=original, **kwargs):
            seen.append([layer.mask.clone() for layer in method.network.dropouts()])
            return original(*args, **kwargs)

        setattr(method, name, spy)
    method.suggest(X, y)
    method.suggest(X, y)
    assert len(seen) == 4  # generate and rank, twice
    first, second = seen[:2], seen[2:]
    assert all(torch.equal(a, b) for a, b in zip(*first)) and all(torch.equal(a, b) for a, b in zip(*second))
    assert not all(torch.equal(a, b) for a, b in zip(first[0], second[0]))
    assert all(layer.mask is None for layer in method.network.dropouts())
    kept = torch.cat(first[0]) > 0
    assert 0.5 < kept.float().mean() < 0.9  # p = 0.3; kept units scaled by 1 / 0.7
    assert torch.allclose(torch.cat(first[0])[kept], torch.tensor(1 / 0.7))


def test_dropout_is_for_a_cold_start_unless_configured():
    """None: dropout 0.3 (Thompson sampling) on a cold start, none once pre-trained; a set value wins.
    Without dropout there is no dropout layer at all: the seed's network."""
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(6, 2)), rng.normal(size=6)
    sources = [(rng.uniform(size=(8, 2)), rng.normal(size=8))]

    def dropout_layers(config, pretrained):
        method = GenerativeHPO(seed=0, config=config)
        if pretrained:
            method.pretrain(sources, steps=2)
        method.fit(X, y, steps=2)
        return [layer.p for layer in method.network.dropouts()]

    assert dropout_layers(fast_config(), pretrained=False) == [0.3] * 3
    assert dropout_layers(fast_config(), pretrained=True) == []
    assert dropout_layers(fast_config(dropout=0.0), pretrained=False) == []
    assert dropout_layers(fast_config(dropout=0.1), pretrained=True) == [0.1] * 3
    assert Network(2, fast_config()).dropouts() == []


def test_improvement_score_right_after_training_uses_the_whole_network():
    """Training leaves the network in train mode; the score must not draw a dropout mask per pass
    (the I = 0 and I = 1 errors would come from different sub-networks): same draws, same score."""
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(10, 2)), rng.normal(size=10)
    method = GenerativeHPO(seed=0, config=fast_config(first_fit_steps=20))
    method.fit(X, y)
    scores = []
    for _ in range(2):
        method.network.train()  # as fit leaves it
        method.generator.manual_seed(5)
        scores.append(method.improvement_score(X[:4], X, y))
    assert np.array_equal(scores[0], scores[1])


def test_novel_rows_drops_seen_and_repeated_rows():
    from diffsearch.searchers.hparams.generative import novel_rows

    seen = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    candidates = np.array([[0.0, 1.0], [0.5, 0.5], [0.5, 0.5], [1.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    assert novel_rows(candidates, seen).tolist() == [[0.5, 0.5], [1.0, 1.0]]
    assert novel_rows(candidates[:1], seen).shape == (0, 2)


@pytest.mark.slow
def test_discrete_space_trials_never_repeat_a_configuration():
    # 3 x 3 x 3 = 27 configurations: without the novelty filter the model's samples pile up on the best
    # configurations seen and most suggestions repeat one
    space = {f"op{i}": CategoricalDistribution(["a", "b", "c"]) for i in range(3)}
    scores = {"a": 0.0, "b": 1.0, "c": 3.0}

    def objective(trial):
        return sum(scores[trial._suggest(name, dist)] for name, dist in space.items())

    sampler = GenerativeSampler(seed=0, n_startup_trials=4, config=fast_config(first_fit_steps=100, refit_steps=10))
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=16)
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    model_made = configs[4:]
    assert all(c not in configs[: i + 4] for i, c in enumerate(model_made)), configs


def test_exhausted_space_still_gets_a_suggestion():
    space = {"op": CategoricalDistribution(["a", "b"])}
    sampler = GenerativeSampler(seed=0, n_startup_trials=2, config=fast_config(first_fit_steps=20, refit_steps=5))
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"op": "a"})
    study.enqueue_trial({"op": "b"})
    study.optimize(lambda t: float(t._suggest("op", space["op"]) == "a"), n_trials=4)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert sampler._model.random_fallbacks >= 1


def test_rank_scaling_is_not_squeezed_by_one_outlier():
    # HPOLib-like: good MSEs near 1e-4 and one diverged network at 4e7 (y = -MSE, higher is better)
    y = -np.array([1e-4, 2e-4, 4e-4, 4e7])
    minmax, rank = scale_y(y, "minmax"), scale_y(y, "rank")
    assert np.ptp(minmax[:3]) < 1e-9  # the three good ones are indistinguishable under min-max
    np.testing.assert_allclose(rank, [1.0, 2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(scale_y(np.array([3.0, 3.0, 5.0]), "rank"), [0.25, 0.25, 1.0])
    with pytest.raises(ValueError, match="y_scaling"):
        GenerativeConfig(y_scaling="zscore")


@pytest.mark.slow
def test_pretraining_on_earlier_studies_transfers_where_the_optimum_lies():
    rng = np.random.default_rng(0)
    quadratic = lambda P: -((P - 0.75) ** 2).sum(axis=1)  # noqa: E731
    sources = [(X, quadratic(X)) for X in (rng.uniform(size=(30, 2)).astype(np.float32) for _ in range(4))]
    X = rng.uniform(0.0, 0.4, size=(4, 2)).astype(np.float32)  # the new study: four points far from the optimum
    y = quadratic(X)
    distance = {}
    for warm in (False, True):
        method = GenerativeHPO(seed=0, config=fast_config(pretrain_steps=400))
        if warm:
            assert len(method.pretrain(sources)) == 400
        for _ in range(3):  # the first fit and two fine-tunes, as three trials of a study would run
            method.fit(X, y)
        distance[warm] = np.abs(method.generate(X, y, n=300) - 0.75).mean()
    # cold, the model only knows the four points and samples near them (~0.45 away); warm, it has
    # learnt from the earlier studies where the optimum lies
    assert distance[True] < distance[False] - 0.1, distance


def test_source_studies_keep_only_trials_the_space_admits():
    space = {"x": FloatDistribution(0.0, 1.0), "kind": CategoricalDistribution(["a", "b"])}
    source = optuna.create_study(direction="maximize")
    for params in (
        {"x": 0.2, "kind": "a"},
        {"x": 0.9, "kind": "b"},
        {"x": 0.5, "kind": "c"},
        {"x": 3.0, "kind": "a"},
        {"x": 0.4},
    ):
        dists = {"x": FloatDistribution(0.0, 5.0), "kind": CategoricalDistribution(["a", "b", "c"])}
        source.add_trial(
            optuna.trial.create_trial(params=params, value=params["x"], distributions={k: dists[k] for k in params})
        )
    X, y = source_history(SpaceCodec(space), source)
    assert X.shape == (2, 3) and list(y) == [0.2, 0.9]  # maximised values stay positive
    minimised = optuna.create_study()
    for trial in source.trials:
        minimised.add_trial(trial)
    assert list(source_history(SpaceCodec(space), minimised)[1]) == [-0.2, -0.9]

    sampler = GenerativeSampler(
        seed=0, n_startup_trials=2, source_studies=[source], config=fast_config(pretrain_steps=30)
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(
        lambda t: t.suggest_float("x", 0.0, 1.0) + (t.suggest_categorical("kind", ["a", "b"]) == "a"), n_trials=3
    )
    assert len(sampler._model.config.losses) == 30 + 20  # pre-training, then fine-tuning (not a first fit)
