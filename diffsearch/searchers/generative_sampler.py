"""Optuna sampler around the generative HPO model, so ``--searcher generative`` works on every flat space.

Like Optuna's GPSampler, the model proposes the parameters present in every finished trial (the
intersection search space); conditional parameters outside it (warm-up only with a scheduler, weight
decay only with AdamW) are drawn at random. Configurations are encoded to [0, 1]^d: floats and ints on
their (log) scale, categoricals one-hot, decoded by rounding and argmax. The model's samples are snapped
to valid codes and configurations already evaluated are dropped before it picks one.

``source_studies`` warm-starts the model, as CmaEsSampler's ``source_trials`` does: finished studies of
the same space on other data sets are its pre-training histories (HPO-B's meta-train split). Without
them, ``config.prior_functions`` > 0 pre-trains on random search over random functions of the space
(generative_prior.py). Either way the pre-trained model goes without dropout (no Thompson sampling)
unless ``config.dropout`` says otherwise: with it, both warm starts ranked lower.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from diffsearch.searchers.generative import GenerativeConfig, GenerativeHPO
from diffsearch.searchers.generative_prior import prior_histories


class SpaceCodec:
    """Maps a dict of Optuna distributions to and from [0, 1]^d."""

    def __init__(self, search_space: dict[str, BaseDistribution]):
        self.space = dict(sorted(search_space.items()))
        self.slices: dict[str, slice] = {}
        start = 0
        for name, dist in self.space.items():
            width = len(dist.choices) if isinstance(dist, CategoricalDistribution) else 1
            self.slices[name] = slice(start, start + width)
            start += width
        self.dim = start

    def encode(self, params: dict[str, Any]) -> np.ndarray:
        x = np.zeros(self.dim, dtype=np.float32)
        for name, dist in self.space.items():
            cols = self.slices[name]
            if isinstance(dist, CategoricalDistribution):
                x[cols.start + dist.to_internal_repr(params[name])] = 1.0
            else:
                lo, hi, value = dist.low, dist.high, params[name]
                if dist.log:
                    lo, hi, value = math.log(lo), math.log(hi), math.log(value)
                x[cols.start] = 0.5 if hi == lo else (value - lo) / (hi - lo)
        return x

    def project(self, points: np.ndarray) -> np.ndarray:
        """Each row snapped to the code of the configuration it decodes to."""
        return np.stack([self.encode(self.decode(row)) for row in points])

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        params: dict[str, Any] = {}
        for name, dist in self.space.items():
            cols = self.slices[name]
            if isinstance(dist, CategoricalDistribution):
                params[name] = dist.choices[int(np.argmax(x[cols]))]
                continue
            lo, hi = dist.low, dist.high
            if dist.log:
                value = math.exp(math.log(lo) + x[cols.start] * (math.log(hi) - math.log(lo)))
            else:
                value = lo + x[cols.start] * (hi - lo)
            if isinstance(dist, IntDistribution):
                value = int(round((value - lo) / dist.step)) * dist.step + lo
            elif dist.step is not None:
                value = round((value - lo) / dist.step) * dist.step + lo
            params[name] = min(max(value, lo), hi)
        return params


class GenerativeSampler(optuna.samplers.BaseSampler):
    """Optuna sampler: a few random trials, then each suggestion from the diffusion model."""

    def __init__(self, seed: int | None = None, n_startup_trials: int = 5, config: GenerativeConfig | None = None,
                 source_studies: Sequence[optuna.Study] = ()):
        self._seed = 0 if seed is None else seed
        self._source_studies = list(source_studies)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._intersection = IntersectionSearchSpace()
        self._n_startup_trials = n_startup_trials
        self._config = config
        self._model: GenerativeHPO | None = None
        self._model_space: tuple | None = None

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {name: dist for name, dist in self._intersection.calculate(study).items() if not dist.single()}

    def sample_relative(self, study, trial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        history = [t for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
                   if all(name in t.params for name in search_space)]
        if len(history) < max(1, self._n_startup_trials):  # the model needs a history to learn from
            return {}
        codec = SpaceCodec(search_space)
        X, y = encode_history(codec, study, history)
        key = tuple((name, repr(dist)) for name, dist in codec.space.items())
        if self._model is None or self._model_space != key:  # a new space needs a new model
            self._model = GenerativeHPO(seed=self._seed, config=self._config)
            self._model_space = key
            sources = [source_history(codec, source) for source in self._source_studies]
            histories = [source for source in sources if source is not None]
            if not histories and self._model.config.prior_functions:
                # drawn in the order the objective asks for the parameters, as a random search of it would be
                ordered = {name: search_space[name] for name in history[0].distributions if name in search_space}
                histories = prior_histories(ordered, self._model.config.prior_functions)
            self._model.pretrain(histories)
        self._model.fit(X, y)
        # samples are snapped to valid configurations and those already evaluated are dropped
        # before the model ranks them (GenerativeHPO.suggest); off for the seed's method as written
        project = codec.project if self._model.config.novel_only else None
        return codec.decode(self._model.suggest(X, y, project=project))

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, param_distribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def encode_history(codec: SpaceCodec, study: optuna.Study, trials: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
    """Codes and values of ``trials``, values signed so that higher is better (the model maximises y)."""
    sign = -1.0 if study.direction == StudyDirection.MINIMIZE else 1.0
    return (np.stack([codec.encode(t.params) for t in trials]),
            sign * np.array([t.value for t in trials], dtype=np.float64))


def source_history(codec: SpaceCodec, study: optuna.Study) -> tuple[np.ndarray, np.ndarray] | None:
    """A source study's finished trials that hold every parameter of the space with a value it admits;
    None when fewer than two do (no improvement to learn from)."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if all(name in t.params and admits(dist, t.params[name]) for name, dist in codec.space.items())]
    return encode_history(codec, study, trials) if len(trials) >= 2 else None


def admits(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return dist.low <= value <= dist.high
