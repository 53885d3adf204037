"""Zero-order search (Ma et al., CVPR 2025): start at a pivot noise (the user's), draw neighbours at a
radius, move to the best when it beats the pivot, draw again around the (new) pivot until the budget ends."""

from __future__ import annotations

from diffsearch.searchers.noise.base import NoiseSearcher, NoiseSearchSettings, spend_rest
from diffsearch.spaces.noise import Candidate
from diffsearch.tasks.noise_task import NoiseTask


class ZeroOrder(NoiseSearcher):
    name = "zero-order"

    def search(self, task: NoiseTask, settings: NoiseSearchSettings) -> dict:
        pivot = task.finals[0]  # the user's image
        rounds = moves = 0
        while task.generations_left() >= 1:
            k = min(settings.neighbours, task.generations_left())
            centre = task.space.unit(pivot.candidate)
            neighbours = [
                Candidate(latent=task.space.neighbour(centre, settings.radius, task.generator), origin="neighbour")
                for _ in range(k)
            ]
            scored = task.evaluate(neighbours)
            values = task.combined([pivot] + scored)
            best = int(values.argmax())
            if best > 0:
                pivot, moves = scored[best - 1], moves + 1
            rounds += 1
        return {"rounds": rounds, "moves": moves, "random_seeds": spend_rest(task)}
