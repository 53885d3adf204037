"""``diffsearch schedule``: search the N timesteps (and solver order) of a short sampler of a pretrained model.

Python use::

    from diffsearch.jobs.schedule import ScheduleOptions, run_schedule
    results = run_schedule(ScheduleOptions(model="fashion", nfe=6, searcher="evolution", budget=40))

Each trial samples ``--search-images`` images (search seeds ``seed ..``) with one schedule of the space
(spaces/schedules.py) and scores them by teacher matching (the distance to the ``--teacher-steps`` samples
of the same noise, as LD3 does) or by FID against the reference's training split. The search starts from
the baselines' own points (evenly spaced, Align Your Steps where published) and the searcher's proposals
(searchers/schedule). At the end the found schedule and the baselines (uniform DDIM with diffusers'
``leading`` / ``trailing`` / ``linspace`` spacing, DPM-Solver++ with its default and with Karras sigmas, Align
Your Steps) are judged on generation seeds the search never saw (from ``HELD_OUT_SEED``): FID and KID
against held-out real images (the reference's test split), and teacher matching beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution

from diffsearch.datasets.prompt_file import read_prompt_file
from diffsearch.errors import TrialFailed, UsageError
from diffsearch.ledger.trial_timeout import TIME_LIMIT_ATTR, check_trial_timeout
from diffsearch.jobs.base import ProgressFn, Run, WorkerSettings, options_from_study, run_job, worker_sampler_seed
from diffsearch.ledger import (
    DEFAULT_HEARTBEAT_SECONDS,
    best_trial,
    create_or_load_study,
    done_trials,
    open_storage,
    run_location,
)
from diffsearch.ledger.trial_loop import BudgetLoop, run_to_budget
from diffsearch.objectives.teacher_matching import teacher_distance
from diffsearch.searchers.schedule import SCHEDULE_SEARCHERS, get_schedule_searcher
from diffsearch.spaces.schedules import SOLVERS, Schedule, ScheduleSpace, default_solver

OBJECTIVES = {
    "teacher": "teacher matching: mean squared pixel distance to the --teacher-steps samples of the same noise "
    "(LD3, Tong et al., ICLR 2025); cheap; it pays where the model's many-step samples are far better than its "
    "few-step ones (our benchmark: TPE 45 % below uniform DDIM's FID at 6 NFE on such a UNet, 10 % or less on others)",
    "fid": "FID (Inception-v3) of the search images against the reference's training split; needs "
    "--reference and 50 or more --search-images; in our benchmark (64 images, 40 trials) as good as or better "
    "than teacher matching on held-out images at 4-6 NFE, at about 10 times the search time",
}
HELD_OUT_SEED = 1_000_000  # generation seeds of the final table start here; search seeds must stay below
MIN_FID_IMAGES = 50
BUILT_IN_REFERENCES = ("fashion-mnist", "mnist", "digits")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class ScheduleOptions:
    model: str = "fashion"  # fashion, tiny*, a served pipeline directory / hub id, or a UNet2DModel directory
    nfe: int = 6
    solver: str | None = None  # ddim, dpm++, euler; default: dpm++ (euler on flow models)
    searcher: str = "evolution"
    budget: int = 40  # trials (each samples --search-images images with N steps)
    objective: str = "teacher"
    teacher_steps: int = 50
    search_images: int = 16
    prompt: str | None = None
    prompts_file: str | None = None
    guidance: float | None = None
    size: int | None = None
    reference: str | None = None  # fashion-mnist, mnist, digits or a folder; default: the model's own data
    fid_images: int = 200  # held-out images per FID in the final table (and reference images)
    baselines: bool = True
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    study: str | None = None
    storage: str | None = None
    out: str | None = None
    workers: int = 1
    heartbeat: int = DEFAULT_HEARTBEAT_SECONDS
    trial_timeout: float | None = None  # seconds; a sampling trial running longer fails with the reason

    def resolved(self) -> "ScheduleOptions":
        o = ScheduleOptions(**asdict(self))
        check_trial_timeout(o.trial_timeout)
        if o.objective not in OBJECTIVES:
            raise UsageError(f"unknown --objective {o.objective!r}; known: {', '.join(OBJECTIVES)}")
        if o.solver is not None and o.solver not in SOLVERS:
            from diffsearch.tasks.schedule_sampler import custom_timesteps_refusal

            refusal = custom_timesteps_refusal(o.solver)
            hint = "; the solvers here are " + ", ".join(SOLVERS) + " (ddim is DPM-Solver++ of order 1)"
            raise UsageError((refusal or f"unknown --solver {o.solver!r}") + hint)
        get_schedule_searcher(o.searcher)
        for name, value, low in (
            ("--nfe", o.nfe, 1),
            ("--budget", o.budget, 1),
            ("--teacher-steps", o.teacher_steps, 1),
            ("--search-images", o.search_images, 1),
            ("--fid-images", o.fid_images, MIN_FID_IMAGES),
            ("--workers", o.workers, 1),
            ("--heartbeat", o.heartbeat, 1),
        ):
            if value < low:
                raise UsageError(f"{name} must be at least {low} (got {value})")
        if o.seed < 0 or o.seed + o.search_images > HELD_OUT_SEED:
            raise UsageError(
                f"--seed and --search-images must keep the search seeds below {HELD_OUT_SEED} "
                "(the held-out generation seeds start there)"
            )
        T = train_timesteps_of(o.model)
        if T is not None and o.nfe > T:
            raise UsageError(f"--nfe must be between 1 and the model's {T} training timesteps (got {o.nfe})")
        if T is not None and o.teacher_steps > T:
            raise UsageError(f"--teacher-steps must be at most the model's {T} training timesteps")
        if o.prompt is not None and o.prompts_file is not None:
            raise UsageError("give --prompt or --prompts FILE, not both")
        o.reference = o.reference or default_reference(o.model)
        if o.objective == "fid" and o.reference is None:
            raise UsageError("--objective fid needs --reference (fashion-mnist, mnist, digits or a folder of images)")
        if o.reference is not None:
            check_reference(o.reference, o.fid_images)
            if o.objective == "fid":
                check_reference(o.reference, o.search_images, split="training")
        if SCHEDULE_SEARCHERS.lookup(o.searcher, "--searcher").can("gradient") and o.objective != "teacher":
            raise UsageError(
                f"--searcher {o.searcher} differentiates the teacher-matching loss; use --objective teacher"
            )
        if o.objective == "fid" and o.search_images < MIN_FID_IMAGES:
            raise UsageError(
                f"--objective fid needs --search-images of at least {MIN_FID_IMAGES} (got {o.search_images})"
            )
        if o.study is None:
            stem = Path(o.model).name if Path(o.model).exists() else o.model.replace("/", "-")
            o.study = f"schedule-{stem}-nfe{o.nfe}-{o.searcher}-{o.objective}" + (f"-s{o.seed}" if o.seed else "")
        o.out, o.storage = run_location(o.study, o.out, o.storage)
        return o

    def prompt_list(self) -> list[str]:
        if self.prompt is not None:
            return [self.prompt]
        if self.prompts_file is not None:
            return read_prompt_file(self.prompts_file)
        if self.model == "fashion":  # the ten class prompts, in turn over the seeds
            from diffsearch.backends.fashion_sd import plain_prompt

            return [plain_prompt(label) for label in range(10)]
        folder = Path(__file__).resolve().parent.parent / "datasets" / "prompts.txt"
        return [line.strip() for line in folder.read_text().splitlines() if line.strip() and not line.startswith("#")]


# ---- what a model allows, read without loading weights ------------------------------------------------
def _model_dir(model: str) -> Path | None:
    if model == "fashion":
        from diffsearch.backends.fashion_sd import PIPELINE_DIR

        return PIPELINE_DIR
    path = Path(model).expanduser()
    return path if (path / "model_index.json").is_file() else None


def is_unet_dir(model: str) -> bool:
    folder = _model_dir(model)
    if folder is None or model == "fashion":
        return False
    index = json.loads((folder / "model_index.json").read_text())
    return (index.get("unet") or [None, None])[1] == "UNet2DModel"


def train_timesteps_of(model: str) -> int | None:
    if model.startswith("tiny"):
        return 1000
    folder = _model_dir(model)
    config = folder / "scheduler" / "scheduler_config.json" if folder else None
    if config is None or not config.is_file():
        return None
    return int(json.loads(config.read_text()).get("num_train_timesteps", 1000))


def default_reference(model: str) -> str | None:
    if model == "fashion":
        return "fashion-mnist"
    folder = _model_dir(model)
    training = folder / "training.json" if folder else None
    if training is not None and training.is_file():  # benchmarks/schedule_mnist_unet.py writes it
        dataset = json.loads(training.read_text()).get("dataset")
        return dataset if dataset in BUILT_IN_REFERENCES else None
    return None


def check_reference(spec: str, count: int, split: str = "held-out") -> None:
    """UsageError unless the reference holds ``count`` images in ``split`` (folders: 20 % held out)."""
    if spec in BUILT_IN_REFERENCES:
        sizes = {"fashion-mnist": (60000, 10000), "mnist": (50000, 10000), "digits": (1438, 359)}[spec]
    else:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--reference {spec}: not {', '.join(BUILT_IN_REFERENCES)} nor a folder of images")
        n = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        held = max(1, int(round(n * 0.2))) if n else 0
        sizes = (n - held, held)
    have = sizes[1] if split == "held-out" else sizes[0]
    if have < count:
        raise UsageError(
            f"--reference {spec} has {have} {split} images; FID on {count} images needs at least "
            f"{count} (add images or lower --fid-images / --search-images, at least {MIN_FID_IMAGES})"
        )


# ---- the prepared run -----------------------------------------------------------------------------------
def teacher_schedule(space: ScheduleSpace, steps: int) -> Schedule:
    """The many-step teacher: the same solver on diffusers' ``trailing`` spacing (flow: evenly spaced sigmas)."""
    T = space.model_range.num_train_timesteps
    if space.model_range.flow:
        return Schedule("euler", sigmas=tuple(float(s) for s in np.linspace(1.0, 1.0 / T, steps)))
    timesteps = np.arange(T, 0, -T / steps).round().astype(int) - 1
    return Schedule(space.solver, timesteps=tuple(int(t) for t in timesteps), order=2 if "order" in space.free else 1)


