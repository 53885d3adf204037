"""``diffsearch prompt``: optimise a Stable Diffusion prompt (DPO-Diff, Wang et al., ICML 2024).

Python use::

    from diffsearch.jobs.prompt import PromptOptions, run_prompt
    results = run_prompt(PromptOptions(prompt="a dedicated gardener tending a bonsai", model="tiny",
                                       clip="tiny", space="antonym+library", searcher="gpo+es"))
    results = run_prompt(PromptOptions(prompt="a red boat on a calm lake", reward="pickscore",
                                       reward_model="~/models/pickscore", searcher="evolution"))

The reward (``--reward``, objectives/rewards.py) is higher-is-better; the search minimises its loss
(the spherical CLIP loss for ``clip``, minus the score otherwise) and the attack maximises it.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from diffsearch.backends.stable_diffusion import DEFAULT_MODEL, MEMORY_SAVERS, default_guidance, family_of, load_backend
from diffsearch.datasets.lexicon import Lexicon
from diffsearch.datasets.prompt_file import read_prompt_file
from diffsearch.errors import UsageError
from diffsearch.jobs import notes
from diffsearch.jobs.base import ProgressFn, Run, WorkerSettings, mean_std, options_from_study, run_job
from diffsearch.ledger import (
    DEFAULT_HEARTBEAT_SECONDS,
    FINISHED_ATTR,
    create_or_load_study,
    load_study,
    mark_finished,
    open_storage,
    run_location,
)
from diffsearch.ledger.trial_timeout import TIME_LIMIT_ATTR, check_trial_timeout
from diffsearch.objectives.clip import DEFAULT_CLIP
from diffsearch.objectives.rewards import Reward, RewardSpec
from diffsearch.searchers.prompt.registry import get_prompt_searcher
from diffsearch.searchers.prompt.result import PromptSearchSettings
from diffsearch.spaces.prompts import PROMPT_SPACES, build_space
from diffsearch.tasks.prompt_sd import PromptTask, PromptTrialRunner, SentenceSimilarity

TASKS = ("enhance", "attack")


@dataclass
class PromptOptions:
    prompt: str | None = None
    prompts_file: str | None = None  # a prompt set: one prompt a line, '#' comments
    task: str = "enhance"
    space: str = "antonym"
    searcher: str = "gpo+es"
    budget: float = 40  # full generations, as in DPO-Diff
    model: str = DEFAULT_MODEL
    clip: str = DEFAULT_CLIP
    reward: str = "clip"  # clip, pickscore, hpsv2 or MODULE:FUNCTION (objectives/rewards.py)
    reward_model: str | None = None  # pickscore: directory or hub id; hpsv2: checkpoint file
    reward_arch: str | None = None  # hpsv2: open_clip architecture (default ViT-H-14) or a config .json
    device: str = "cpu"
    dtype: str = "float32"
    steps: int = 50
    guidance: float | None = None  # classifier-free guidance (FLUX: distilled guidance); None: the family's default
    true_cfg: float = 1.0  # FLUX: true classifier-free guidance scale (> 1 lets a negative prompt act)
    size: int | None = None  # image height and width; None: the model's default
    save_memory: str | None = None  # comma-separated MEMORY_SAVERS (vae-slicing, vae-tiling, attention-slicing, ...)
    seeds: int = 1  # images per evaluation (loss = their mean), generation seeds seed..
    seed: int = 0
    k: int = 1  # shortcut gradient: UNet steps with gradient
    iterations: int = 20  # GPO iterations
    lexicon: str = "wordnet"
    llm_url: str | None = None
    llm_model: str | None = None
    lexicon_cache: str | None = None
    word_tokens: int = 1  # longest substitute kept, in CLIP tokens (reference: 1)
    study: str | None = None
    storage: str | None = None
    out: str | None = None
    workers: int = 1  # processes generating on this machine, this one included (--workers)
    heartbeat: int = DEFAULT_HEARTBEAT_SECONDS
    trial_timeout: float | None = None  # seconds; an evaluation running longer fails its trial with the reason

    def resolved(self) -> "PromptOptions":
        o = PromptOptions(**asdict(self))
        if (o.prompt is None) == (o.prompts_file is None):
            raise UsageError("give one prompt, or --prompts FILE")
        if o.prompt is not None and not o.prompt.strip():
            raise UsageError("the prompt is empty")
        if o.prompts_file is not None:
            read_prompt_file(o.prompts_file)  # a bad file is refused before any study or folder is made
        if o.task not in TASKS:
            raise UsageError(f"unknown --task {o.task!r}; known: {', '.join(TASKS)}")
        PROMPT_SPACES.lookup(o.space)
        if o.task == "attack" and o.space != "synonym":
            raise UsageError("--task attack searches the synonym space (keeps the meaning): use --space synonym")
        get_prompt_searcher(o.searcher)
        o.reward_spec().check()  # names, paths, the function's import: before any model loads
        for name, value, low in (
            ("--budget", o.budget, 1),
            ("--steps", o.steps, 1),
            ("--seeds", o.seeds, 1),
            ("--k", o.k, 1),
            ("--iterations", o.iterations, 0),
            ("--word-tokens", o.word_tokens, 1),
            ("--workers", o.workers, 1),
            ("--heartbeat", o.heartbeat, 1),
        ):
            if value < low:
                raise UsageError(f"{name} must be at least {low} (got {value})")
        check_trial_timeout(o.trial_timeout)
        if o.guidance is None:
            o.guidance = default_guidance(o.model)
        if o.true_cfg < 1:
            raise UsageError(f"--true-cfg must be at least 1 (1 = off; got {o.true_cfg})")
        if o.size is not None and (o.size < 8 or o.size % 8):
            raise UsageError(f"--size must be a positive multiple of 8 (got {o.size})")
        o.memory()  # names checked before any model loads
        if o.k > o.steps:
            raise UsageError(f"--k {o.k} is more than --steps {o.steps}")
        if o.study is None:
            stem = "set-" + Path(o.prompts_file).stem if o.prompts_file else _slug(o.prompt)
            reward = "" if o.reward == "clip" else f"-{_slug(o.reward)}"  # clip: the names of earlier studies
            o.study = f"prompt-{o.task}-{o.space}-{o.searcher}{reward}-{stem}"
        o.out, o.storage = run_location(o.study, o.out, o.storage)
        return o

    def memory(self) -> tuple[str, ...]:
        names = tuple(n.strip() for n in (self.save_memory or "").split(",") if n.strip())
        for name in names:
            if name not in MEMORY_SAVERS:
                raise UsageError(f"unknown --save-memory {name!r}; known: {', '.join(MEMORY_SAVERS)}")
        return names

    def reward_spec(self) -> RewardSpec:
        return RewardSpec(self.reward, self.reward_model, self.reward_arch, self.clip)

    def prompt_list(self) -> list[str]:
        if self.prompt is not None:
            return [self.prompt]
        return read_prompt_file(self.prompts_file)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


class Models:
    """SD, the reward, lexicon and (for the attack) the sentence model, loaded once for a prompt set."""

    def __init__(self, o: PromptOptions):
        # first, before any weights: the model's family (an unserved pipeline) and a space it cannot serve
        family = family_of(o.model)
        # a space that searches a negative prompt is refused where the model's guidance leaves it no effect
        negative = PROMPT_SPACES.lookup(o.space).can("acts_through_negative_prompt")
        guidance = family.default_guidance if o.guidance is None else o.guidance  # what the backend will use
        refusal = family.refusal_for(guidance, o.true_cfg) if negative else None
        if refusal:
            raise UsageError(f"--space {o.space} searches a negative prompt, but {refusal}")
        self.reward: Reward = o.reward_spec().load(o.device, o.seed)  # next: a bad reward fails before SD loads
        # a searcher that backpropagates through the reward (DPO-Diff's shortcut gradient) needs a grad_fn
        if get_prompt_searcher(o.searcher).can("needs_gradient") and not self.reward.differentiable:
            raise UsageError(
                f"--reward {o.reward} is not differentiable (its scores have no grad_fn) and "
                f"--searcher {o.searcher} backpropagates through it; use --searcher evolution or random"
            )
        self.backend = load_backend(
            o.model,
            o.device,
            o.dtype,
            o.seed,
            steps=o.steps,
            guidance=o.guidance,
            true_cfg=o.true_cfg,
            size=o.size,
            memory=o.memory(),
        )
        refusal = self.backend.negative_prompt_refusal() if negative else None
        # again on the loaded backend: a hub id not in the local cache was guessed to be SD 1.x above
        if refusal:
            raise UsageError(f"--space {o.space} searches a negative prompt, but {refusal}")
        self.one_token = lambda w: len(self.backend.token_ids(w)) <= o.word_tokens  # short enough to keep
        self.lexicon = Lexicon(
            o.lexicon, self.one_token, Path(o.lexicon_cache) if o.lexicon_cache else None, o.llm_url, o.llm_model
        )
        self.similarity = SentenceSimilarity(o.device) if o.task == "attack" else None

    def check_prompt(self, prompt: str) -> None:
        n = len(self.backend.token_ids(prompt))
        if n > self.backend.max_tokens():
            raise UsageError(
                f"the prompt has {n} CLIP tokens; the text encoder takes at most {self.backend.max_tokens()}"
            )


def study_attrs(o: PromptOptions, prompt: str) -> dict[str, Any]:
    # everything that changes what an evaluation means; a resumed study must match it
    return {
        "job": "prompt",
        "space": o.space,
        "dataset": prompt,
        "task": o.task,
        "model": o.model,
        "clip": o.clip,
        "reward": o.reward,
        "reward_model": o.reward_model,
        "reward_arch": o.reward_arch,
        "steps": o.steps,
        "guidance": o.guidance,
        "true_cfg": o.true_cfg,
        "size": o.size,
        "seeds": o.seeds,
        "seed": o.seed,
        "lexicon": o.lexicon,
        "searcher": o.searcher,
        "budget": o.budget,
        "word_tokens": o.word_tokens,
        TIME_LIMIT_ATTR: o.trial_timeout,
    }


def optimise_prompt(
    o: PromptOptions, models: Models, prompt: str, storage, study_name: str, progress: ProgressFn | None = None
) -> tuple[dict[str, Any], PromptTask]:
    """Search one prompt; returns its record (user input vs best, both prompts, losses, trials) and the
    task that holds its evaluations."""
    models.check_prompt(prompt)
    space = build_space(
        o.space,
        prompt,
        models.lexicon,
        models.one_token,
        models.backend.max_tokens(),
        lambda s: len(models.backend.token_ids(s)),
    )
    study = create_or_load_study(
        storage, study_name, {**study_attrs(o, prompt), FINISHED_ATTR: False}, PromptJob.identity
    )
    try:
        return _search(o, models, prompt, space, study, study_name, progress)
    finally:
        mark_finished(storage, [study_name])  # its workers move on to the next prompt, or leave


def _search(
    o: PromptOptions, models: Models, prompt: str, space, study, study_name: str, progress: ProgressFn | None
) -> tuple[dict[str, Any], PromptTask]:
    seeds = tuple(o.seed + i for i in range(o.seeds))

    def on_eval(task: PromptTask, _result) -> None:
        if progress is not None:
            best = task.best()
            progress(prompt, min(task.spent, task.budget), task.budget, best[1].value if best else None)

    task = PromptTask(models.backend, models.reward, space, study, o.task, seeds, o.budget, models.similarity, on_eval)
    start = time.perf_counter()
    user = task.evaluate(space.user_point(), role="user_input")
    found = get_prompt_searcher(o.searcher).value(
        task, space, o.seed, PromptSearchSettings(iterations=o.iterations, k=o.k)
    )
    best_point, best = task.best() or (space.user_point(), user)
    positive, negative = space.texts(best_point)
    return {
        "prompt": prompt,
        "study": study_name,
        "space": o.space,
        "slots": {s.name: s.choices for s in space.slots},
        "user_input": {
            "loss": user.loss,
            "value": user.value,
            "score": user.attrs.get("score"),
            "clip_score": user.attrs.get("clip_score"),
        },
        "best": {
            "positive": positive,
            "negative": negative,
            "loss": best.loss,
            "value": best.value,
            "score": best.attrs.get("score"),
            "clip_score": best.attrs.get("clip_score"),
            "params": space.to_params(best_point),
            "similarity": best.attrs.get("similarity"),
        },
        "improvement": (user.value - best.value) if user.value is not None and best.value is not None else None,
        "spent_generations": task.spent,
        "evaluations": len(task.seen),
        "gradient_steps": found.gradient_steps,
        "seconds": time.perf_counter() - start,
        "points": {"user": list(space.user_point()), "best": list(best_point)},
    }, task


class PromptJob:
    """``diffsearch prompt``: one study per prompt; each generation is a waiting trial any worker runs."""

    name = "prompt"
    # everything that changes what an evaluation means: cached generations are valid only for these
    identity = (
        "job",
        "space",
        "dataset",
        "task",
        "model",
        "clip",
        "reward",
        "reward_model",
        "reward_arch",
        "steps",
        "guidance",
        "true_cfg",
        "size",
        "seeds",
        "seed",
        "lexicon",
    )
    renamed: dict[str, str] = {}

    def __init__(self, models: Models | None = None):
        self.models = models  # loaded once by the caller (a benchmark over many runs), or here

    def studies(self, o: PromptOptions) -> dict[str, dict[str, Any]]:
        prompts = o.prompt_list()
        names = [
            o.study if len(prompts) == 1 else f"{o.study}-{i:03d}-{_slug(prompt)}" for i, prompt in enumerate(prompts)
        ]
        return {name: study_attrs(o, prompt) for name, prompt in zip(names, prompts)}

    def prepare(self, o: PromptOptions) -> Models:
        return self.models or Models(o)

    def search(self, run: Run) -> dict[str, Any]:
        o, models = run.options, run.prepared
        records, tasks = [], []
        for i, (name, attrs) in enumerate(self.studies(o).items()):
            prompt = attrs["dataset"]
            run.log(f"[{i + 1}/{len(run.studies)}] {prompt}")
            notes.explain(run.studies[name], notes.prompt_study(o, prompt))  # what it says in optuna-dashboard
            record, task = optimise_prompt(o, models, prompt, run.storage, name, run.progress)
            records.append(record)
            tasks.append(task)
        objective = models.reward.loss_formula
        grid = _grid(records[:4], tasks[:4], run.out, o)
        notes.attach_images([run.studies[r["study"]] for r in records[:4]], [grid], run.out)  # the prompts shown
        return {
            "job": "prompt",
            "options": asdict(o),
            "objective": objective + (" (minimised)" if o.task == "enhance" else " (maximised)"),
            "reward": {"name": o.reward, "score": models.reward.score_name, "loss": models.reward.loss_name},
            "prompts": records,
            "summary": _summary(records),
            "grid": grid,
        }

    def serve(self, o: PromptOptions) -> int:
        return serve_prompt_studies(o.storage, list(self.studies(o)), o.device, o.dtype, o.heartbeat)

    def worker_options(self, study, w: WorkerSettings) -> PromptOptions:
        prompt = study.user_attrs["dataset"]
        return options_from_study(PromptOptions, study, w, prompt=prompt, device=w.device, dtype=w.dtype).resolved()


JOB = PromptJob()


def run_prompt(
    options: PromptOptions,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = lambda _: None,
    models: Models | None = None,
) -> dict[str, Any]:
    """Optimise one prompt or a prompt set; writes results.json and the before / after grid to ``out``."""
    return run_job(PromptJob(models) if models is not None else JOB, options, progress, log)


def serve_prompt_studies(storage_url: str, names: list[str], device: str, dtype: str, heartbeat: int) -> int:
    """A worker for prompt studies: load the models the first study names, then generate the waiting
    trials of each study in turn until the job marks it finished. How many trials it ran."""
    storage = open_storage(storage_url, heartbeat)
    runner, ran = None, 0
    for name in names:
        study = load_study(storage, name)
        if study is None:  # the job creates every study before its workers start
            raise UsageError(f"no study {name!r} in {storage_url}")
        if runner is None:
            a = study.user_attrs
            backend = load_backend(
                a["model"],
                device,
                dtype,
                a["seed"],
                steps=a["steps"],
                guidance=a["guidance"],
                true_cfg=a.get("true_cfg", 1.0),
                size=a.get("size"),
            )
            reward = RewardSpec(a.get("reward", "clip"), a.get("reward_model"), a.get("reward_arch"), a["clip"])
            runner = PromptTrialRunner(study, backend, reward.load(device, a["seed"]))
        runner.study = study
        ran += runner.serve()
    return ran


def _summary(records) -> dict[str, Any]:
    """Mean +- std over the prompts of the user input's and the best prompt's losses (DPO-Diff's tables)."""

    def stats(values):
        values = [v for v in values if v is not None]
        return {**mean_std(values), "n": len(values)}

    return {
        "user_input_loss": stats([r["user_input"]["loss"] for r in records]),
        "best_loss": stats([r["best"]["loss"] for r in records]),
        "improved": sum(1 for r in records if (r["improvement"] or 0) > 0),
        "prompts": len(records),
    }


def _grid(records, tasks: list[PromptTask], out: Path, o: PromptOptions) -> str | None:
    """Before / after images (one row per prompt, the generation seeds side by side)."""
    from diffsearch.plots.images import image_grid

    rows = []
    for r, task in zip(records, tasks):
        for label, key in (("user input", "user"), ("optimised", "best")):
            point = tuple(r["points"][key])
            positive, negative = task.space.texts(point)
            loss = r["user_input" if key == "user" else "best"]["loss"]
            images = task.images(point).float().cpu().permute(0, 2, 3, 1).numpy()
            title = (
                f"{label}: {positive}"
                + (f"\nnegative: {negative}" if negative else "")
                + (f"\nloss {loss:.4f}" if loss is not None else "")
            )
            rows.append((title, images))
    if not rows:
        return None
    path = out / "before_after.png"
    image_grid(rows, path, title=f"diffsearch prompt --task {o.task} --space {o.space} --searcher {o.searcher}")
    return str(path)
