"""The trial loop: how any process runs trials of a study, with one guard and one surplus rule.

Two kinds of work go through it:

- **a budget of trials** (``run_to_budget``): an Optuna sampler proposes each trial; every worker runs
  trials until the study holds its budget of finished ones (``diffsearch hparams``);
- **a work queue** (``TrialRunner`` and ``WorkQueue``): a searcher that is not an Optuna sampler (the
  tree traversal, a generation of prompts) submits each evaluation as a WAITING trial that carries
  everything needed to run it. Whoever is free runs waiting trials: the searching process while it
  waits, its ``--workers`` processes, or ``diffsearch worker`` on another machine. Results are read back
  by key, so nothing is evaluated twice.

Either way a worker killed mid-trial is found by heartbeats (or its dead pid) and its trial re-run.
"""

from __future__ import annotations

import time
from typing import Callable, Generic, Hashable, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import TrialFailed
from diffsearch.ledger.dead_workers import (
    close_waiting_retries,
    earlier_retry,
    failed_by_another_worker,
    finished_by_another_worker,
    places_of_retries,
    sweep_dead_workers,
    worker_id,
)
from diffsearch.ledger.interrupt import stop_point
from diffsearch.ledger.optuna_private import heartbeat_enabled, heartbeat_interval, trial_id
from diffsearch.ledger.storage import MAX_RETRIES
from diffsearch.ledger.studies import is_done, is_finished
from diffsearch.ledger.trial_timeout import TIME_LIMIT_ATTR, time_limit

POLL_SECONDS = 0.2


class Surplus(Exception):
    """A trial this worker should not run (the budget is met, the waiting trial went elsewhere, another
    trial already retries the same failed one). It ends failed with a ``surplus`` attr and never counts."""


class TrialLoop:
    """Runs trials of one study in this process through ``study.optimize``; every trial passes one guard.

    Subclasses say which trials to admit (``refuse``) and how to evaluate one (``evaluate``).
    """

    def __init__(self, study: optuna.Study):
        self.study = study
        self._running: int | None = None  # the id of the trial this process runs now

    def refuse(self, trial: optuna.Trial) -> str | None:
        """Why this fresh trial is surplus, or None to run it."""
        return None

    def evaluate(self, trial: optuna.Trial) -> float:
        raise NotImplementedError

    def _objective(self, trial: optuna.Trial) -> float:
        self._running = trial_id(trial)
        stop_point()
        reason = self.refuse(trial)
        if reason is None:
            first_retry = earlier_retry(self.study, trial)
            if first_retry is not None:
                reason = f"trial {first_retry} already retries the same failed trial"
        if reason is not None:
            trial.set_user_attr("surplus", reason)
            raise Surplus()
        trial.set_user_attr("worker", worker_id())  # first: a trial's worker is known while it runs
        try:
            with time_limit(self.study.user_attrs.get(TIME_LIMIT_ATTR)):
                return self.evaluate(trial)
        except TrialFailed as exc:  # a timeout, a full disk...: the trial counts, with its reason
            if "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", str(exc))
            raise

    def optimize(self, n_trials: int | None, callbacks: list | None = None) -> None:
        """Run trials (a failure is recorded on its trial and the loop goes on)."""
        self._running = None
        try:
            self.study.optimize(
                self._objective,
                n_trials=n_trials,
                catch=(TrialFailed, Surplus),
                callbacks=callbacks,
                gc_after_trial=False,
            )
        except Exception as exc:
            if not (
                failed_by_another_worker(self.study, self._running)
                or finished_by_another_worker(self.study, self._running, exc)
            ):
                raise
        self._running = None


class BudgetLoop(TrialLoop):
    """Trials proposed by the study's sampler, until the study holds ``n_trials`` finished ones.

    ``counts`` says which finished trials use up the budget (default: every finished one, ``is_done``);
    ``halted`` returns a reason to stop before the budget is met (a sweep whose program is broken), or None.
    """

    def __init__(
        self,
        study: optuna.Study,
        n_trials: int,
        evaluate: Callable[[optuna.Trial], float],
        counts: Callable[[FrozenTrial], bool] = is_done,
        halted: Callable[[optuna.Study], str | None] = lambda study: None,
    ):
        super().__init__(study)
        self.n_trials, self._evaluate, self.counts, self.halted = n_trials, evaluate, counts, halted

    def evaluate(self, trial: optuna.Trial) -> float:
        return self._evaluate(trial)

    def refuse(self, trial: optuna.Trial) -> str | None:
        # workers that decide at the same moment to start one more trial: the lowest numbers win
        if _ahead_of(self.study, trial.number, self.counts) >= self.n_trials:
            return "the budget was met by earlier trials of other workers"
        if self.halted(self.study) is not None:
            return "the sweep was stopped early"
        return None

    def counted(self) -> int:
        return sum(1 for t in self.study.get_trials(deepcopy=False) if self.counts(t))


