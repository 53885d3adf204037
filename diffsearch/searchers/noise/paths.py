"""Search over paths (Ma et al., CVPR 2025): denoise W random noises part way, branch each into M candidates
(its own continuation and M-1 re-noised with fresh noise at that step, the forward process at the step's
noise level), continue, keep the W the verifier likes best on their clean estimates, branch again, and
score the final images. The widest W that fits the budget; M shrinks (to 2) when even one start does not
fit; whole generations left go to random seeds."""

from __future__ import annotations

import numpy as np
import torch

from diffsearch.searchers.noise.base import NoiseSearcher, NoiseSearchSettings, spend_rest, steps_at
from diffsearch.spaces.noise import Candidate
from diffsearch.tasks.noise_task import NoiseTask


def start_cost(task: NoiseTask, first: int, branches: int) -> int:
    """NFE of one start: ``first`` steps alone, then ``branches`` candidates to the end."""
    return task.passes * (first + branches * (task.steps - first))


class Paths(NoiseSearcher):
    name = "paths"

    def search(self, task: NoiseTask, settings: NoiseSearchSettings) -> dict:
        at = steps_at(settings.branch_at, task.steps)
        plan = next(
            (
                (m, task.remaining // start_cost(task, at[0], m))
                for m in range(settings.branches, 1, -1)
                if task.remaining // start_cost(task, at[0], m) >= 1
            ),
            None,
        )
        if plan is None:
            return {"branching": "none fits the budget", "random_seeds": spend_rest(task)}
        branches, width = plan
        starts = [Candidate(seed=s, origin="branch") for s in task.random_seeds(width)]
        states, x0 = task.sample(task.start_states(starts), 0, at[0])
        lineage = starts
        for j, c in enumerate(at):
            # branch after step c-1: child 0 continues, the others restart from x0 with fresh noise
            children, child_states = [], []
            for w, parent in enumerate(lineage):
                children.append(parent)
                child_states.append(states[w : w + 1])
                for _ in range(branches - 1):
                    renoised = task.renoise(x0[w : w + 1], c - 1)
                    children.append(
                        Candidate(
                            seed=parent.seed, injections={**parent.injections, c - 1: renoised[0]}, origin="branch"
                        )
                    )
                    child_states.append(renoised)
            stop = at[j + 1] if j + 1 < len(at) else task.steps
            states, x0 = task.sample(torch.cat(child_states), c, stop)
            if stop == task.steps:
                scores = task.verifier.scores(task.decode(states), task.prompt)
                for k, child in enumerate(children):
                    task.finish(child, scores[:, k])
                break
            keep = np.argsort(-task.verifier.combine(task.score_partial(x0, stop - 1, children)), kind="stable")[:width]
            lineage = [children[k] for k in keep]
            keep = torch.as_tensor(keep)
            states, x0 = states[keep], x0[keep]
        return {"width": width, "branches": branches, "branch_steps": at, "random_seeds": spend_rest(task)}
