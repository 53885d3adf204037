"""The noise searchers, by name: ``Registry[type[NoiseSearcher]]`` with capabilities as data.

Capabilities: ``needs_gradient`` (the reward must have a gradient: one differentiable reward), ``needs_path``
(the family must inject noise along the path: its backend's ``renoise`` hook). Installed packages add
searchers in the entry-point group ``diffsearch.noise_searchers`` (an ``Entry`` or a ``NoiseSearcher``
subclass).
"""

from __future__ import annotations

from diffsearch.errors import UsageError
from diffsearch.registry import Entry, Registry
from diffsearch.searchers.noise.base import NoiseSearcher
from diffsearch.searchers.noise.best_of_n import BestOfN
from diffsearch.searchers.noise.gradient import Gradient
from diffsearch.searchers.noise.particles import Particles
from diffsearch.searchers.noise.paths import Paths
from diffsearch.searchers.noise.zero_order import ZeroOrder


def _adapt(name: str, loaded) -> Entry:
    if isinstance(loaded, type) and issubclass(loaded, NoiseSearcher):
        return Entry(name, loaded, (loaded.__doc__ or name).strip().splitlines()[0])
    raise UsageError(f"noise searcher {name!r} is not a NoiseSearcher subclass")


NOISE_SEARCHERS: Registry[type[NoiseSearcher]] = Registry("noise searcher", "diffsearch.noise_searchers", _adapt)
NOISE_SEARCHERS.register(
    "best-of-n", BestOfN, "random initial noises, keep the verifier's favourite (random search, Ma et al., CVPR 2025)"
)
NOISE_SEARCHERS.register(
    "zero-order",
    ZeroOrder,
    "neighbours of a pivot noise at a radius, move to the best (Ma et al., CVPR 2025); starts at your seed",
)
NOISE_SEARCHERS.register(
    "paths",
    Paths,
    "denoise part way, re-noise several candidates, keep the best (search over paths, Ma et al., CVPR 2025)",
    needs_path=True,
)
NOISE_SEARCHERS.register(
    "particles",
    Particles,
    "particles resampled along the path by the verifier's potential (FK steering, Singhal et al., ICML 2025)",
    needs_path=True,
)
NOISE_SEARCHERS.register(
    "gradient",
    Gradient,
    "Adam on the initial latent through the reward, full "
    "backpropagation through sampling (ReNO, Eyring et al., NeurIPS 2024); small sizes",
    needs_gradient=True,
)


def noise_searcher(name: str) -> Entry:
    return NOISE_SEARCHERS.lookup(name, "--searcher")