def run_to_budget(loop: BudgetLoop, on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
    """Run trials until the study holds ``loop.n_trials`` finished ones (complete, pruned or failed) that
    count (``loop.counts``), or until ``loop.halted`` gives a reason.

    Several workers may share the study. A worker stops starting trials when finished plus running
    trials (and the retries of dead workers' trials, queued or on their way) meet the budget, but it
    only leaves once the others' trials have finished or been found dead by their heartbeats (their
    retries are then run here), so the budget is met exactly and no retry is left waiting.
    """
    study, n_trials = loop.study, loop.n_trials

    def budget_met(study: optuna.Study) -> bool:
        return _claimed(study, loop.counts) >= n_trials and not _waiting_retry(study)

    def stop_when_budget_met(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(study, trial)
        if budget_met(study) or loop.halted(study) is not None:
            study.stop()

    while loop.counted() < n_trials and loop.halted(study) is None:
        stop_point()
        sweep_dead_workers(study)
        if not budget_met(study):
            loop.optimize(None, [stop_when_budget_met])
            continue
        if not heartbeat_enabled(study):
            return  # without heartbeats a dead worker's trial would never be detected: do not wait for it
        time.sleep(heartbeat_interval(study))
        stop_point()
        sweep_dead_workers(study)
    if loop.counted() >= n_trials:
        # a retry queued twice (two workers failed the same dead trial on a storage without row locks):
        # the budget is met, so a later run of the command must not pick it up
        close_waiting_retries(study, "the budget was met before this retry ran")


def _waiting_retry(study: optuna.Study) -> bool:
    """Whether a dead worker's trial waits to be re-run (it holds a place in the budget: take it)."""
    trials = study.get_trials(deepcopy=False)
    places = places_of_retries(study, trials)
    return any(t.state == TrialState.WAITING for t in trials if t.number in places)


def _ahead_of(study: optuna.Study, number: int, counts: Callable[[FrozenTrial], bool] = is_done) -> int:
    """Trials that come before trial ``number`` in the budget: those numbered before it that count
    (finished or running) and, whatever their number, the places kept for retries of dead workers' trials.

    Numbers are handed out atomically by the storage and this count can only shrink (when a dead
    worker's trial is failed and not retried), so of several trials started at once only those that fit
    proceed; a retry keeps the place of the trial it re-runs, so no fresh trial takes it.
    """
    trials = study.get_trials(deepcopy=False)
    places = places_of_retries(study, trials)
    return len(places - {number}) + sum(
        1
        for t in trials
        if t.number < number and t.number not in places and (t.state == TrialState.RUNNING or counts(t))
    )


def _claimed(study: optuna.Study, counts: Callable[[FrozenTrial], bool] = is_done) -> int:
    """Trials that count against the budget now: finished ones, those running in any worker, and the
    places of retries queued or on their way (a dead worker's trial, once failed, no longer counts; its
    retry does, from that moment, before it is even queued).
    """
    trials = study.get_trials(deepcopy=False)
    places = places_of_retries(study, trials)
    return len(places) + sum(
        1 for t in trials if t.number not in places and (counts(t) or t.state == TrialState.RUNNING)
    )


class TrialRunner(TrialLoop):
    """Runs a study's waiting trials in this process, one at a time; subclasses say how to evaluate one."""

    key_attr = "key"  # the user attr every submitted trial carries

    def refuse(self, trial: optuna.Trial) -> str | None:
        if self.key_attr not in trial.user_attrs:  # not submitted work: the waiting one went elsewhere
            return "no waiting trial was left when this worker asked"
        return None

    def waiting(self) -> bool:
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def run_one(self) -> None:
        """Take one waiting trial and run it (a failure is recorded on the trial)."""
        self.optimize(n_trials=1)

    def wait_a_little(self) -> None:
        time.sleep(POLL_SECONDS)
        stop_point()
        sweep_dead_workers(self.study)

    def serve(self) -> int:
        """A worker: run waiting trials until the job marks the study finished; how many it ran."""
        ran = 0
        while not is_finished(self.study):
            if self.waiting():
                self.run_one()
                ran += 1
            else:
                self.wait_a_little()
        return ran


Key = TypeVar("Key", bound=Hashable)
Submit = Callable[[bool], None]  # submit(give_up): enqueue the work, or (give_up) record it failed


class WorkQueue(Generic[Key]):
    """The finished trials of one kind of work, by key; submits missing work and waits for it."""

    def __init__(
        self,
        study: optuna.Study,
        runner: TrialRunner,
        key_of: Callable[[FrozenTrial], Key | None],
        on_trial: Callable[[FrozenTrial], None] | None = None,
    ):
        self.study, self.runner, self.key_of, self.on_trial = study, runner, key_of, on_trial
        self.done: dict[Key, FrozenTrial] = {}
        self._scan(notify=False)

    def _scan(self, notify: bool = True) -> dict[Key, list[FrozenTrial]]:
        """Record newly finished trials; return the unfinished ones by key."""
        unfinished: dict[Key, list[FrozenTrial]] = {}
        for t in self.study.get_trials(deepcopy=False):
            key = self.key_of(t)
            if key is None:
                continue
            if is_done(t):
                if key not in self.done:
                    self.done[key] = t
                    if self.on_trial and notify:
                        self.on_trial(t)
            else:
                unfinished.setdefault(key, []).append(t)
        return unfinished

    def collect(self, wanted: dict[Key, Submit]) -> None:
        """Get every key of ``wanted`` into ``done``, running waiting trials here while others work."""
        wanted = {k: submit for k, submit in wanted.items() if k not in self.done}
        while wanted:
            unfinished = self._scan()
            wanted = {k: submit for k, submit in wanted.items() if k not in self.done}
            for key, submit in wanted.items():
                tries = unfinished.get(key, [])
                if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in tries):
                    continue
                # new, or cut by Ctrl-C / a dead worker past its retries: submit again, or give up on
                # work that killed every worker that ran it
                submit(len(tries) > MAX_RETRIES)
            if not wanted:
                break
            if self.runner.waiting():
                self.runner.run_one()
            else:
                self.runner.wait_a_little()


def give_up_reason() -> str:
    return f"every worker that ran it died ({MAX_RETRIES + 1} tries)"
