"""FK steering (Singhal et al., ICML 2025), particle form: K particles from random noises; at resampling
steps each particle's clean estimate is scored by the verifier, particles are resampled (multinomial) with
weights exp(lambda * z), z the verifier's value standardised over the particles, and every resampled
particle goes on from its parent's clean estimate re-noised with fresh noise (so copies part ways). The
final images are scored; the verifier's favourite wins. K = the whole generations the budget holds."""

from __future__ import annotations

import numpy as np
import torch

from diffsearch.searchers.noise.base import NoiseSearcher, NoiseSearchSettings, spend_rest, steps_at
from diffsearch.spaces.noise import Candidate
from diffsearch.tasks.noise_task import NoiseTask


class Particles(NoiseSearcher):
    name = "particles"

    def search(self, task: NoiseTask, settings: NoiseSearchSettings) -> dict:
        k = task.generations_left()
        if k < 2:
            return {"particles": 0, "random_seeds": spend_rest(task)}
        at = steps_at(settings.resample_at, task.steps)
        particles = [Candidate(seed=s, origin="particle") for s in task.random_seeds(k)]
        states, x0 = task.sample(task.start_states(particles), 0, at[0])
        kept = []
        for j, c in enumerate(at):
            values = task.verifier.combine(task.score_partial(x0, c - 1, particles))
            z = (values - values.mean()) / (values.std() or 1.0)
            w = torch.tensor(np.exp(settings.potential * (z - z.max())), dtype=torch.float64)
            parents = torch.multinomial(w / w.sum(), k, replacement=True, generator=task.generator).tolist()
            kept.append(len(set(parents)))
            renoised = task.renoise(x0[parents], c - 1)
            particles = [
                Candidate(
                    seed=particles[p].seed,
                    injections={**particles[p].injections, c - 1: renoised[i]},
                    origin="particle",
                )
                for i, p in enumerate(parents)
            ]
            stop = at[j + 1] if j + 1 < len(at) else task.steps
            states, x0 = task.sample(renoised, c, stop)
        scores = task.verifier.scores(task.decode(states), task.prompt)
        for i, p in enumerate(particles):
            task.finish(p, scores[:, i])
        return {"particles": k, "resample_steps": at, "distinct_parents": kept, "random_seeds": spend_rest(task)}
