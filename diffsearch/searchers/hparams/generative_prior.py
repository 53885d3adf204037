"""Pre-training histories for the generative HPO model that need no earlier study: random search on
random functions of the study's own space (``GenerativeConfig.prior_functions``).

Each function is a sum of 4 Gaussian bumps with random centres, heights and widths on the [0, 1]^d
encoding. Trained on such histories first, the model has practised finding an improvement from a
context before it sees the first real trial (PFNs pre-train on GP draws for the same reason). On the
benchmark 16 functions ranked better than 128 or than 16 GP draws (docs/generative_hpo.md).
The functions are drawn from a fixed seed, so every study of one space pre-trains on the same
histories and a resumed study rebuilds them exactly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

from diffsearch.searchers.hparams.space_codec import SpaceCodec

PRIOR_SEED = 2000  # any fixed number: the prior is a property of the space, not of the study's seed


def bump_function(rng: np.random.Generator, dim: int) -> Callable[[np.ndarray], float]:
    """f(x) = sum_k a_k exp(-|x - c_k|^2 / 2 s_k^2), higher is better, 4 bumps with random centres,
    heights and widths."""
    # widths grow with sqrt(d), or in 6-D every bump is a needle in a flat space
    centres, heights, widths = (
        rng.uniform(size=(4, dim)),
        rng.uniform(0.2, 1.0, 4),
        rng.uniform(0.1, 0.35, 4) * np.sqrt(dim),
    )
    return lambda x: float((heights * np.exp(-((x - centres) ** 2).sum(axis=1) / (2 * widths**2))).sum())


def prior_histories(
    search_space: dict[str, BaseDistribution], functions: int, trials: int = 50, seed: int = PRIOR_SEED
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``functions`` random-search histories (codes, values) of ``trials`` points each, one per bump
    function. Configurations are drawn as Optuna's RandomSampler draws them, parameter by parameter in
    the order of ``search_space``, so the codes carry the space's own rounding and one-hot structure."""
    codec = SpaceCodec(search_space)
    rng = np.random.default_rng(seed)
    histories = []
    for _ in range(functions):
        sampler = optuna.samplers.RandomSampler(seed=int(rng.integers(1 << 31)))
        function = bump_function(rng, codec.dim)
        # RandomSampler draws each parameter on its own and looks at neither the study nor the trial
        X = np.stack(
            [
                codec.encode(
                    {name: sampler.sample_independent(None, None, name, dist) for name, dist in search_space.items()}
                )
                for _ in range(trials)
            ]
        )
        histories.append((X, np.array([function(x) for x in X], dtype=np.float64)))
    return histories