class Prepared:
    """The model's sampler, the space, the seeds, the teacher images (made once) and the FID references."""

    def __init__(self, o: ScheduleOptions):
        from diffsearch.tasks.schedule_sampler import PipelineSampler, load_unet_dir

        torch.manual_seed(o.seed)
        if is_unet_dir(o.model):
            if o.prompt or o.prompts_file:
                raise UsageError(f"--model {o.model} is an unconditional UNet2DModel; it takes no prompts")
            self.sampler = load_unet_dir(_model_dir(o.model), o.device)
            self.prompts: list[str] = []
        else:
            from diffsearch.backends.stable_diffusion import load_backend

            self.prompts = o.prompt_list()
            backend = load_backend(
                o.model, o.device, o.dtype, o.seed, steps=o.teacher_steps, guidance=o.guidance, size=o.size
            )
            self.sampler = PipelineSampler(backend, self.prompts)
        solver = o.solver or default_solver(self.sampler.model_range.prediction)
        self.space = ScheduleSpace(o.nfe, solver, self.sampler.model_range)
        teacher = ScheduleSpace(o.teacher_steps, solver, self.sampler.model_range)
        self.teacher = teacher_schedule(teacher, o.teacher_steps)
        self.search_seeds = list(range(o.seed, o.seed + o.search_images))
        self.held_out_seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + o.fid_images))
        self.options = o
        self._teacher: dict[tuple[int, ...], torch.Tensor] = {}
        self._references: dict[str, Any] = {}
        self.judged: dict[str, tuple[Any, np.ndarray]] = {}  # judge(): sampler -> (Row, grid), held-out only

    def teacher_images(self, seeds: list[int]) -> torch.Tensor:
        key = tuple(seeds)
        if key not in self._teacher:
            self._teacher[key] = self.sampler.images(self.teacher, seeds)
        return self._teacher[key]

    def reference(self, split: str):
        """FID reference features of the reference's ``train`` (search) or ``eval`` (held-out) images."""
        from diffsearch.objectives.fid import FidReference

        o = self.options
        count = o.fid_images if split == "eval" else o.search_images
        if split not in self._references:
            res = self.sampler.resolution
            key = f"schedule-{_slug(o.reference)}-{'padded' if o.model == 'fashion' else 'resized'}-r{res}-{split}-n{count}"
            self._references[split] = FidReference.cached(
                key, lambda: reference_images(o, res, split)[:count], o.device
            )
        return self._references[split]

    def score(self, images: torch.Tensor, seeds: list[int], objective: str) -> tuple[float, dict[str, float]]:
        """(value, parts) of images generated from ``seeds``."""
        if objective == "teacher":
            distances = teacher_distance(images, self.teacher_images(seeds))
            return float(distances.mean()), {"teacher_mse": float(distances.mean())}
        from diffsearch.tasks.schedule_sampler import to_uint8
        from diffsearch.objectives.fid import inception_features

        split = "eval" if seeds and seeds[0] >= HELD_OUT_SEED else "train"
        parts = self.reference(split).score(inception_features(to_uint8(images), self.options.device))
        return parts["fid"], parts


