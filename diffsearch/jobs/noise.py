"""``diffsearch noise``: better images from the same model by searching the noise, scored by a verifier.

Inference-time search over the initial noise and the sampling path of a pretrained pipeline (Ma et al.,
CVPR 2025; FK steering, Singhal et al., ICML 2025; ReNO, Eyring et al., NeurIPS 2024). The user's own
image (``--seed``, or ``--latent FILE``) is the first candidate; the searcher spends ``--budget-nfe``
denoiser evaluations; the verifier's favourite is saved so that diffusers' own pipeline makes it again.

Python use::

    from diffsearch.jobs.noise import NoiseOptions, run_noise
    results = run_noise(NoiseOptions(prompt="a photo of a dark sandal", model="fashion", clip="fashion",
                                     searcher="best-of-n", budget_nfe=16 * 20, steps=10))
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from diffsearch.backends.stable_diffusion import DEFAULT_MODEL, default_guidance, family_of, load_backend
from diffsearch.datasets.prompt_file import read_prompt_file
from diffsearch.errors import UsageError
from diffsearch.jobs.base import ProgressFn, Run, WorkerSettings, options_from_study, run_job
from diffsearch.ledger import DEFAULT_HEARTBEAT_SECONDS, load_study, mark_finished, open_storage, run_location
from diffsearch.objectives.clip import DEFAULT_CLIP
from diffsearch.objectives.ensemble import ENSEMBLES, Verifier, reward_names, specs
from diffsearch.searchers.noise.base import NoiseSearchSettings
from diffsearch.searchers.noise.registry import noise_searcher
from diffsearch.spaces.noise import Candidate, NoiseSpace, has_noise_hooks, regenerate, reproduce_call
from diffsearch.tasks.noise_task import NoiseTask, NoiseTrialRunner


@dataclass
class NoiseOptions:
    prompt: str | None = None
    prompts_file: str | None = None
    negative: str = ""  # a negative prompt, e.g. the one diffsearch prompt found (one after the other)
    searcher: str = "best-of-n"
    budget_nfe: int | None = None  # denoiser evaluations; None: 16 generations
    model: str = DEFAULT_MODEL
    clip: str = DEFAULT_CLIP
    reward: str = "clip"  # one reward, or several comma-separated (an ensemble)
    ensemble: str = "rank"
    reward_model: str | None = None
    reward_arch: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    steps: int = 50
    guidance: float | None = None
    true_cfg: float = 1.0
    size: int | None = None
    seed: int = 0  # the user's generation seed (their image) and the searcher's seed
    latent: str | None = None  # the user's initial latent instead of --seed (.pt / .safetensors)
    neighbours: int = 4
    radius: float = 0.5
    branches: int = 4
    potential: float = 1.0
    lr: float = 0.1
    batch: int = 8
    study: str | None = None
    storage: str | None = None
    out: str | None = None
    workers: int = 1  # > 1: complete generations from seeds are handed out to worker processes
    heartbeat: int = DEFAULT_HEARTBEAT_SECONDS

    def resolved(self) -> "NoiseOptions":
        o = NoiseOptions(**asdict(self))
        if (o.prompt is None) == (o.prompts_file is None):
            raise UsageError("give one prompt, or --prompts FILE")
        if o.prompt is not None and not o.prompt.strip():
            raise UsageError("the prompt is empty")
        if o.prompts_file is not None:
            read_prompt_file(o.prompts_file)  # a bad file is refused before any study or folder is made
        entry = noise_searcher(o.searcher)
        for spec in specs(o.reward, o.reward_model, o.reward_arch, o.clip):
            spec.check()
        if o.ensemble not in ENSEMBLES:
            raise UsageError(f"unknown --ensemble {o.ensemble!r}; known: {', '.join(ENSEMBLES)}")
        if entry.can("needs_gradient") and len(reward_names(o.reward)) > 1:
            raise UsageError(f"--searcher {o.searcher} follows the gradient of one reward; give one --reward")
        for name, value, low in (
            ("--steps", o.steps, 1),
            ("--neighbours", o.neighbours, 1),
            ("--branches", o.branches, 2),
            ("--batch", o.batch, 1),
            ("--workers", o.workers, 1),
        ):
            if value < low:
                raise UsageError(f"{name} must be at least {low} (got {value})")
        if o.radius <= 0 or o.lr <= 0 or o.potential < 0:
            raise UsageError("--radius and --lr must be positive, --potential at least 0")
        if o.size is not None and (o.size < 8 or o.size % 8):
            raise UsageError(f"--size must be a positive multiple of 8 (got {o.size})")
        if o.true_cfg < 1:
            raise UsageError(f"--true-cfg must be at least 1 (1 = off; got {o.true_cfg})")
        family = family_of(o.model)
        if o.guidance is None:
            o.guidance = default_guidance(o.model)
        if o.budget_nfe is None:
            o.budget_nfe = 16 * generation_nfe(family, o)
        if o.budget_nfe < generation_nfe(family, o):
            raise UsageError(
                f"--budget-nfe {o.budget_nfe} is less than one generation ({o.steps} steps x "
                f"{passes(family, o)} denoiser passes = {generation_nfe(family, o)} NFE)"
            )
        if o.latent is not None and not Path(o.latent).expanduser().is_file():
            raise UsageError(f"--latent {o.latent}: no such file")
        if o.study is None:
            stem = "set-" + Path(o.prompts_file).stem if o.prompts_file else _slug(o.prompt)
            o.study = f"noise-{o.searcher}-{stem}"
        o.out, o.storage = run_location(o.study, o.out, o.storage)
        return o

    def prompt_list(self) -> list[str]:
        if self.prompt is not None:
            return [self.prompt]
        return read_prompt_file(self.prompts_file)

    def settings(self) -> NoiseSearchSettings:
        return NoiseSearchSettings(
            neighbours=self.neighbours, radius=self.radius, branches=self.branches, potential=self.potential, lr=self.lr
        )


def passes(family, o: NoiseOptions) -> int:
    """Denoiser passes per step, as the family runs them (classifier-free guidance: 2)."""
    if family.family == "flux":
        return 2 if o.true_cfg > 1 else 1
    guidance = family.default_guidance if o.guidance is None else o.guidance
    return 2 if guidance > 1 else 1


def generation_nfe(family, o: NoiseOptions) -> int:
    return o.steps * passes(family, o)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


class Models:
    """The pipeline and the verifier, loaded once; refusals that need them (hooks, gradient) come first."""

    def __init__(self, o: NoiseOptions):
        entry = noise_searcher(o.searcher)
        self.verifier = Verifier.load(o.reward, o.ensemble, o.reward_model, o.reward_arch, o.clip, o.device, o.seed)
        if entry.can("needs_gradient") and not self.verifier.differentiable:
            raise UsageError(
                f"--reward {o.reward} gives no gradient (its scores have no grad_fn) and --searcher "
                f"{o.searcher} follows one; use --searcher best-of-n, zero-order, paths or particles"
            )
        self.backend = load_backend(
            o.model, o.device, o.dtype, o.seed, steps=o.steps, guidance=o.guidance, true_cfg=o.true_cfg, size=o.size
        )
        refusal = self.backend.negative_prompt_refusal() if o.negative else None
        if refusal:
            raise UsageError(f"--negative-prompt: {refusal}")
        if entry.can("needs_path") and not has_noise_hooks(self.backend):
            raise UsageError(
                f"--searcher {o.searcher} injects noise along the path, and the "
                f"{self.backend.family} backend has no renoise hook; use best-of-n or zero-order"
            )
        self.user_latent = NoiseSpace(self.backend).load_latent(o.latent) if o.latent else None


def study_attrs(o: NoiseOptions, prompt: str) -> dict[str, Any]:
    return {
        "job": "noise",
        "dataset": prompt,
        "negative": o.negative,
        "model": o.model,
        "clip": o.clip,
        "reward": o.reward,
        "ensemble": o.ensemble,
        "reward_model": o.reward_model,
        "reward_arch": o.reward_arch,
        "steps": o.steps,
        "guidance": o.guidance,
        "true_cfg": o.true_cfg,
        "size": o.size,
        "searcher": o.searcher,
        "budget_nfe": o.budget_nfe,
        "seed": o.seed,
        "latent": o.latent,
        "workers": o.workers,
    }


def search_prompt(
    o: NoiseOptions, models: Models, prompt: str, study, out: Path | None, progress: ProgressFn | None = None
) -> tuple[dict[str, Any], NoiseTask]:
    """One prompt: the user's image, the search, the chosen noise saved (when ``out``); its record."""
    user = (
        Candidate(latent=models.user_latent, origin="user")
        if models.user_latent is not None
        else Candidate(seed=o.seed, origin="user")
    )

    def on_eval(task: NoiseTask) -> None:
        if progress is not None:
            progress(prompt[:40], task.spent, task.budget, task.trace[-1][1] if task.trace else None)

    task = NoiseTask(
        models.backend,
        models.verifier,
        prompt,
        study,
        o.budget_nfe,
        o.seed,
        user,
        o.batch,
        on_eval,
        o.negative,
        queue=o.workers > 1,
    )
    start = time.perf_counter()
    first = task.evaluate([task.user])[0]
    found = noise_searcher(o.searcher).value().search(task, o.settings())
    best = task.best()
    record = {
        "prompt": prompt,
        "negative": o.negative,
        "searcher": o.searcher,
        "budget_nfe": task.budget,
        "spent_nfe": task.spent,
        "forward_nfe": task.forward_nfe,
        "generation_nfe": task.generation_nfe,
        "generations": len(task.finals),
        "partial_evaluations": task.partials,
        "seconds": time.perf_counter() - start,
        "searcher_report": found,
        "user": {**first.candidate.describe(), "scores": dict(zip(models.verifier.names, first.scores))},
        "best": {
            **best.candidate.describe(),
            "scores": dict(zip(models.verifier.names, best.scores)),
            "nfe_when_found": best.nfe,
        },
        "improved": best is not first,
        "trace": task.trace,
    }
    return record, task


