"""A dead worker's trial is failed, then its retry queued: two writes, by another worker. A worker that asks
for a trial between them (or before the retry is taken) must not take the retry's place in the budget:
the study would then end with its budget met and the retry left WAITING, which a later run of the same
command would run. The race is played here step by step, on both storages of one machine."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from diffsearch.ledger import open_storage
from diffsearch.ledger.dead_workers import MAX_RETRIES, RetryWithReason, record_lost, retried_trial
from diffsearch.ledger.studies import is_done
from diffsearch.ledger.trial_loop import BudgetLoop, _claimed, run_to_budget

optuna.logging.set_verbosity(optuna.logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")
BUDGET = 3
X = FloatDistribution(0, 1)
STORAGES = ["journal", "sqlite"]


def _study(tmp_path, storage_kind: str) -> optuna.Study:
    """Two trials done of a budget of 3."""
    url = str(tmp_path / "study.log") if storage_kind == "journal" else f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(storage=open_storage(url, heartbeat=1), study_name="race")
    for x in (0.1, 0.2):
        study.add_trial(create_trial(params={"x": x}, distributions={"x": X}, value=x))
    return study


def _loop(study: optuna.Study) -> BudgetLoop:
    return BudgetLoop(study, BUDGET, lambda trial: trial.suggest_float("x", 0, 1))


def _fail_a_dead_workers_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The third trial, whose worker died, failed by another worker: the first of its two writes."""
    trial = study.ask({"x": X})
    trial.set_user_attr("worker", "elsewhere:1")
    storage = study._storage
    record_lost(storage, storage.get_trial(trial._trial_id), "worker elsewhere:1 is gone", MAX_RETRIES)
    assert storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return storage.get_trial(trial._trial_id)


def _queue_its_retry(study: optuna.Study, lost: optuna.trial.FrozenTrial) -> None:
    """The second write."""
    RetryWithReason(MAX_RETRIES)(study, study._storage.get_trial(lost._trial_id))


def _ask_a_fresh_trial(study: optuna.Study) -> str | None:
    """A worker's fresh trial (its ask found no retry waiting, an instant before one was queued): why it is
    surplus, or None to run it."""
    trial = optuna.Trial(study, study._storage.create_new_trial(study._study_id))
    reason = _loop(study).refuse(trial)
    trial.set_user_attr("surplus", reason or "(the test)")
    study.tell(trial, state=TrialState.FAIL)
    return reason


def _check_the_end(study: optuna.Study, lost: optuna.trial.FrozenTrial) -> None:
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    assert sum(map(is_done, trials)) == BUDGET
    retries = [t for t in trials if retried_trial(t.system_attrs) == lost.number and "surplus" not in t.user_attrs]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == lost.params


@pytest.mark.parametrize("storage_kind", STORAGES)
def test_between_the_two_writes_the_budget_keeps_the_retrys_place(tmp_path, storage_kind):
    study = _study(tmp_path, storage_kind)
    lost = _fail_a_dead_workers_trial(study)
    assert _claimed(study) == BUDGET  # so no worker asks for a fresh trial now
    assert _ask_a_fresh_trial(study) is not None  # and one that did is refused
    _queue_its_retry(study, lost)
    assert _ask_a_fresh_trial(study) is not None  # the retry waits: still its place
    run_to_budget(_loop(study))
    _check_the_end(study, lost)


@pytest.mark.parametrize("storage_kind", STORAGES)
def test_a_retry_that_never_comes_holds_its_place_only_for_a_while(tmp_path, storage_kind, monkeypatch):
    """The worker that failed the trial died before queueing its retry: a fresh trial takes the place."""
    from diffsearch.ledger import dead_workers

    monkeypatch.setattr(dead_workers, "RETRY_ON_ITS_WAY_SECONDS", 1.5)
    study = _study(tmp_path, storage_kind)
    _fail_a_dead_workers_trial(study)
    run_to_budget(_loop(study))
    trials = study.get_trials(deepcopy=False)
    assert sum(map(is_done, trials)) == BUDGET and trials[-1].state == TrialState.COMPLETE


@pytest.mark.parametrize("storage_kind", STORAGES)
def test_a_retry_queued_twice_is_closed_once_the_budget_is_met(tmp_path, storage_kind):
    """Two workers failed the same dead trial (a storage without row locks) and both queued a retry: the
    first runs; the second must not be left WAITING for a later run."""
    study = _study(tmp_path, storage_kind)
    lost = _fail_a_dead_workers_trial(study)
    _queue_its_retry(study, lost)
    _queue_its_retry(study, lost)
    run_to_budget(_loop(study))
    _check_the_end(study, lost)
    second = [t for t in study.get_trials(deepcopy=False) if retried_trial(t.system_attrs) == lost.number][1]
    assert second.state == TrialState.FAIL and "surplus" in second.user_attrs
