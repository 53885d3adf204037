"""``SpaceCodec``: a dict of Optuna distributions to and from [0, 1]^d (one-hot columns for a categorical).

Shared by the generative sampler (its model works in the code space) and the generative prior (histories
of synthetic functions written in the same codes); a leaf, so neither imports the other for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution


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

    def least_tried(self, X: np.ndarray, tries: int) -> dict[str, np.ndarray]:
        """Per categorical parameter that has a choice tried fewer than ``tries`` times in the codes
        ``X``: the indices of its least-tried choices."""
        found = {}
        for name, dist in self.space.items():
            if isinstance(dist, CategoricalDistribution):
                counts = X[:, self.slices[name]].sum(axis=0)
                if counts.min() < tries:
                    found[name] = np.flatnonzero(counts == counts.min())
        return found

    @property
    def has_categoricals(self) -> bool:
        return any(isinstance(dist, CategoricalDistribution) for dist in self.space.values())

    def thompson_choices(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator, top: float = 0.25
    ) -> dict[str, np.ndarray]:
        """Per categorical parameter, one choice drawn by Thompson sampling: each choice's chance of
        landing in the best ``top`` fraction of the history (``y``, higher is better) has a Beta(1 + in,
        1 + out) posterior; the choice with the highest draw wins. Choices that did well are drawn most,
        the rarely tried keep a chance (a wide posterior), so the search does not settle on one."""
        good = y >= np.quantile(y, 1.0 - top)
        found = {}
        for name, dist in self.space.items():
            if isinstance(dist, CategoricalDistribution):
                onehot = X[:, self.slices[name]] > 0.5
                wins, tries = onehot[good].sum(axis=0), onehot.sum(axis=0)
                found[name] = np.array([int(np.argmax(rng.beta(1.0 + wins, 1.0 + tries - wins)))])
        return found

    def with_choices(self, codes: np.ndarray, choices: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """``codes`` with each named categorical set, row by row, to one of its ``choices`` at random."""
        codes = codes.copy()
        for name, allowed in choices.items():
            cols = self.slices[name]
            codes[:, cols] = 0.0
            codes[np.arange(len(codes)), cols.start + rng.choice(allowed, size=len(codes))] = 1.0
        return codes

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
            # built-in types, as Optuna promises the objective (x[...] is a numpy scalar); same value
            value = min(max(value, lo), hi)
            params[name] = int(value) if isinstance(dist, IntDistribution) else float(value)
        return params
