"""Best-of-N: random initial noises, keep the verifier's favourite (random search, Ma et al., CVPR 2025)."""

from __future__ import annotations

from diffsearch.searchers.noise.base import NoiseSearcher, NoiseSearchSettings, spend_rest
from diffsearch.tasks.noise_task import NoiseTask


class BestOfN(NoiseSearcher):
    name = "best-of-n"

    def search(self, task: NoiseTask, settings: NoiseSearchSettings) -> dict:
        return {"random_seeds": spend_rest(task)}