def reference_images(o: ScheduleOptions, resolution: int, split: str) -> np.ndarray:
    """uint8 N x H x W x C real images; fashion-mnist for ``--model fashion`` is padded 28 -> 32 as it was trained."""
    if o.model == "fashion" and o.reference == "fashion-mnist":
        from diffsearch.backends.fashion_sd import load_fashion

        images = load_fashion("train" if split == "train" else "test")[0][..., None]
        return images[np.random.RandomState(0).permutation(len(images))]
    from diffsearch.datasets.images import load_image_data

    data = load_image_data(o.reference, resolution)
    return data.train if split == "train" else data.eval


def _slug(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8] if "/" in text else text


# ---- the trials ------------------------------------------------------------------------------------------
class ScheduleLoop(BudgetLoop):
    """One trial: a point of the space -> a schedule -> images of the search seeds -> the objective."""

    def __init__(self, study: optuna.Study, prepared: Prepared, budget: int):
        super().__init__(study, budget, self._evaluate)
        self.prepared = prepared

    def _evaluate(self, trial: optuna.Trial) -> float:
        p, o = self.prepared, self.prepared.options
        params = {}
        for name, dist in p.space.distributions().items():
            if isinstance(dist, FloatDistribution):
                params[name] = trial.suggest_float(name, dist.low, dist.high)
            elif isinstance(dist, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, dist.choices)
        schedule = p.space.decode(params)
        p.space.check(schedule)  # the space's promise: strictly decreasing, inside the model's range
        trial.set_user_attr("schedule", schedule.to_dict())
        start = time.perf_counter()
        try:
            images = p.sampler.images(schedule, p.search_seeds)
            value, parts = p.score(images, p.search_seeds, o.objective)
        except TrialFailed:
            raise  # --trial-timeout, Ctrl-C: the trial loop records its own reason
        except (RuntimeError, ValueError) as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            raise TrialFailed(str(exc)) from exc
        if not math.isfinite(value):
            trial.set_user_attr("fail_reason", f"non-finite {o.objective} value")
            raise TrialFailed("non-finite objective")
        for name, v in parts.items():
            trial.set_user_attr(name, v)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        trial.set_user_attr("nfe_spent", schedule.nfe * len(p.search_seeds))
        return value


