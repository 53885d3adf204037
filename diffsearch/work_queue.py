"""Work handed to any worker through the study: for searchers that are not Optuna samplers.

A searcher that has a batch of evaluations to make (a level of the tree traversal, a generation of
prompts) submits each as a WAITING trial that carries everything needed to run it. Whoever is free runs
waiting trials: the searching process itself while it waits, its ``--workers`` processes, or
``diffsearch worker`` on another machine. Results are read back from the storage by key, so nothing is
evaluated twice; a worker killed mid-trial is found by heartbeats (or its dead pid) and its trial re-run.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Generic, Hashable, TypeVar

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from diffsearch.dead_workers import earlier_retry, fail_dead_workers_trials, failed_by_another_worker, worker_id
from diffsearch.errors import TrialFailed
from diffsearch.interrupt import stop_point
from diffsearch.ledger import MAX_RETRIES, is_done

FINISHED_ATTR = "search_finished"  # study user attr: set when the job is over, so workers leave
POLL_SECONDS = 0.2


class Surplus(Exception):
    """A worker asked for a waiting trial that another worker took first; this fresh trial is dropped."""


class TrialRunner:
    """Runs a study's waiting trials in this process, one at a time; subclasses say how to evaluate one."""

    key_attr = "key"  # the user attr every submitted trial carries

    def __init__(self, study: optuna.Study):
        self.study = study
        self._running: int | None = None  # the id of the trial this process runs now

    def evaluate(self, trial: optuna.Trial) -> float:
        raise NotImplementedError

    def _objective(self, trial: optuna.Trial) -> float:
        self._running = trial._trial_id
        if self.key_attr not in trial.user_attrs:  # not submitted work: the waiting one went elsewhere
            trial.set_user_attr("surplus", "no waiting trial was left when this worker asked")
            raise Surplus()
        first_retry = earlier_retry(self.study, trial)
        if first_retry is not None:
            trial.set_user_attr("surplus", f"trial {first_retry} already retries the same failed trial")
            raise Surplus()
        trial.set_user_attr("worker", worker_id())
        return self.evaluate(trial)

    def waiting(self) -> bool:
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def run_one(self) -> None:
        """Take one waiting trial and run it (a failure is recorded on the trial)."""
        self._running = None
        try:
            self.study.optimize(self._objective, n_trials=1, catch=(TrialFailed, Surplus), gc_after_trial=False)
        except Exception:
            if not failed_by_another_worker(self.study, self._running):
                raise

    def wait_a_little(self) -> None:
        time.sleep(POLL_SECONDS)
        stop_point()
        fail_dead_workers_trials(self.study)
        if is_heartbeat_enabled(self.study._storage):
            with warnings.catch_warnings():  # "experimental" since Optuna 2.9; relied on on purpose
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)

    def serve(self) -> int:
        """``diffsearch worker``: run waiting trials until the job marks the study finished; how many."""
        ran = 0
        while not self.study.user_attrs.get(FINISHED_ATTR, False):
            if self.waiting():
                self.run_one()
                ran += 1
            else:
                self.wait_a_little()
        return ran


Key = TypeVar("Key", bound=Hashable)
Submit = Callable[[bool], None]  # submit(give_up): enqueue the work, or (give_up) record it failed


class Ledger(Generic[Key]):
    """The finished trials of one kind of work, by key; submits missing work and waits for it."""

    def __init__(self, study: optuna.Study, runner: TrialRunner, key_of: Callable[[FrozenTrial], Key | None],
                 on_trial: Callable[[FrozenTrial], None] | None = None):
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


def start_workers(workers: int, target: Callable, args: tuple) -> list:
    """``--workers N``: start N - 1 processes running ``target(*args, threads)``; this process is the
    N-th. Each gets an even share of the cores' threads."""
    if workers <= 1:
        return []
    import multiprocessing

    import torch

    threads = max(1, torch.get_num_threads() // workers)
    torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=(*args, threads), daemon=True) for _ in range(workers - 1)]
    for process in processes:
        process.start()
    return processes


def stop_workers(processes: list, grace: float = 30) -> None:
    """Wait ``grace`` seconds for workers to leave on their own (the study is marked finished), then end them."""
    for process in processes:
        process.join(timeout=grace)
        if process.is_alive():
            process.terminate()
            process.join()
