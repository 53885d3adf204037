"""Two workers that took the same waiting trial (SQLite ignores the row lock Optuna claims it with): the one
that finishes second goes on, and the first result stands."""

import optuna
import pytest
from optuna.trial import TrialState

from diffsearch.ledger.trial_loop import TrialRunner


class RunnerBeatenToIt(TrialRunner):
    """Evaluates its trial while another worker, which took the same trial, finishes it first."""

    def evaluate(self, trial: optuna.Trial) -> float:
        self.study._storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [1.0])
        return 2.0


class RunnerBeatenAtTheWrite(TrialRunner):
    """The other worker finishes between Optuna's check of the state and its write: the storage refuses."""

    def evaluate(self, trial: optuna.Trial) -> float:
        study, number = self.study, trial._trial_id
        original = study._storage.set_trial_state_values

        def finished_just_before(trial_id, state, values=None):
            if trial_id == number and state == TrialState.COMPLETE:
                original(trial_id, TrialState.COMPLETE, [1.0])
            return original(trial_id, state, values)

        study._storage.set_trial_state_values = finished_just_before
        return 2.0


class RunnerWithABug(TrialRunner):
    def evaluate(self, trial: optuna.Trial) -> float:
        raise ValueError("Cannot tell a COMPLETE trial, said by the objective itself")


def _study(tmp_path) -> optuna.Study:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/study.db", study_name="claims")
    study.enqueue_trial({}, user_attrs={"key": "image-0"})
    return study


def test_a_trial_another_worker_finished_first_is_not_an_error(tmp_path):
    study = _study(tmp_path)
    RunnerBeatenToIt(study).run_one()  # raised "Cannot tell a COMPLETE trial" before
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value == 1.0


def test_a_trial_another_worker_finished_during_the_tell_is_not_an_error(tmp_path):
    study = _study(tmp_path)
    RunnerBeatenAtTheWrite(study).run_one()  # raised UpdateFinishedTrialError before
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value == 1.0


def test_the_same_words_from_the_objective_are_still_an_error(tmp_path):
    study = _study(tmp_path)
    with pytest.raises(ValueError, match="said by the objective"):
        RunnerWithABug(study).run_one()