def study_attrs(o: ScheduleOptions, prompts: list[str] | None = None) -> dict[str, Any]:
    return {
        "job": "schedule",
        "model": o.model,
        "nfe": o.nfe,
        "solver": o.solver,
        "objective": o.objective,
        "teacher_steps": o.teacher_steps,
        "search_images": o.search_images,
        "seed": o.seed,
        "guidance": o.guidance,
        "size": o.size,
        "prompt": o.prompt,
        "prompts_file": o.prompts_file,
        "reference": o.reference if o.objective == "fid" else None,
        "searcher": o.searcher,
        "budget": o.budget,
        "fid_images": o.fid_images,
        "dataset": o.model,
        TIME_LIMIT_ATTR: o.trial_timeout,
    }


def _open_search(o: ScheduleOptions, storage, prepared: Prepared, worker: int = 0) -> optuna.Study:
    seed = worker_sampler_seed(storage, o.study, study_attrs(o), ScheduleJob.identity, o.seed, worker)
    sampler = get_schedule_searcher(o.searcher).sampler(prepared.space, seed)
    return create_or_load_study(storage, o.study, study_attrs(o), ScheduleJob.identity, sampler=sampler)


def start_points(p: Prepared) -> list[dict[str, Any]]:
    """The baselines' own points, evaluated first by every searcher: evenly spaced, trailing, AYS, and the
    schedules of DPM-Solver++ and DDIM as the model's scheduler config spaces them."""
    space, points = p.space, [p.space.centre()]
    T = space.model_range.num_train_timesteps
    if space.model_range.flow:
        points.append(space.encode(Schedule("euler", sigmas=tuple(np.linspace(1.0, 1.0 / T, space.nfe)))))
    else:
        trailing = tuple(int(t) for t in np.arange(T, 0, -T / space.nfe).round().astype(int) - 1)
        if len(set(trailing)) == space.nfe:
            points.append(space.encode(Schedule(space.solver, timesteps=trailing, order=2)))
        ays = p.sampler.ays(space.nfe)
        if ays is not None:
            points.append(space.encode(Schedule(space.solver, timesteps=ays.timesteps, order=2)))
        # the schedules the model's own scheduler config gives DPM-Solver++ and DDIM at this NFE (its
        # timestep_spacing and steps_offset): a search starts from DPM-Solver++'s default, not only from ours
        for name in ("dpm++", "ddim-leading"):
            run = [int(round(t)) for t in p.sampler.timesteps_run(*p.sampler.baseline(name, space.nfe))]
            if len(set(run)) == space.nfe and run == sorted(run, reverse=True) and 0 <= run[-1] and run[0] < T:
                points.append(space.encode(Schedule(space.solver, timesteps=tuple(run), order=2)))
    unique = {json.dumps(point, sort_keys=True): point for point in points}
    return list(unique.values())


