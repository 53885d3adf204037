"""Optuna sampler around the generative HPO model, so ``--searcher generative`` works on every flat space.

Like Optuna's GPSampler, the model proposes the parameters present in every finished trial (the
intersection search space); conditional parameters outside it (warm-up only with a scheduler, weight
decay only with AdamW) are drawn at random. Configurations are encoded to [0, 1]^d: floats and ints on
their (log) scale, categoricals one-hot, decoded by rounding and argmax. The model's samples are snapped
to valid codes and configurations already evaluated are dropped before it picks one.

Categories the history has tried fewer than ``category_tries`` times are tried first: while a categorical
parameter has such a choice, every candidate gets one of its least-tried choices, and the model still
proposes and ranks the other parameters. A model trained on a history where one category dominates
(say four of five random start-up trials) generates only that category, and argmax decoding never
leaves it; with this, every choice of a k-way categorical is tried within k - 1 model suggestions
(``category_tries=0`` is the searcher without it).

Once every choice was tried, trying each once is weak evidence: left to the model, 26 of 27 later
suggestions of a traced run on a 6/4-way space kept one pair of choices. So each categorical is then drawn
per suggestion by Thompson sampling (``category_choice="thompson"``, the default): a Beta posterior of
each choice's share of the best quarter of trials, the highest draw wins, and the model proposes and
ranks the other parameters. ``category_choice="model"`` leaves categoricals to the model's samples
(argmax of their one-hot codes), the searcher before it.

``source_studies`` warm-starts the model, as CmaEsSampler's ``source_trials`` does: finished studies of
the same space on other data sets are its pre-training histories (HPO-B's meta-train split). Without
them, ``config.prior_functions`` > 0 pre-trains on random search over random functions of the space
(generative_prior.py). Either way the pre-trained model goes without dropout (no Thompson sampling)
unless ``config.dropout`` says otherwise: with it, both warm starts ranked lower.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from diffsearch.searchers.hparams.generative import GenerativeConfig, GenerativeHPO, novel_rows
from diffsearch.searchers.hparams.generative_prior import prior_histories
from diffsearch.searchers.hparams.space_codec import SpaceCodec

# how a categorical is chosen once every choice was tried: by the model's samples (argmax of their one-hot
# codes), or drawn per suggestion by Thompson sampling over each choice's share of the best trials
CATEGORY_CHOICES = ("model", "thompson")


class GenerativeSampler(optuna.samplers.BaseSampler):
    """Optuna sampler: a few random trials, then each suggestion from the diffusion model.

    Single-objective only: a multi-objective study gets a ValueError from the first call into the
    sampler, as from CmaEsSampler. Threads of one study (``study.optimize(..., n_jobs=2)``) share the
    one model and take turns with it (a lock): fitting and suggesting are serialised, the objectives
    still run side by side. ``reseed_rng`` (Optuna calls it in each of those threads) reseeds every
    generator the sampler owns, from fresh entropy: the random sampler's, the model's numpy and torch
    generators, and the one a model built later starts from.
    """

    def __init__(
        self,
        seed: int | None = None,
        n_startup_trials: int = 5,
        config: GenerativeConfig | None = None,
        source_studies: Sequence[optuna.Study] = (),
        category_tries: int = 1,
        category_choice: str = "thompson",
    ):
        if category_tries < 0:
            raise ValueError(f"category_tries must be >= 0, got {category_tries}")
        if category_choice not in CATEGORY_CHOICES:
            raise ValueError(f"category_choice must be one of {', '.join(CATEGORY_CHOICES)}, got {category_choice!r}")
        self._category_choice = category_choice
        self._seed = 0 if seed is None else seed
        self._category_tries = category_tries
        self._source_studies = list(source_studies)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._intersection = IntersectionSearchSpace()
        self._n_startup_trials = n_startup_trials
        self._config = config
        self._model: GenerativeHPO | None = None
        self._model_space: tuple | None = None
        self._lock = threading.Lock()  # one model and one optimiser: threads (n_jobs > 1) take turns
        self._space_lock = threading.Lock()  # IntersectionSearchSpace updates a cache as it goes

    def __getstate__(self) -> dict[str, Any]:  # picklable and deep-copyable, as Optuna's samplers are
        state = self.__dict__.copy()
        del state["_lock"], state["_space_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_category_tries", 1)  # a sampler pickled before the options existed
        state.setdefault("_category_choice", "model")  # what such a sampler did
        self.__dict__.update(state)
        self._lock, self._space_lock = threading.Lock(), threading.Lock()

    def reseed_rng(self) -> None:
        """Fresh entropy for every generator the sampler owns, so that copies (a process or thread
        each) stop repeating each other's suggestions: the start-up random sampler, the model's numpy
        and torch generators, and the seed a model not built yet will start from."""
        with self._lock:
            self._random.reseed_rng()
            self._seed = secrets.randbits(63)
            if self._model is not None:
                # in place: the model's training-data samplers hold this very numpy generator
                self._model.rng.bit_generator.state = np.random.default_rng(self._seed).bit_generator.state
                self._model.generator.manual_seed(self._seed)

    def _refuse_multi_objective(self, study: optuna.Study) -> None:
        if len(study.directions) > 1:
            raise ValueError(
                f"{type(self).__name__} supports single-objective studies only; this study has "
                f"{len(study.directions)} objectives. Use a multi-objective sampler "
                "(e.g. TPESampler, NSGAIISampler or GPSampler) instead."
            )

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        # the first sampler call of a trial in Optuna's flow that can fail it cleanly (before_trial runs
        # inside study.ask, where an error would leave the new trial RUNNING forever)
        self._refuse_multi_objective(study)
        with self._space_lock:
            space = self._intersection.calculate(study)
        return {name: dist for name, dist in space.items() if not dist.single()}

    def sample_relative(self, study, trial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._refuse_multi_objective(study)
        if not search_space:
            return {}
        history = [
            t
            for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
            if all(name in t.params for name in search_space)
        ]
        if len(history) < max(1, self._n_startup_trials):  # the model needs a history to learn from
            return {}
        with self._lock:  # two threads training one network and one Adam at once corrupt both
            return self._sample_from_model(study, search_space, history)

    def _sample_from_model(
        self, study, search_space: dict[str, BaseDistribution], history: list[FrozenTrial]
    ) -> dict[str, Any]:
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
        # before the model ranks them (GenerativeHPO.suggest); off for the original method as written
        project = codec.project if self._model.config.novel_only else None
        rng = self._model.rng
        forced = codec.least_tried(X, self._category_tries)  # every candidate gets a (nearly) untried choice
        if forced:
            project = lambda P: codec.with_choices(codec.project(P), forced, rng)  # noqa: E731
        elif self._category_choice == "thompson" and codec.has_categoricals:
            drawn = codec.thompson_choices(X, y, rng)
            # a trial is a repeat only when no parameter lies outside this space (conditionals are drawn
            # at random, so with them the same codes still make a new trial)
            whole = all(set(t.params) <= set(search_space) for t in history)

            def project(P):
                snapped = codec.project(P)
                chosen = codec.with_choices(snapped, drawn, rng)
                # in a discrete space the drawn choices can leave nothing new (every candidate evaluated
                # before): then the model's own choices, rather than a repeat
                return snapped if whole and not len(novel_rows(chosen, X)) else chosen

        return codec.decode(self._model.suggest(X, y, project=project))

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, param_distribution) -> Any:
        self._refuse_multi_objective(study)
        # no lock: numpy's RandomState serialises its own calls, and this must not wait for a model fit
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def encode_history(codec: SpaceCodec, study: optuna.Study, trials: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
    """Codes and values of ``trials``, values signed so that higher is better (the model maximises y)."""
    sign = -1.0 if study.direction == StudyDirection.MINIMIZE else 1.0
    return (
        np.stack([codec.encode(t.params) for t in trials]),
        sign * np.array([t.value for t in trials], dtype=np.float64),
    )


def source_history(codec: SpaceCodec, study: optuna.Study) -> tuple[np.ndarray, np.ndarray] | None:
    """A source study's finished trials that hold every parameter of the space with a value it admits;
    None when fewer than two do (no improvement to learn from)."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if all(name in t.params and admits(dist, t.params[name]) for name, dist in codec.space.items())
    ]
    return encode_history(codec, study, trials) if len(trials) >= 2 else None


def admits(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return dist.low <= value <= dist.high
