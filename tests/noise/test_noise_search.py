"""Noise search on the tiny pipeline of every served family: each searcher spends exactly the NFE it reports
(counted by a hook on the denoiser: batch items per call, so classifier-free guidance's two passes count
two), never more than its budget and never a whole generation less; it is reproducible from its seed; and
each saved noise (a seed, a moved latent, injections along the path) makes the same image with the
family's own diffusers pipeline (max abs difference < 1e-4) that the verifier scored."""

import numpy as np
import pytest
import torch

from diffsearch.backends.stable_diffusion import load_backend
from diffsearch.objectives.ensemble import Verifier
from diffsearch.objectives.rewards import Reward
from diffsearch.searchers.noise.base import NoiseSearchSettings
from diffsearch.searchers.noise.registry import NOISE_SEARCHERS
from diffsearch.spaces.noise import regenerate
from diffsearch.tasks.noise_task import NoiseTask

STEPS = 3
FAMILIES = ("tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux")


class Contrast(Reward):
    """A cheap differentiable verifier: the images' standard deviation (higher is better)."""

    name = "contrast"

    def score(self, images, prompt):
        return images.flatten(1).std(dim=1) * 100


class Brightness(Reward):
    name = "brightness"

    def score(self, images, prompt):
        return images.flatten(1).mean(dim=1) * 100


@pytest.fixture(scope="module", params=FAMILIES)
def backend(request):
    extra = {"size": 16} if request.param == "tiny-flux" else {}
    b = load_backend(request.param, steps=STEPS, **extra)
    counter = {"nfe": 0}
    b.denoiser.register_forward_hook(
        lambda m, args, kw, out: counter.__setitem__(
            "nfe", counter["nfe"] + len((args[0] if args else kw["hidden_states"]))
        ),
        with_kwargs=True,
    )
    b.counter = counter
    return b


def run(backend, searcher, budget_generations=5, seed=3, verifier=None, extra_nfe=1):
    verifier = verifier or Verifier([Contrast()])
    g = STEPS * backend.passes_per_step()
    task = NoiseTask(backend, verifier, "a red boat", None, budget_generations * g + extra_nfe, seed=seed, batch=4)
    backend.counter["nfe"] = 0
    task.evaluate([task.user])
    info = NOISE_SEARCHERS.get(searcher)().search(task, NoiseSearchSettings(neighbours=2, branches=2))
    return task, info


@pytest.mark.parametrize("searcher", list(NOISE_SEARCHERS.builtin()))
def test_budget_seed_and_diffusers_regeneration(backend, searcher, tmp_path):
    task, info = run(backend, searcher)
    g = task.generation_nfe
    assert g == STEPS * backend.passes_per_step()
    assert backend.counter["nfe"] == task.forward_nfe  # what ran is what was counted
    if searcher == "gradient":  # forward + 2x for the backward pass, charged
        assert info["iterations"] >= 1 and task.spent == task.forward_nfe + 2 * g * info["iterations"]
    else:
        assert task.spent == task.forward_nfe
    assert task.budget - g < task.spent <= task.budget  # never over, never a whole generation unspent
    again, _ = run(backend, searcher)
    assert [f.candidate.describe() for f in again.finals] == [f.candidate.describe() for f in task.finals]
    np.testing.assert_allclose([f.scores for f in again.finals], [f.scores for f in task.finals], rtol=1e-5)
    # the chosen noise and every other kind of noise this searcher made: saved, then remade by diffusers
    best = task.best()
    checks = [best] + [
        next((f for f in task.finals if f.candidate.injections), None),
        next((f for f in task.finals if f.candidate.latent is not None), None),
    ]
    for k, scored in enumerate(s for s in checks if s is not None):
        files = task.space.save(scored.candidate, tmp_path / f"n{k}")
        saved = torch.load(files["pt"], weights_only=False)
        ours = task.replay(scored.candidate)
        np.testing.assert_allclose(task.verifier.scores(ours, task.prompt)[:, 0], scored.scores, rtol=1e-4, atol=1e-4)
        theirs = regenerate(backend, task.prompt, saved)
        assert (ours.float() - theirs.float()).abs().max() < 1e-4
    if searcher in ("paths", "particles"):
        assert any(f.candidate.injections for f in task.finals)
    if searcher in ("zero-order", "gradient"):
        assert any(f.candidate.latent is not None for f in task.finals)


def test_a_negative_prompt_is_remade_too(backend, tmp_path):
    if backend.negative_prompt_refusal():  # FLUX without true CFG: the job refuses a negative prompt
        pytest.skip("a negative prompt has no effect with these settings")
    g = STEPS * backend.passes_per_step()
    task = NoiseTask(backend, Verifier([Brightness()]), "a red boat", None, 3 * g, seed=5, negative="blurry, dark")
    task.evaluate([task.user])
    NOISE_SEARCHERS.get("particles")().search(task, NoiseSearchSettings())
    best = task.best()
    saved = torch.load(task.space.save(best.candidate, tmp_path / "neg")["pt"], weights_only=False)
    theirs = regenerate(backend, task.prompt, saved, negative="blurry, dark")
    assert (task.replay(best.candidate).float() - theirs.float()).abs().max() < 1e-4


def test_gradient_keeps_every_iterate(backend):
    """Each iteration's forward pass scores the latent the last Adam step made: a candidate (ReNO keeps the
    best image over its iterations), remade by the sampler with the score the verifier gave it."""
    task, info = run(backend, "gradient", budget_generations=14, extra_nfe=0)
    moved = [f for f in task.finals if f.candidate.latent is not None]
    assert info["iterations"] == 4 and len(moved) == info["iterations"]  # 3 scored in the loop, the last after it
    assert task.spent == task.budget
    for scored in moved:
        again = task.verifier.scores(task.replay(scored.candidate), task.prompt)[:, 0]
        np.testing.assert_allclose(again, scored.scores, rtol=1e-4, atol=1e-4)
    assert len({round(float(f.scores[0]), 6) for f in moved}) > 1  # the steps moved the image