def search(
    o: ScheduleOptions, p: Prepared, storage, report: Callable[[float, float | None], None] | None = None
) -> tuple[optuna.Study, Schedule, float]:
    """Run the study to its budget (resuming it); (study, best schedule, its search value)."""
    study = _open_search(o, storage, p)
    if not study.get_trials(deepcopy=False):
        for point in start_points(p)[: o.budget]:  # a budget below the start points takes the first ones
            study.enqueue_trial(point, skip_if_exists=True)

    def on_trial_end(s: optuna.Study, _t) -> None:
        if report is not None:
            best = best_trial(s)
            report(len(done_trials(s)), best.value if best else None)

    loop = ScheduleLoop(study, p, o.budget)
    entry = SCHEDULE_SEARCHERS.lookup(o.searcher, "--searcher")
    if entry.can("gradient"):
        _gradient_search(o, p, study, loop, entry.value, on_trial_end)
    else:
        run_to_budget(loop, on_trial_end)
    best = best_trial(study)
    if best is None:
        raise UsageError(f"every trial of study {o.study} failed; see fail_reason in its trials")
    return study, Schedule.from_dict(best.user_attrs["schedule"]), float(best.value)


def _gradient_search(
    o: ScheduleOptions, p: Prepared, study: optuna.Study, loop: ScheduleLoop, searcher, on_trial_end: Callable
) -> None:
    """The start points first (as every searcher), then the gradient's steps, each run as an enqueued trial."""
    start_trials = len(start_points(p))
    while len(done_trials(study)) < min(start_trials, o.budget):
        loop.optimize(n_trials=1, callbacks=[on_trial_end])
    left = o.budget - len(done_trials(study))
    best = best_trial(study)
    if left < 1 or best is None:
        return

    def evaluate(params: dict[str, Any]) -> None:
        study.enqueue_trial(params)
        loop.optimize(n_trials=1, callbacks=[on_trial_end])

    searcher.run(p.space, p.sampler, p.search_seeds, p.teacher_images(p.search_seeds), best.params, left, evaluate)


