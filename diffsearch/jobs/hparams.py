"""``diffsearch hparams``: search training hyperparameters of a diffusion model on vector data (MLP
denoiser, PRDC) or on images (UNet2DModel, FID).

Python use::

    from diffsearch.jobs.hparams import HparamsOptions, run_hparams
    results = run_hparams(HparamsOptions(dataset="moons", searcher="tpe", trials=50))
    results = run_hparams(HparamsOptions(dataset="digits", searcher="tpe", trials=3, epochs=1, width=0.25,
                                         fid_samples=200))
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from diffsearch.backends.unet_trainer import SAMPLING_SCHEDULERS, resolve_device, unet_channels
from diffsearch.datasets import load_vector_data
from diffsearch.datasets.images import default_resolution, is_image_dataset, load_image_data
from diffsearch.errors import UsageError
from diffsearch.jobs import notes
from diffsearch.jobs.base import (
    ProgressFn,
    Run,
    WorkerSettings,
    mean_std,
    options_from_study,
    run_job,
    worker_sampler_seed,
)
from diffsearch.jobs.training_trials import TrainingTask, run_repeats, run_search
from diffsearch.ledger import (
    DEFAULT_HEARTBEAT_SECONDS,
    best_trial,
    create_or_load_study,
    done_trials,
    open_storage,
    run_location,
)
from diffsearch.ledger.dead_workers import worker_id
from diffsearch.ledger.importance import importance_or_none
from diffsearch.ledger.trial_timeout import TIME_LIMIT_ATTR, check_trial_timeout
from diffsearch.objectives.prdc import PRDC_PARTS
from diffsearch.searchers import make_pruner, make_sampler
from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler
from diffsearch.spaces.training import TrainingSpace, get_space
from diffsearch.tasks.image_diffusion import IMAGE_PARTS, ImageDiffusionTask
from diffsearch.tasks.vector_diffusion import VectorDiffusionTask

# defaults that differ between the vector study and the image study (the thesis study's two set-ups)
VECTOR_DEFAULTS = {"epochs": 100, "min_epochs": 8, "space": "toy2d"}
IMAGE_DEFAULTS = {"epochs": 30, "min_epochs": 6, "space": "images"}


@dataclass
class HparamsOptions:
    dataset: str = "moons"
    searcher: str = "tpe"
    trials: int = 50
    epochs: int | None = None  # default: 100 on vectors, 30 on images
    prune: str = "none"
    min_epochs: int | None = None  # default: 8 on vectors, 6 on images
    reduction_factor: int = 2
    seed: int = 0
    study: str | None = None  # default: hparams-<dataset>-<searcher>[-<prune>]
    storage: str | None = None  # default: sqlite:///<out>/study.db
    out: str | None = None  # default: runs/<study>
    baseline: bool = False  # only train the baseline (``--repeats`` times)
    repeats: int = 0  # re-train the best config (or the baseline) this many times
    baseline_runs: int = 1  # baseline trainings to compare a search against
    jobs: int = 1  # --workers: processes evaluating trials on this machine, this one included
    heartbeat: int | None = DEFAULT_HEARTBEAT_SECONDS  # seconds between beats of a running trial; None: off
    n_points: int = 100_000
    held_out: int = 20_000
    space: str | None = None  # default: toy2d on vectors, images on images
    warm_start: list[str] = field(default_factory=list)  # generative: studies in the storage that pre-train it
    # images only
    width: float = 1.0  # UNet channels x width (0.25 for CPU runs)
    resolution: int | None = None  # default: 32 for 28x28 / 8x8 sets, 64 for folders
    fid_samples: int = 1000  # generated images per FID (and reference images)
    sample_steps: int = 50
    sampler: str = "ddim"
    device: str = "auto"
    train_images: int | None = None  # keep only the first N training images
    trial_timeout: float | None = None  # seconds; a trial running longer fails with its reason

    @property
    def workers(self) -> int:
        return self.jobs

    @property
    def images(self) -> bool:
        return is_image_dataset(self.dataset)

    def resolved(self) -> "HparamsOptions":
        """Fill defaults and check values; raise UsageError with one line for anything wrong."""
        o = HparamsOptions(**asdict(self))
        for key, value in (IMAGE_DEFAULTS if o.images else VECTOR_DEFAULTS).items():
            if getattr(o, key) is None:
                setattr(o, key, value)
        if o.images:
            o.resolution = o.resolution or default_resolution(o.dataset)
            if o.space != "images":
                raise UsageError(f"image data need the images space, not {o.space!r}")
            if o.fid_samples < 2 or o.sample_steps < 1:
                raise UsageError("--fid-samples must be at least 2 and --sample-steps at least 1")
            unet_channels(o.width)  # each raises UsageError on a bad value
            resolve_device(o.device)
            if o.sampler not in SAMPLING_SCHEDULERS:
                raise UsageError(f"unknown --sampler {o.sampler!r}; known: {', '.join(SAMPLING_SCHEDULERS)}")
        if o.trials < 1 and not o.baseline:
            raise UsageError(f"--trials must be at least 1 (got {o.trials})")
        if o.epochs < 1:
            raise UsageError(f"--epochs must be at least 1 (got {o.epochs})")
        if o.repeats < 0 or o.baseline_runs < 0:
            raise UsageError("--repeats and --baseline-runs cannot be negative")
        if o.baseline and o.repeats < 1:
            o.repeats = 1
        if o.jobs < 1:
            raise UsageError(f"--workers must be at least 1 (got {o.jobs})")
        if o.heartbeat is not None and o.heartbeat < 1:
            raise UsageError(f"--heartbeat must be at least 1 second (got {o.heartbeat})")
        check_trial_timeout(o.trial_timeout)
        make_sampler(o.searcher, 0)  # validates the name
        if o.warm_start and o.searcher != "generative":
            raise UsageError(f"--warm-start needs --searcher generative (got {o.searcher!r})")
        make_pruner(o.prune, o.min_epochs, o.epochs, o.reduction_factor)
        get_space(o.space)
        if o.study is None:
            base = Path(o.dataset).stem if Path(o.dataset).suffix or o.images else o.dataset
            o.study = "-".join(
                ["hparams", base, "baseline" if o.baseline else o.searcher]
                + ([o.prune] if o.prune != "none" and not o.baseline else [])
            )
        o.out, o.storage = run_location(o.study, o.out, o.storage)
        return o


def study_attrs(o: HparamsOptions) -> dict[str, Any]:
    attrs = {
        "job": "hparams",
        "space": o.space,
        "dataset": o.dataset,
        "epochs": o.epochs,
        "searcher": o.searcher,
        "prune": o.prune,
        "min_epochs": o.min_epochs,
        "trials": o.trials,
        "seed": o.seed,
        "n_points": o.n_points,
        "held_out": o.held_out,
        TIME_LIMIT_ATTR: o.trial_timeout,
    }
    if o.warm_start:
        attrs["warm_start"] = list(o.warm_start)
    if o.images:  # scores are comparable only with the same model size, images and FID set-up
        attrs |= {
            "width": o.width,
            "resolution": o.resolution,
            "fid_samples": o.fid_samples,
            "sample_steps": o.sample_steps,
            "sampler": o.sampler,
            "device": o.device,
            "train_images": o.train_images,
        }
    return attrs


@dataclass
class _Setup:
    space: TrainingSpace
    task: TrainingTask


def _setup(o: HparamsOptions) -> _Setup:
    if o.images:
        data = load_image_data(o.dataset, o.resolution, o.train_images)
        task = ImageDiffusionTask(
            data,
            epochs=o.epochs,
            width=o.width,
            fid_samples=o.fid_samples,
            sample_steps=o.sample_steps,
            sampler=o.sampler,
            device=o.device,
        )
        return _Setup(get_space(o.space), task)
    data = load_vector_data(o.dataset, o.n_points, o.held_out, seed=0)
    return _Setup(get_space(o.space), VectorDiffusionTask(data, epochs=o.epochs))


def _search_study(o: HparamsOptions, storage: optuna.storages.BaseStorage, worker: int = 0) -> optuna.Study:
    sampler_seed = worker_sampler_seed(storage, o.study, study_attrs(o), HparamsJob.identity, o.seed, worker)
    if o.warm_start:  # earlier studies of the space pre-train the generative model (resolved() checked the searcher)
        sampler = GenerativeSampler(
            seed=sampler_seed, source_studies=[_source_study(storage, name, o.study) for name in o.warm_start]
        )
    else:
        sampler = make_sampler(o.searcher, sampler_seed)
    return create_or_load_study(
        storage,
        o.study,
        study_attrs(o),
        HparamsJob.identity,
        sampler=sampler,
        pruner=make_pruner(o.prune, o.min_epochs, o.epochs, o.reduction_factor),
    )


def _source_study(storage: optuna.storages.BaseStorage, name: str, study_name: str) -> optuna.Study:
    if name == study_name:
        raise UsageError(f"--warm-start {name!r} is the study being run; name an earlier one")
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UsageError(
            f"--warm-start: no study {name!r} in this storage (`optuna studies --storage URL` lists them)"
        ) from None


def run_worker(
    o: HparamsOptions,
    worker: int = 0,
    on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    setup: _Setup | None = None,
) -> optuna.Study:
    """Join the search study and run trials until its budget is met; the study."""
    setup = setup or _setup(o)
    study = _search_study(o, open_storage(o.storage, o.heartbeat), worker)
    run_search(
        study,
        setup.space,
        setup.task,
        o.trials,
        o.seed,
        notes.hparams_checkpoints(o),
        Path(o.out) / "samples",
        on_trial_end,
    )
    return study


class HparamsJob:
    """``diffsearch hparams``: one search study (trials proposed by an Optuna sampler, trained to a
    budget) and its companion ``<study>.repeats`` (re-trainings of the best config and the baseline)."""

    name = "hparams"
    # scores are comparable only on the same data, space, training length and (images) FID set-up
    identity = ("job", "space", "dataset", "epochs", "width", "resolution", "fid_samples")
    renamed: dict[str, str] = {}

    def studies(self, o: HparamsOptions) -> dict[str, dict[str, Any]]:
        repeats = {f"{o.study}.repeats": study_attrs(o) | notes.hparams_repeats(o)[2]}  # kind, repeats_of, roles
        return repeats if o.baseline else {o.study: study_attrs(o)} | repeats

    def serve(self, o: HparamsOptions) -> int:
        if o.baseline:
            return 0  # re-trainings run one by one in the job's own process
        study = run_worker(o, worker=os.getpid())
        return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker_id())

    def worker_options(self, study: optuna.Study, w: WorkerSettings) -> HparamsOptions:
        options = options_from_study(HparamsOptions, study, w, ("job",))
        if w.trials is not None:
            options.trials = w.trials
            study.set_user_attr("trials", w.trials)
        return options.resolved()

    def prepare(self, o: HparamsOptions) -> _Setup:
        return _setup(o)

    def search(self, run: Run) -> dict[str, Any]:
        o, out, setup = run.options, run.out, run.prepared
        samples_dir = out / "samples"
        repeats_study = run.studies[f"{o.study}.repeats"]
        # --- what the studies say in optuna-dashboard (diffsearch.jobs.notes) ---
        explained = [repeats_study] if o.baseline else [run.studies[o.study], repeats_study]
        notes.explain(repeats_study, notes.hparams_repeats(o))
        if not o.baseline:
            notes.explain(run.studies[o.study], notes.hparams_search(o))

        def on_repeat(trial: FrozenTrial) -> None:
            run.log(
                f"  {trial.user_attrs['role']} repeat {trial.user_attrs['repeat'] + 1}: "
                + (
                    f"score {trial.value:.4f}"
                    if trial.value is not None
                    else trial.user_attrs.get("fail_reason", "failed")
                )
            )

        def on_trial_end(study: optuna.Study, _trial: FrozenTrial) -> None:
            best = best_trial(study)
            run.report("trials", len(done_trials(study)), o.trials, best.value if best else None)

        baseline_params = setup.space.baseline()
        results: dict[str, Any] = {"job": "hparams", "options": asdict(o), "scalar": "fid" if o.images else "prdc_loss"}
        if o.images:
            run.log("sanity: real held-out images vs the training reference")
            results["sanity"] = setup.task.sanity()
        if not o.baseline:
            search_study = run_worker(o, on_trial_end=on_trial_end, setup=setup)
            on_trial_end(search_study, None)  # the bar's last step: other workers' last trials ended after ours
            best = best_trial(search_study)
            results["trials"] = [_trial_record(t) for t in search_study.get_trials(deepcopy=False)]
            results["study_minutes"] = _study_minutes(search_study)
            results["best"] = _trial_record(best) if best else None
            if best is not None and o.repeats:
                run.log(f"re-training the best config {o.repeats} times")
                results["best_repeats"] = summarise_repeats(
                    run_repeats(
                        repeats_study,
                        setup.space,
                        setup.task,
                        "best",
                        best.params,
                        o.repeats,
                        o.seed,
                        samples_dir,
                        on_repeat,
                    )
                )
        baseline_runs = o.repeats if o.baseline else o.baseline_runs
        if baseline_runs:
            run.log(f"training the baseline {baseline_runs} time(s)")
            results["baseline"] = summarise_repeats(
                run_repeats(
                    repeats_study,
                    setup.space,
                    setup.task,
                    "baseline",
                    baseline_params,
                    baseline_runs,
                    o.seed,
                    samples_dir,
                    on_repeat,
                )
            )
            results["baseline"]["params"] = baseline_params
        results["plot"] = _plot(results, setup, out)
        notes.attach_images(explained, [results["plot"]], out)
        if not o.baseline:
            results["importance"] = importance_or_none(run.studies[o.study])
        return results


JOB = HparamsJob()


def run_hparams(
    options: HparamsOptions, progress: ProgressFn | None = None, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run the search (or the baseline), the repeats, and write results.json and the plots to ``out``."""
    return run_job(JOB, options, progress, log)


