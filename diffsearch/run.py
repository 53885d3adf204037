"""The loop: ask -> evaluate -> tell, over the ledger, for a (space, searcher, task) triple.

Search trials and re-trainings (repeats of the best config or a baseline) both go through Optuna
studies, so each is resumable and visible in optuna-dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import TrialDiverged
from diffsearch.ledger import done_trials
from diffsearch.spaces.training import TrainingSpace
from diffsearch.tasks.vector_diffusion import VectorDiffusionTask


def _evaluate_trial(trial: optuna.Trial, space: TrainingSpace, task: VectorDiffusionTask, seed: int,
                    report_epochs: tuple[int, ...], samples_dir: Path | None) -> float:
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
        evaluation = task.evaluate(config, seed=seed, report=report, report_epochs=report_epochs)
    except TrialDiverged as exc:
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
    """Run trials until the study holds ``n_trials`` finished ones (complete, pruned or diverged)."""

    def stop_when_budget_met(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(study, trial)
        # trials other workers are running count too, so parallel workers do not overshoot the budget
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if len(done_trials(study)) + len(running) >= n_trials:
            study.stop()

    if len(done_trials(study)) >= n_trials:
        return
    study.optimize(
        lambda trial: _evaluate_trial(trial, space, task, seed + trial.number, report_epochs, samples_dir),
        n_trials=None, catch=(TrialDiverged,), callbacks=[stop_when_budget_met], gc_after_trial=False,
    )


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
        trial = study.ask()
        try:
            value = _evaluate_trial(trial, space, task, seed + 1000 * (index + 1), (), samples_dir)
        except TrialDiverged:
            study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
        if on_trial_end is not None:
            on_trial_end(study.trials[trial.number])
    return mine()