# ---- the final table -------------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    kind: str  # searched, baseline, teacher
    schedule: list[float]  # the timesteps (sigmas for flow) the sampler ran
    order: int | None
    fid: float | None
    kid: float | None
    teacher_mse: float | None  # on held-out seeds
    seconds: float
    error: str | None = None


def judge(
    p: Prepared,
    rows: dict[str, tuple[str, Callable[[list[int]], torch.Tensor], list[float], int | None]],
    log: Callable[[str], None] = lambda _: None,
    grid: int = 8,
) -> tuple[list[Row], dict[str, np.ndarray]]:
    """Held-out judging of each named sampler: images of the held-out seeds, FID / KID against the held-out
    reference (when there is one), teacher matching on the first ``--search-images`` held-out seeds."""
    from diffsearch.tasks.schedule_sampler import to_uint8
    from diffsearch.objectives.fid import inception_features

    o = p.options
    seeds = p.held_out_seeds if o.reference else p.held_out_seeds[: o.search_images]
    teacher_seeds = p.held_out_seeds[: o.search_images]
    out, grids = [], {}
    for name, (kind, generate, schedule, order) in rows.items():
        # a searched schedule that another search found too (or a baseline judged before) is judged once
        key = json.dumps([name if kind != "searched" else kind, schedule, order, seeds[0], len(seeds), o.search_images])
        if key in p.judged:
            row, images = p.judged[key]
            out.append(Row(**{**asdict(row), "name": name, "kind": kind}))
            grids[name] = images
            log(f"  {name}: judged before (the same sampler), FID {row.fid}")
            continue
        start = time.perf_counter()
        try:
            images = generate(seeds)
        except (RuntimeError, ValueError, IndexError) as exc:  # a sampler that breaks is a row saying so
            out.append(
                Row(
                    name,
                    kind,
                    schedule,
                    order,
                    None,
                    None,
                    None,
                    0.0,
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
                )
            )
            log(f"  {name}: failed ({out[-1].error})")
            continue
        fid = kid = None
        if o.reference:
            parts = p.reference("eval").score(inception_features(to_uint8(images), o.device))
            fid, kid = parts["fid"], parts["kid"]
        mse = float(teacher_distance(images[: len(teacher_seeds)], p.teacher_images(teacher_seeds)).mean())
        out.append(Row(name, kind, schedule, order, fid, kid, mse, round(time.perf_counter() - start, 1)))
        grids[name] = images[:grid].permute(0, 2, 3, 1).numpy()
        p.judged[key] = (out[-1], grids[name])
        log(f"  {name}: FID {fid if fid is None else round(fid, 2)}, teacher MSE {mse:.5f}")
    return out, grids


def sampler_rows(p: Prepared, found: dict[str, Schedule], baselines: bool) -> dict[str, tuple]:
    """name -> (kind, generate(seeds), the timesteps the denoiser sees, solver order) for the final table."""
    from diffsearch.tasks.schedule_sampler import solver_scheduler

    rows: dict[str, tuple] = {}
    for name, schedule in found.items():
        seen = p.sampler.timesteps_run(solver_scheduler(schedule, p.sampler.config), p.sampler.set_kwargs(schedule))
        rows[name] = ("searched", lambda seeds, s=schedule: p.sampler.images(s, seeds), seen, schedule.order)
    if baselines:
        for name in p.sampler.baselines(p.space.nfe):
            seen = p.sampler.timesteps_run(*p.sampler.baseline(name, p.space.nfe))
            order = 2 if name.startswith(("dpm", "ays")) else 1
            rows[name] = (
                "baseline",
                lambda seeds, n=name: p.sampler.baseline_images(n, p.space.nfe, seeds),
                seen,
                order,
            )
    return rows