def save_outputs(o: NoiseOptions, models: Models, task: NoiseTask, record: dict, out: Path, index: int) -> None:
    """The chosen and the user's noise (.pt, .safetensors), the call that remakes the chosen image, and a check
    that diffusers' pipeline makes the same image (max abs difference)."""
    best = task.best()
    for role, scored in (("user", task.finals[0]), ("best", best)):
        files = task.space.save(scored.candidate, out / f"noise_{index:03d}_{role}")
        record[role]["files"] = files
    record["best"]["diffusers_call"] = reproduce_call(models.backend, o.model, task.prompt, record["best"], o.negative)
    saved = torch.load(record["best"]["files"]["pt"], weights_only=False)
    ours = task.replay(best.candidate)
    theirs = regenerate(models.backend, task.prompt, saved, o.negative)
    record["best"]["pipeline_max_abs_diff"] = float((ours.float().cpu() - theirs.float().cpu()).abs().max())


class NoiseJob:
    """``diffsearch noise``: one study per prompt; every scored image (complete or a path's estimate) a trial."""

    name = "noise"
    identity = (
        "job",
        "dataset",
        "negative",
        "model",
        "clip",
        "reward",
        "ensemble",
        "reward_model",
        "steps",
        "guidance",
        "true_cfg",
        "size",
    )
    renamed: dict[str, str] = {}

    def __init__(self, models: Models | None = None):
        self.models = models

    def studies(self, o: NoiseOptions) -> dict[str, dict[str, Any]]:
        prompts = o.prompt_list()
        names = [o.study if len(prompts) == 1 else f"{o.study}-{i:03d}-{_slug(p)}" for i, p in enumerate(prompts)]
        return {name: study_attrs(o, p) for name, p in zip(names, prompts)}

    def prepare(self, o: NoiseOptions) -> Models:
        return self.models or Models(o)

    def search(self, run: Run) -> dict[str, Any]:
        o, models = run.options, run.prepared
        records, rows = [], []
        for i, (name, attrs) in enumerate(self.studies(o).items()):
            prompt = attrs["dataset"]
            try:
                record, task = search_prompt(o, models, prompt, run.studies[name], run.out, run.progress)
            finally:
                mark_finished(run.storage, [name])  # its workers move on to the next prompt, or leave
            record["study"] = name
            save_outputs(o, models, task, record, run.out, i)
            records.append(record)
            if len(rows) < 8:
                rows += before_after_rows(task, record)
        grid = None
        if rows:
            from diffsearch.plots.images import image_grid

            grid = str(run.out / "before_after.png")
            image_grid(rows, Path(grid), title=f"diffsearch noise --searcher {o.searcher} --budget-nfe {o.budget_nfe}")
        return {
            "job": "noise",
            "options": asdict(o),
            "verifier": models.verifier.names,
            "nfe_rule": "NFE = denoiser evaluations per image: steps x passes (classifier-free guidance: 2 "
            "passes a step); a gradient step adds 2x its forward NFE for the backward pass",
            "prompts": records,
            "grid": grid,
        }

    def serve(self, o: NoiseOptions) -> int:
        """A worker: load the pipeline and the verifier, then generate and score the waiting seeds of each
        prompt's study in turn until the job marks it finished. How many it ran."""
        storage, runner, ran = open_storage(o.storage, o.heartbeat), None, 0
        for name in self.studies(o):
            study = load_study(storage, name)
            if study is None:  # the job creates every study before its workers start
                raise UsageError(f"no study {name!r} in {o.storage}")
            if runner is None:
                verifier = Verifier.load(o.reward, o.ensemble, o.reward_model, o.reward_arch, o.clip, o.device, o.seed)
                backend = load_backend(
                    o.model,
                    o.device,
                    o.dtype,
                    o.seed,
                    steps=o.steps,
                    guidance=o.guidance,
                    true_cfg=o.true_cfg,
                    size=o.size,
                )
                runner = NoiseTrialRunner(study, backend, verifier)
            runner.study = study
            ran += runner.serve()
        return ran

    def worker_options(self, study, w: WorkerSettings) -> NoiseOptions:
        a = study.user_attrs
        if a.get("workers", 1) < 2:
            raise UsageError(
                f"study {w.study!r} hands out no work: it was searched with --workers 1 (start the search "
                "with --workers 2 or more, and workers on other machines join it)"
            )
        options = options_from_study(
            NoiseOptions, study, w, ("latent", "workers"), prompt=a["dataset"], device=w.device, dtype=w.dtype
        )
        return options.resolved()


def before_after_rows(task: NoiseTask, record: dict) -> list[tuple[str, Any]]:
    rows = []
    for role, scored in (
        ("your seed" if record["user"]["seed"] is not None else "your latent", task.finals[0]),
        ("chosen", task.best()),
    ):
        image = task.replay(scored.candidate)
        scores = ", ".join(f"{n} {s:.3f}" for n, s in zip(task.verifier.names, scored.scores))
        rows.append((f"{role}: {task.prompt}\n{scores}", image.float().cpu().permute(0, 2, 3, 1).numpy()))
    return rows


JOB = NoiseJob()


def run_noise(
    options: NoiseOptions,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = lambda _: None,
    models: Models | None = None,
) -> dict[str, Any]:
    """Search the noise for one prompt or a prompt set; writes results.json, the noise files and the grid."""
    return run_job(NoiseJob(models) if models is not None else JOB, options, progress, log)