def _trial_record(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    return {
        "number": trial.number,
        "state": trial.state.name,
        "score": trial.value,
        "params": trial.params,
        "parts": {p: attrs[p] for p in PRDC_PARTS + IMAGE_PARTS if p in attrs},
        "seconds": attrs.get("seconds"),
        "pruned_at_epoch": attrs.get("pruned_at_epoch"),
        "fail_reason": attrs.get("fail_reason"),
        "samples_file": attrs.get("samples_file"),
    }


def summarise_repeats(trials: list[FrozenTrial]) -> dict[str, Any]:
    scores = [t.value for t in trials if t.state == TrialState.COMPLETE]
    return {
        "runs": len(trials),
        "failed": len(trials) - len(scores),
        **mean_std(scores),
        "scores": scores,
        "trials": [_trial_record(t) for t in trials],
    }


def _study_minutes(study: optuna.Study) -> float:
    """Wall-clock minutes the study's trials ran (see busy_minutes). Trials of dead workers are left out:
    they 'end' when found dead, long after their work stopped."""
    return busy_minutes(done_trials(study))


def busy_minutes(trials, until=None) -> float:
    """Minutes covered by the union of the trials' [start, complete] intervals, cut at ``until`` (a
    datetime) if given: parallel workers are not double-counted and the idle gap between a stop and a
    resume is not counted."""
    spans = sorted(
        (t.datetime_start, min(t.datetime_complete, until) if until else t.datetime_complete)
        for t in trials
        if t.datetime_complete and t.datetime_start and (until is None or t.datetime_start < until)
    )
    total, current_start, current_end = 0.0, None, None
    for start, end in spans:
        if current_end is None or start > current_end:
            if current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += (current_end - current_start).total_seconds()
    return total / 60.0


def _plot(results: dict[str, Any], setup: _Setup, out: Path) -> str | None:
    """Generated vs real points for the baseline and the best config (first two dimensions); for images,
    grids of real, baseline and best-config images."""
    from diffsearch.plots.training import scatter_panels

    if isinstance(setup.task, ImageDiffusionTask):
        return _image_grids(results, setup.task, out)

    panels = [("held-out data", setup.task.data.held_out, None)]
    for label, record in (("baseline", _first_samples(results.get("baseline"))), ("best config", results.get("best"))):
        if record and record.get("samples_file") and Path(record["samples_file"]).is_file():
            panels.append((label, np.load(record["samples_file"]), record.get("score")))
    if len(panels) == 1:
        return None
    path = out / "samples.png"
    scatter_panels(panels, path, title=f"{setup.task.data.name}: generated vs real")
    return str(path)


def _image_grids(results: dict[str, Any], task: ImageDiffusionTask, out: Path) -> str | None:
    from diffsearch.plots.images import image_grid_panels

    panels = [("real training images", task.data.train[:64], None)]
    for label, record in (("baseline", _first_samples(results.get("baseline"))), ("best config", results.get("best"))):
        if record and record.get("samples_file") and Path(record["samples_file"]).is_file():
            panels.append((label, np.load(record["samples_file"])[:64], record.get("score")))
    if len(panels) == 1:
        return None
    path = out / "samples.png"
    image_grid_panels(panels, path, title=f"{task.data.name} at {task.data.resolution}px: generated vs real")
    return str(path)


def _first_samples(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if not summary:
        return None
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    return done[0] if done else None
