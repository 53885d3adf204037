"""The Job protocol and ``run_job``: every job (hparams, optimizer, prompt) runs the same way.

``run_job`` resolves the options, makes the output folder, loads what the job needs (data, models: a
bad path fails here, before anything starts), opens the storage, creates (or checks, when resumed) the
job's studies, starts ``--workers``, runs the job's search, marks its studies finished and
stops the workers (also on Ctrl-C or an error), and writes results.json with one encoder. A job only
says what is its own: its options, which studies it keeps and what makes them the same study, how to
search, and what a worker that joins it runs.
"""

from __future__ import annotations

import importlib
import json
import math
import statistics
import time
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import optuna

from diffsearch.errors import StorageUnavailable
from diffsearch.ledger import create_or_load_study, mark_finished, open_storage
from diffsearch.ledger.studies import FINISHED_ATTR
from diffsearch.ledger.trial_timeout import TIME_LIMIT_ATTR
from diffsearch.ledger.workers import start_workers, stop_workers
from diffsearch.run_files import write_atomic

ProgressFn = Callable[[str, float, float, "float | None"], None]  # (what, done, total, best so far)
LogFn = Callable[[str], None]


@dataclass
class Run:
    """What a job's search gets from ``run_job``."""

    options: Any  # the job's resolved options
    out: Path  # the run folder (results.json, plots)
    storage: optuna.storages.BaseStorage
    studies: dict[str, optuna.Study]  # the job's studies, created or checked, by name
    prepared: Any = None  # what the job's ``prepare`` loaded
    progress: ProgressFn | None = None
    log: LogFn = lambda _: None

    def report(self, what: str, done: float, total: float, best: float | None) -> None:
        if self.progress is not None:
            self.progress(what, done, total, best)


class Job(Protocol):
    """A job's module holds one ``JOB``; its one-line description is its ``JOBS`` entry."""

    @property
    def name(self) -> str:
        """The CLI command, and the ``job`` attr of its studies."""

    @property
    def identity(self) -> tuple[str, ...]:
        """Study attrs a resumed study must match (they change what values mean)."""

    @property
    def renamed(self) -> Mapping[str, str]:
        """Attr -> the name older studies stored it under."""

    def prepare(self, options: Any) -> Any:
        """Load what the search needs (data, models) before any study or worker starts."""

    def studies(self, options: Any) -> dict[str, dict[str, Any]]:
        """The studies this run keeps (name -> user attrs), created before any worker starts."""

    def search(self, run: Run) -> dict[str, Any]:
        """Search and compare; the results (run_job adds timing, storage and writes results.json)."""

    def serve(self, options: Any) -> int:
        """Run this job's trials as a worker until its search is over; how many it ran."""

    def worker_options(self, study: optuna.Study, worker: "WorkerSettings") -> Any:
        """``diffsearch worker``: the resolved options of the job that made ``study``."""


@dataclass
class WorkerSettings:
    """What ``diffsearch worker`` says beside the study: this machine's settings."""

    study: str
    storage: str
    heartbeat: int
    out: str | None = None
    trials: int | None = None  # hparams: raise the study's budget
    device: str = "cpu"  # prompt: where this worker generates
    dtype: str = "float32"


def run_job(job: Job, options: Any, progress: ProgressFn | None = None, log: LogFn = lambda _: None) -> dict[str, Any]:
    """Run ``job`` with ``options`` from start to results.json; returns the results."""
    o = options.resolved()
    start = time.perf_counter()
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = job.prepare(o)
    storage = open_storage(o.storage, o.heartbeat)
    studies = {
        name: create_or_load_study(storage, name, {**attrs, FINISHED_ATTR: False}, job.identity, job.renamed)
        for name, attrs in job.studies(o).items()
    }
    run = Run(o, out, storage, studies, prepared, progress, log)
    processes = start_workers(o.workers, _serve_spawned, (type(job).__module__, o))
    finished = False
    try:
        results = job.search(run)
        finished = True
    finally:
        try:
            mark_finished(storage, studies)  # workers here and on other machines leave
        except StorageUnavailable:
            if finished:
                raise  # (the search itself failed on it otherwise: its error is the one to show)
        finally:
            stop_workers(processes, grace=30 if finished else 0)  # after Ctrl-C or an error: at once
    results["elapsed_seconds"] = time.perf_counter() - start
    results["storage"], results["study"] = o.storage, o.study
    path = out / "results.json"
    write_results(path, results)
    results["results_file"] = str(path)
    return results


def mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation, as every summary reports them (std 0 for one value, both None
    for none)."""
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
    }


def worker_sampler_seed(
    storage: optuna.storages.BaseStorage,
    study: str,
    attrs: dict[str, Any],
    identity: tuple[str, ...],
    seed: int,
    worker: int,
) -> int:
    """The seed of a worker's sampler: the run's seed, the worker's index and the trials the study holds
    already, so two workers (and a resumed or joined random search) never redraw the same points."""
    probe = create_or_load_study(storage, study, attrs, identity)
    return seed + 7919 * worker + len(probe.get_trials(deepcopy=False))


def options_from_study(
    cls: Any, study: optuna.Study, w: WorkerSettings, skip: tuple[str, ...] = (), **given: Any
) -> Any:
    """``diffsearch worker``'s options for a job: the study's attrs that are fields of the options class
    ``cls`` (less ``skip``), this worker's study, storage, folder and heartbeat, the study's
    ``--trial-timeout`` where the job takes one, then ``given`` (which wins)."""
    fields, attrs = cls.__dataclass_fields__, study.user_attrs
    given = {"study": w.study, "storage": w.storage, "out": w.out, "heartbeat": w.heartbeat} | given
    if "trial_timeout" in fields and "trial_timeout" not in given:
        given["trial_timeout"] = attrs.get(TIME_LIMIT_ATTR)
    kept = {k: v for k, v in attrs.items() if k in fields and k not in skip and k not in given}
    return cls(**kept, **given)


def _serve_spawned(module: str, options: Any, threads: int) -> None:
    """A ``--workers`` process: joins the run's studies like ``diffsearch worker``."""
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        importlib.import_module(module).JOB.serve(options)
    except Exception as exc:  # the database gone, the disk full: the job's own process says so, in one line
        from diffsearch.run_files import is_disk_full

        if isinstance(exc, StorageUnavailable) or is_disk_full(exc):
            sys.exit(1)
        raise


def write_results(path: Path, results: Mapping[str, Any]) -> None:
    """results.json: valid JSON (non-finite numbers become null), numpy scalars as numbers."""
    write_atomic(path, json.dumps(_clean(results), indent=2, default=_encode))  # whole, or the old file


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _encode(value: Any) -> Any:
    return str(value)  # paths, enums and the like
