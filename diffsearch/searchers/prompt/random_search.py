"""Random search over a prompt space: distinct uniform samples until the budget is spent."""

from __future__ import annotations

import numpy as np

from diffsearch.searchers.prompt.result import PromptSearchResult, PromptSearchSettings
from diffsearch.spaces.prompts import PromptSpace


def search(
    task, space: PromptSpace, seed: int, settings: PromptSearchSettings | None = None, max_draws_per_eval: int = 20
) -> PromptSearchResult:
    rng = np.random.default_rng(seed)
    draws = 0
    total = int(np.prod(np.array(space.sizes(), dtype=float)).clip(max=1e12))
    # stop when the budget is spent or the space has no unseen point left (small spaces)
    while not task.exhausted and len(task.seen) < total and draws < max_draws_per_eval * task.budget:
        batch: list = []  # as many new points as the budget pays for: one batch for the workers
        while (
            len(batch) < int(task.remaining + 1e-9)
            and len(task.seen) + len(batch) < total
            and draws < max_draws_per_eval * task.budget
        ):
            point = space.sample(rng)
            draws += 1
            if point not in task.seen and point not in batch:
                batch.append(point)
        task.evaluate_many(batch)
    return PromptSearchResult()
