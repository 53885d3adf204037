"""One training of a diffusion model as an Optuna trial: the hparams job's search trials and re-trainings.

Search trials and re-trainings (repeats of the best config or a baseline) both go through Optuna
studies, so each is resumable and visible in optuna-dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import TrialFailed, TrialOutOfMemory
from diffsearch.ledger.explain import display_number
from diffsearch.ledger.trial_loop import BudgetLoop, TrialRunner, run_to_budget
from diffsearch.run_files import save_array
from diffsearch.spaces.training import TrainingSpace
from diffsearch.tasks.image_diffusion import ImageDiffusionTask
from diffsearch.tasks.vector_diffusion import VectorDiffusionTask

TrainingTask = VectorDiffusionTask | ImageDiffusionTask


CONFIG_PREFIX = "config."  # trial attrs config.<key>: training settings that are not params

_OutOfMemory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def evaluate_trial(
    trial: optuna.Trial,
    space: TrainingSpace,
    task: TrainingTask,
    seed: int,
    report_epochs: tuple[int, ...],
    samples_dir: Path | None,
) -> float:
    params = space.suggest(trial)
    config = space.complete(params)
    for key, value in config.items():  # short attrs for what the params do not say (fixed values, defaults)
        if key not in params:
            trial.set_user_attr(f"{CONFIG_PREFIX}{key}", value)
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
        trial.set_user_attr(name, value)  # exact: results.json and the benchmarks read them
    trial.set_user_attr(
        "scores",
        ", ".join(
            f"{name} {display_number(value)}"  # the same, for reading
            for name, value in evaluation.parts.items()
        ),
    )
    trial.set_user_attr("seconds", round(evaluation.seconds, 3))
    trial.set_user_attr("final_train_loss", evaluation.epoch_losses[-1])
    if samples_dir is not None:
        samples_dir.mkdir(parents=True, exist_ok=True)
        path = samples_dir / f"{trial.study.study_name}-trial{trial.number}.npy"
        save_array(evaluation.samples, path)  # a full disk fails this trial: DiskFull is a TrialFailed
        trial.set_user_attr("samples_file", str(path))
    return evaluation.score


def trial_config(trial: FrozenTrial) -> dict[str, Any]:
    """The full training config of a trial: its params and its ``config.*`` attrs (older trials: ``config``)."""
    if "config" in trial.user_attrs:
        return dict(trial.user_attrs["config"])
    return {
        **{k[len(CONFIG_PREFIX) :]: v for k, v in trial.user_attrs.items() if k.startswith(CONFIG_PREFIX)},
        **trial.params,
    }


def run_search(
    study: optuna.Study,
    space: TrainingSpace,
    task: TrainingTask,
    n_trials: int,
    seed: int,
    report_epochs: tuple[int, ...] = (),
    samples_dir: Path | None = None,
    on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> None:
    """Train configurations the study's sampler proposes until it holds ``n_trials`` finished trials
    (shared with any other workers of the study; see ``run_to_budget``)."""

    def evaluate(trial: optuna.Trial) -> float:
        return evaluate_trial(trial, space, task, seed + trial.number, report_epochs, samples_dir)

    run_to_budget(BudgetLoop(study, n_trials, evaluate), on_trial_end)


def run_repeats(
    study: optuna.Study,
    space: TrainingSpace,
    task: TrainingTask,
    role: str,
    params: dict[str, Any],
    repeats: int,
    seed: int,
    samples_dir: Path | None = None,
    on_trial_end: Callable[[FrozenTrial], None] | None = None,
) -> list[FrozenTrial]:
    """Train ``params`` ``repeats`` times with different seeds (mean +- std over training seeds).

    Repeats live in their own study tagged by ``role`` and the params, so a rerun finishes only the
    missing ones.
    """
    key = json.dumps(params, sort_keys=True)

    def mine() -> list[FrozenTrial]:
        return [
            t
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("role") == role
            and t.user_attrs.get("params_key") == key
            and (t.state == TrialState.COMPLETE or "fail_reason" in t.user_attrs)
        ]

    runner = _RepeatRunner(
        study,
        lambda trial: evaluate_trial(
            trial, space, task, seed + 1000 * (trial.user_attrs["repeat"] + 1), (), samples_dir
        ),
    )
    while len(mine()) < repeats:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.enqueue_trial(params, user_attrs={"role": role, "params_key": key, "repeat": len(mine())})
        runner.last = None
        runner.run_one()
        if on_trial_end is not None and runner.last is not None:
            on_trial_end(study.trials[runner.last])
    return mine()


class _RepeatRunner(TrialRunner):
    """Runs the enqueued re-trainings one by one, through the same trial loop as every job."""

    key_attr = "params_key"

    def __init__(self, study: optuna.Study, evaluate: Callable[[optuna.Trial], float]):
        super().__init__(study)
        self._evaluate, self.last = evaluate, None

    def evaluate(self, trial: optuna.Trial) -> float:
        self.last = trial.number
        return self._evaluate(trial)
