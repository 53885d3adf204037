import dataclasses

import optuna
import pytest
import torch
from optuna.trial import TrialState

from diffsearch.datasets import load_vector_data
from diffsearch.ledger import done_trials
from diffsearch.jobs.training_trials import run_search
from diffsearch.searchers import make_pruner, report_epochs
from diffsearch.spaces.training import TOY2D
from diffsearch.tasks.vector_diffusion import VectorDiffusionTask

from helpers import tiny_task


def test_diverging_trial_is_recorded_and_study_goes_on():
    # a space whose lr range reaches far beyond stability, to get a real divergence
    wild = dataclasses.replace(TOY2D, lr_range=(1e-4, 1e30))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(
        {"lr": 1e30, "lr_scheduler": "constant", "batch_size": 1024, "optimizer": "adam", "num_train_timesteps": 20}
    )
    study.enqueue_trial(
        {"lr": 1e-3, "lr_scheduler": "constant", "batch_size": 1024, "optimizer": "adam", "num_train_timesteps": 20}
    )
    run_search(study, wild, tiny_task(3), n_trials=3, seed=0)
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.FAIL and "nan" in study.trials[0].user_attrs["fail_reason"].lower()
    assert states[1] == TrialState.COMPLETE
    assert len(done_trials(study)) == 3


@pytest.mark.slow
def test_hyperband_runs_on_the_geometric_checkpoints():
    epochs, min_epochs = 8, 1
    # Hyperband assigns trials to brackets by hashing the study name: fix it for a repeatable test
    study = optuna.create_study(
        study_name="hyperband-test",
        sampler=optuna.samplers.RandomSampler(seed=1),
        pruner=make_pruner("hyperband", min_epochs, epochs),
    )
    checkpoints = report_epochs("hyperband", min_epochs, epochs)
    assert checkpoints == (1, 2, 4)
    run_search(study, TOY2D, tiny_task(epochs), n_trials=8, seed=0, report_epochs=checkpoints)
    # whether a trial is pruned depends on its bracket and rivals; every trial reports at the checkpoints
    for trial in study.trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert set(trial.intermediate_values) <= set(checkpoints) and 1 in trial.intermediate_values
        if trial.state == TrialState.COMPLETE:
            assert set(trial.intermediate_values) == set(checkpoints)
    assert len(done_trials(study)) == 8


class _NoRoomForBigBatches(VectorDiffusionTask):
    """The real task, on a device whose memory a batch of 4096 does not fit (as on a small GPU)."""

    def evaluate(self, config, **kwargs):
        if config["batch_size"] >= 4096:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().evaluate(config, **kwargs)


def test_out_of_memory_trial_is_recorded_with_its_reason_and_study_goes_on():
    data = load_vector_data("moons", n_points=3000, held_out=1000)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for batch_size in (4096, 1024):
        study.enqueue_trial(
            {
                "lr": 1e-3,
                "lr_scheduler": "constant",
                "batch_size": batch_size,
                "optimizer": "adam",
                "num_train_timesteps": 20,
            }
        )
    run_search(study, TOY2D, _NoRoomForBigBatches(data, epochs=2), n_trials=2, seed=0)
    first, second = study.trials
    assert first.state == TrialState.FAIL
    assert first.user_attrs["fail_reason"].startswith("out of memory: CUDA out of memory")
    assert second.state == TrialState.COMPLETE