def reproduction(o: ScheduleOptions, p: Prepared, schedule: Schedule) -> str:
    """The Python that reproduces the found schedule's images with diffusers alone."""
    from diffsearch.tasks.schedule_sampler import dpm_settings, scheduler_line

    kwargs = schedule.call_kwargs()
    ((key, values),) = kwargs.items()
    shown = "[" + ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values) + "]"
    if p.sampler.family == "unet":
        extra = ", ".join(f"{k}={v!r}" for k, v in dpm_settings(p.sampler.config).items())
        folder = _model_dir(o.model)
        return "\n".join(
            [
                "import torch",
                "from diffusers import DPMSolverMultistepScheduler, UNet2DModel",
                f'unet = UNet2DModel.from_pretrained("{folder}/unet")',
                f'scheduler = DPMSolverMultistepScheduler.from_pretrained("{folder}", subfolder="scheduler", '
                f"solver_order={schedule.order}, {extra})",
                f"scheduler.set_timesteps(timesteps={shown})",
                "x = torch.randn((1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size), "
                "generator=torch.Generator().manual_seed(0))",
                "for t in scheduler.timesteps:",
                "    x = scheduler.step(unet(x, t).sample, t, x).prev_sample",
                "image = (x.clamp(-1, 1) + 1) / 2",
            ]
        )
    pipe_class = type(p.sampler.backend.pipe).__name__
    where = str(_model_dir(o.model) or o.model)
    lines = [
        "import torch",
        f"from diffusers import DPMSolverMultistepScheduler, {pipe_class}",
        f'pipe = {pipe_class}.from_pretrained("{where}")',
        scheduler_line(schedule, p.sampler.config),
        f"image = pipe({p.prompts[0]!r}, {key}={shown}, guidance_scale={p.sampler.backend.guidance}, "
        "generator=torch.Generator().manual_seed(0)).images[0]",
    ]
    return "\n".join(lines)


