"""A gradient on the initial latent through the reward (ReNO, Eyring et al., NeurIPS 2024, there on one-step
models; here full backpropagation through every sampling step, so for small sizes and few steps).

Each iteration samples the current latent with gradient, scores the image and takes an Adam step on the
latent, which is then put back on the sphere of radius sqrt(dimension)
where standard normal latents live (ReNO regularises the norm for the same reason). Cost per iteration:
the forward generation's NFE plus twice that for the backward pass (a convention; the backward pass is
not a denoiser call). Every image the iterations score is a candidate (the first is the user's own, already
scored), as is the last step's latent when a generation is left to score it, so the verifier's favourite
over the iterations wins (ReNO keeps the best image over its iterations too). Needs a reward with a gradient (one reward, not an ensemble)."""

from __future__ import annotations

import torch

from diffsearch.searchers.noise.base import NoiseSearcher, NoiseSearchSettings, spend_rest
from diffsearch.spaces.noise import Candidate
from diffsearch.tasks.noise_task import NoiseTask

BACKWARD_FACTOR = 2  # a backward pass counted as two forward passes


class Gradient(NoiseSearcher):
    name = "gradient"

    def search(self, task: NoiseTask, settings: NoiseSearchSettings) -> dict:
        backend, space = task.backend, task.space
        z = space.unit(task.finals[0].candidate).clone().requires_grad_(True)
        radius = float(z.detach().norm())
        optimiser = torch.optim.Adam([z], lr=settings.lr)
        step_cost = (1 + BACKWARD_FACTOR) * task.generation_nfe
        iterations = 0
        while task.remaining >= step_cost + task.generation_nfe:  # room for the step and for scoring its result
            task.charge(step_cost, forward=task.generation_nfe)
            x = (z * space.sigma).to(backend.device, backend.dtype)
            cond, uncond = backend._expand(task.cond, 1), backend._expand(task.uncond, 1)
            for i, t in enumerate(backend.timesteps):
                x, _ = backend.step(backend.predict(x, i, t, cond, uncond), i, t, x)
            score = task.verifier.differentiable_score(backend.decode(x), task.prompt)
            if score.grad_fn is None:
                raise RuntimeError(f"--reward {task.verifier.names[0]} gave no gradient")
            if iterations:  # the latent the last step made, scored by this forward pass: a candidate
                task.finish(Candidate(latent=z.detach().clone(), origin="gradient"), score.detach().cpu().numpy())
            optimiser.zero_grad()
            (-score.sum()).backward()
            optimiser.step()
            with torch.no_grad():
                z.mul_(radius / z.norm())
            iterations += 1
        if iterations:
            task.evaluate([Candidate(latent=z.detach().clone(), origin="gradient")])
        return {"iterations": iterations, "random_seeds": spend_rest(task)}
