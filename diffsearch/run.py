"""The loop: ask -> evaluate -> tell, over the ledger, for a (space, searcher, task) triple.

Search trials and re-trainings (repeats of the best config or a baseline) both go through Optuna
studies, so each is resumable and visible in optuna-dashboard.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import torch
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from diffsearch.dead_workers import earlier_retry, fail_dead_workers_trials, failed_by_another_worker, worker_id
from diffsearch.errors import TrialFailed, TrialOutOfMemory
from diffsearch.interrupt import stop_point
from diffsearch.ledger import done_trials, is_done
from diffsearch.spaces.training import TrainingSpace
from diffsearch.tasks.vector_diffusion import VectorDiffusionTask


_OutOfMemory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _evaluate_trial(trial: optuna.Trial, space: TrainingSpace, task: VectorDiffusionTask, seed: int,
                    report_epochs: tuple[int, ...], samples_dir: Path | None) -> float:
    trial.set_user_attr("worker", worker_id())  # first: a trial's worker is known while it runs
    params = space.suggest(trial)
    config = space.complete(params)
    trial.set_user_attr("config", config)
    trial.set_user_attr("seed", seed)

    def report(epoch: int, value: float) -> None:
        trial.report(value, epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with score {value:.4f}")

    try:
        try:
            evaluation = task.evaluate(config, seed=seed, report=report, report_epochs=report_epochs)
        except (_OutOfMemory, MemoryError) as exc:
            raise TrialOutOfMemory(f"out of memory: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    except TrialFailed as exc:
        trial.set_user_attr("fail_reason", str(exc))
        raise
    for name, value in evaluation.parts.items():
        trial.set_user_attr(name, value)
    trial.set_user_attr("seconds", evaluation.seconds)
    trial.set_user_attr("final_train_loss", evaluation.epoch_losses[-1])
    if samples_dir is not None:
        samples_dir.mkdir(parents=True, exist_ok=True)
        path = samples_dir / f"{trial.study.study_name}-trial{trial.number}.npy"
        np.save(path, evaluation.samples)
        trial.set_user_attr("samples_file", str(path))
    return evaluation.score


def run_search(study: optuna.Study, space: TrainingSpace, task: VectorDiffusionTask, n_trials: int,
               seed: int, report_epochs: tuple[int, ...] = (), samples_dir: Path | None = None,
               on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
    """Run trials until the study holds ``n_trials`` finished ones (complete, pruned or failed).

    Several workers may share the study. A worker stops starting trials when finished plus running
    trials meet the budget, but it only leaves once the others' trials have finished or been found
    dead by their heartbeats (their retries are then run here), so the budget is met exactly.
    """
    running: int | None = None  # the id of the trial this worker runs now

    def objective(trial: optuna.Trial) -> float:
        nonlocal running
        running = trial._trial_id
        stop_point()
        if _ahead_of(study, trial.number) >= n_trials:
            # workers that decide at the same moment to start one more trial: the lowest numbers win
            trial.set_user_attr("surplus", "the budget was met by earlier trials of other workers")
            raise _Surplus()
        first_retry = earlier_retry(study, trial)
        if first_retry is not None:
            trial.set_user_attr("surplus", f"trial {first_retry} already retries the same failed trial")
            raise _Surplus()
        return _evaluate_trial(trial, space, task, seed + trial.number, report_epochs, samples_dir)

    def stop_when_budget_met(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(study, trial)
        if _claimed(study) >= n_trials:
            study.stop()

    while len(done_trials(study)) < n_trials:
        stop_point()
        fail_dead_workers_trials(study)
        if _claimed(study) < n_trials:
            try:
                study.optimize(objective, n_trials=None, catch=(TrialFailed, _Surplus),
                               callbacks=[stop_when_budget_met], gc_after_trial=False)
            except Exception:
                if not failed_by_another_worker(study, running):
                    raise
            running = None
            continue
        if not is_heartbeat_enabled(study._storage):
            return  # without heartbeats a dead worker's trial would never be detected: do not wait for it
        time.sleep(study._storage.get_heartbeat_interval())
        stop_point()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


class _Surplus(Exception):
    """A trial started after the budget was already claimed; it ends failed, does not count, is not run."""


def _ahead_of(study: optuna.Study, number: int) -> int:
    """Trials numbered before ``number`` that count against the budget (finished or running).

    Numbers are handed out atomically by the storage and this count can only shrink (when a dead
    worker's trial is failed), so of several trials started at once only those that fit proceed.
    """
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < number and (t.state == TrialState.RUNNING or is_done(t)))


def _claimed(study: optuna.Study) -> int:
    """Trials that count against the budget now: finished ones and those running in any worker.

    A dead worker's trial, once failed by the heartbeat check, no longer counts; its retry waits in the
    queue and the next ``ask`` of any worker takes it.
    """
    return len(done_trials(study)) + len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def run_repeats(study: optuna.Study, space: TrainingSpace, task: VectorDiffusionTask, role: str,
                params: dict[str, Any], repeats: int, seed: int, samples_dir: Path | None = None,
                on_trial_end: Callable[[FrozenTrial], None] | None = None) -> list[FrozenTrial]:
    """Train ``params`` ``repeats`` times with different seeds (the seed's mean +- std protocol).

    Repeats live in their own study tagged by ``role`` and the params, so a rerun finishes only the
    missing ones.
    """
    key = json.dumps(params, sort_keys=True)

    def mine() -> list[FrozenTrial]:
        return [t for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("role") == role and t.user_attrs.get("params_key") == key
                and (t.state == TrialState.COMPLETE or "fail_reason" in t.user_attrs)]

    for index in range(len(mine()), repeats):
        study.enqueue_trial(params, user_attrs={"role": role, "params_key": key, "repeat": index})
        with warnings.catch_warnings():  # repeats run one by one here, not in workers: no heartbeat needed
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        try:
            value = _evaluate_trial(trial, space, task, seed + 1000 * (index + 1), (), samples_dir)
        except TrialFailed:
            study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
        if on_trial_end is not None:
            on_trial_end(study.trials[trial.number])
    return mine()