def figure(rows: list[Row], grids: dict[str, np.ndarray], path: Path, title: str, flow: bool) -> str:
    """Schedules (left) and held-out samples (right), one line / row per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 0.9 * len(rows) + 2.5))
    left = fig.add_axes((0.06, 0.14, 0.32, 0.76))
    for r in rows:
        left.plot(
            range(1, len(r.schedule) + 1), r.schedule, marker="o", lw=2.5 if r.kind == "searched" else 1, label=r.name
        )
    left.set_xlabel("step")
    left.set_ylabel("timestep (sigma x 1000 after the shift)" if flow else "timestep")
    left.legend(fontsize=7)
    left.set_title("schedules")
    rows = [r for r in rows if r.name in grids]
    n = len(rows)
    for i, r in enumerate(rows):
        ax = fig.add_axes((0.42, 0.9 - (i + 1) * 0.8 / n, 0.4, 0.8 / n * 0.95))
        images = grids[r.name]
        strip = np.concatenate(list(np.clip(images, 0, 1)), axis=1)
        ax.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        label = f"{r.name}" + (f"  FID {r.fid:.1f}" if r.fid is not None else "") + f"  MSE {r.teacher_mse:.4f}"
        ax.text(1.02, 0.5, label, transform=ax.transAxes, ha="left", va="center", fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


class ScheduleJob:
    """``diffsearch schedule``: one study of schedule trials, then the held-out table against the baselines."""

    name = "schedule"
    identity = (
        "job",
        "model",
        "nfe",
        "solver",
        "objective",
        "teacher_steps",
        "search_images",
        "seed",
        "guidance",
        "size",
        "prompt",
        "prompts_file",
        "reference",
    )
    renamed: dict[str, str] = {}

    def __init__(self, prepared: Prepared | None = None):
        self.prepared = prepared  # loaded once by a caller that runs many searches (the benchmark)

    def prepare(self, o: ScheduleOptions) -> Prepared:
        if self.prepared is not None and _same_model(self.prepared.options, o):
            self.prepared.options = o
            self.prepared.space = ScheduleSpace(o.nfe, self.prepared.space.solver, self.prepared.space.model_range)
            self.prepared.search_seeds = list(range(o.seed, o.seed + o.search_images))
            return self.prepared
        return Prepared(o)

    def studies(self, o: ScheduleOptions) -> dict[str, dict[str, Any]]:
        return {o.study: study_attrs(o)}

    def search(self, run: Run) -> dict[str, Any]:
        o, p = run.options, run.prepared
        start = time.perf_counter()
        run.log(f"searching {p.space.describe()} with {o.searcher}, {o.budget} trials, objective {o.objective}")
        study, schedule, value = search(
            o, p, run.storage, lambda done, best: run.report("trials", done, o.budget, best)
        )
        search_seconds = time.perf_counter() - start
        run.log("judging on held-out seeds" + (" and references" if o.reference else ""))
        rows, grids = judge(p, sampler_rows(p, {f"searched ({o.searcher})": schedule}, o.baselines), run.log)
        flow = p.space.model_range.flow
        fig = figure(
            rows, grids, run.out / f"schedules_nfe{o.nfe}.png", f"{o.model}: {o.nfe} steps, held-out seeds", flow
        )
        call = reproduction(o, p, schedule)
        schedule_file = run.out / "schedule.json"
        schedule_file.write_text(
            json.dumps(
                {
                    "model": o.model,
                    **schedule.to_dict(),
                    "guidance": getattr(getattr(p.sampler, "backend", None), "guidance", None),
                    "call": call,
                },
                indent=2,
            )
        )
        trials = [t for t in study.get_trials(deepcopy=False)]
        return {
            "job": "schedule",
            "options": asdict(o),
            "space": p.space.describe(),
            "objective": OBJECTIVES[o.objective],
            "teacher": p.teacher.to_dict(),
            "best": {**schedule.to_dict(), "search_value": value},
            "search_seconds": search_seconds,
            "trials": len(trials),
            "nfe_spent": sum(t.user_attrs.get("nfe_spent", 0) for t in trials),
            "held_out": {
                "seeds_from": HELD_OUT_SEED,
                "images": len(p.held_out_seeds) if o.reference else o.search_images,
                "reference": o.reference,
                "reference_split": "test / held-out 20 %",
            },
            "rows": [asdict(r) for r in rows],
            "figure": fig,
            "schedule_file": str(schedule_file),
            "call": call,
        }

    def serve(self, o: ScheduleOptions) -> int:
        if SCHEDULE_SEARCHERS.lookup(o.searcher, "--searcher").can("sequential"):
            return 0  # the gradient runs its chain in the searching process alone
        p = Prepared(o)
        study = _open_search(o, open_storage(o.storage, o.heartbeat), p, worker=os.getpid())
        before = len(done_trials(study))
        run_to_budget(ScheduleLoop(study, p, o.budget))
        return len(done_trials(study)) - before

    def worker_options(self, study: optuna.Study, w: WorkerSettings) -> ScheduleOptions:
        return options_from_study(ScheduleOptions, study, w, device=w.device, dtype=w.dtype).resolved()


def _same_model(a: ScheduleOptions, b: ScheduleOptions) -> bool:
    keys = (
        "model",
        "solver",
        "teacher_steps",
        "prompt",
        "prompts_file",
        "guidance",
        "size",
        "reference",
        "fid_images",
        "device",
        "dtype",
    )
    return all(getattr(a, k) == getattr(b, k) for k in keys)


JOB = ScheduleJob()


def run_schedule(
    options: ScheduleOptions,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = lambda _: None,
    prepared: Prepared | None = None,
) -> dict[str, Any]:
    """Search a schedule and judge it beside the baselines; writes results.json, schedule.json and the PNG."""
    return run_job(ScheduleJob(prepared) if prepared is not None else JOB, options, progress, log)
