"""Update-rule trainings as Optuna trials that any worker can run (the optimizer job's ledger).

The searchers propose programs in batches (a whole MCT level, a generation of children). Each program
of a batch is enqueued as a WAITING trial whose user attrs name everything needed to train it (task,
role, seed, weight decay, the program's tokens as params). Whoever is free runs the waiting trials: the
process that searches, its ``--workers`` processes, or ``diffsearch worker`` on another machine. The
searcher reads the results back from the storage, so a program already trained is never trained again,
and a worker killed mid-trial is found by heartbeats (or its dead pid) and its trial re-run.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from diffsearch.dead_workers import fail_dead_workers_trials, worker_id
from diffsearch.errors import TrialFailed
from diffsearch.interrupt import stop_point
from diffsearch.ledger import MAX_RETRIES, is_done
from diffsearch.spaces.update_rule_space import UpdateRuleSpace, formula
from diffsearch.spaces.update_rules import Program, to_text
from diffsearch.tasks.optimizer_tasks import DiffusionTrainingTask, make_task

FINISHED_ATTR = "search_finished"  # study user attr: set when the job is over, so workers leave
POLL_SECONDS = 0.2


class _Surplus(Exception):
    """A worker asked for a waiting trial that another worker took first; this fresh trial is dropped."""


class RuleTrialRunner:
    """Runs the waiting rule trials of a study, one at a time, in this process."""

    def __init__(self, study: optuna.Study, space: UpdateRuleSpace):
        self.study, self.space = study, space
        self.scale = float(study.user_attrs.get("epochs", 1.0))  # the job stores its step scale there
        self.tasks: dict[str, DiffusionTrainingTask] = {}

    def task(self, name: str) -> DiffusionTrainingTask:
        if name not in self.tasks:
            self.tasks[name] = make_task(name, self.scale)
        return self.tasks[name]

    def waiting(self) -> bool:
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def run_one(self) -> None:
        """Take one waiting trial and train its program (a failure is recorded on the trial)."""
        self.study.optimize(self._objective, n_trials=1, catch=(TrialFailed, _Surplus), gc_after_trial=False)

    def _objective(self, trial: optuna.Trial) -> float:
        attrs = trial.user_attrs
        if "key" not in attrs:  # not an enqueued program: the waiting one went to another worker
            trial.set_user_attr("surplus", "no waiting trial was left when this worker asked")
            raise _Surplus()
        trial.set_user_attr("worker", worker_id())
        params = {name: trial.suggest_categorical(name, dist.choices)
                  for name, dist in self.space.distributions().items()}
        program = self.space.from_params(params)
        try:
            ev = self.task(attrs["task"]).evaluate(program, seed=attrs["seed"], weight_decay=attrs["weight_decay"])
        except (KeyboardInterrupt, TrialFailed):
            raise
        except Exception as exc:  # a failed evaluation is recorded, not fatal
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise TrialFailed(str(exc)) from exc
        for attr, value in (("lr", ev.lr), ("lr_grid", ev.grid), ("curve", ev.curve), ("seconds", ev.seconds)):
            trial.set_user_attr(attr, value)
        if not math.isfinite(ev.score):
            trial.set_user_attr("fail_reason", "the loss blew up at every lr of the grid")
            raise TrialFailed("the loss blew up at every lr of the grid")
        return ev.score

    def wait_a_little(self) -> None:
        time.sleep(POLL_SECONDS)
        stop_point()
        fail_dead_workers_trials(self.study)
        if is_heartbeat_enabled(self.study._storage):
            optuna.storages.fail_stale_trials(self.study)


def run_rule_worker(study: optuna.Study, space: UpdateRuleSpace) -> int:
    """``diffsearch worker`` for an optimizer study: run waiting trials until the job says it is over."""
    runner, ran = RuleTrialRunner(study, space), 0
    while not study.user_attrs.get(FINISHED_ATTR, False):
        if runner.waiting():
            runner.run_one()
            ran += 1
        else:
            runner.wait_a_little()
    return ran


Item = tuple[Program, float, str | None]  # program, weight decay, display name


class LedgerEvaluator:
    """Train programs on a task as Optuna trials; a program already in the study is not trained again."""

    def __init__(self, study: optuna.Study, space: UpdateRuleSpace, task: DiffusionTrainingTask, role: str,
                 seed: int, on_trial: Callable[[FrozenTrial], None] | None = None):
        self.study, self.space, self.task, self.role, self.seed, self.on_trial = study, space, task, role, seed, on_trial
        self.runner = RuleTrialRunner(study, space)
        self.runner.tasks[task.name] = task
        self.done: dict[tuple[str, float], FrozenTrial] = {}
        self._scan(notify=False)
        self.replayed = 0

    def _mine(self, trial: FrozenTrial) -> tuple[str, float] | None:
        a = trial.user_attrs  # a training counts for the same role, task and training seed only
        if a.get("role") == self.role and a.get("task") == self.task.name and a.get("seed") == self.seed:
            return a["key"], a.get("weight_decay", 0.0)
        return None

    def _scan(self, notify: bool = True) -> dict[tuple[str, float], list[FrozenTrial]]:
        """Record newly finished trials of this role; return the unfinished ones by key."""
        unfinished: dict[tuple[str, float], list[FrozenTrial]] = {}
        for t in self.study.get_trials(deepcopy=False):
            key = self._mine(t)
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

    def trials(self, items: Sequence[Item]) -> list[FrozenTrial]:
        """Train every program of ``items`` (in parallel where workers are running); their trials."""
        keys = [(self.space.key(p), wd) for p, wd, _ in items]
        self.replayed += sum(1 for k in dict.fromkeys(keys) if k in self.done)
        wanted = {k: item for k, item in zip(keys, items) if k not in self.done}
        while wanted:
            unfinished = self._scan()
            wanted = {k: item for k, item in wanted.items() if k not in self.done}
            for key, item in wanted.items():
                tries = unfinished.get(key, [])
                if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in tries):
                    continue
                if len(tries) > MAX_RETRIES:  # it killed every worker that ran it: give up on it
                    self._give_up(key, item)
                else:  # new, or cut by Ctrl-C / a dead worker without retry: (re-)enqueue it
                    self._enqueue(key, item)
            if not wanted:
                break
            if self.runner.waiting():
                self.runner.run_one()
            else:
                self.runner.wait_a_little()
        return [self.done[k] for k in keys]

    def _attrs(self, key: tuple[str, float], program: Program, name: str | None) -> dict:
        attrs = {"role": self.role, "task": self.task.name, "key": key[0], "weight_decay": key[1],
                 "expr": to_text(program), "formula": formula(program), "seed": self.seed}
        if name:
            attrs["name"] = name
        return attrs

    def _enqueue(self, key: tuple[str, float], item: Item) -> None:
        program, _, name = item
        self.study.enqueue_trial(self.space.to_params(program), user_attrs=self._attrs(key, program, name))

    def _give_up(self, key: tuple[str, float], item: Item) -> None:
        program, _, name = item
        attrs = {**self._attrs(key, program, name),
                 "fail_reason": f"every worker that trained it died ({MAX_RETRIES + 1} tries)"}
        self.study.add_trial(optuna.trial.create_trial(
            state=TrialState.FAIL, params=self.space.to_params(program),
            distributions=self.space.distributions(), user_attrs=attrs))

    def trial(self, program: Program, weight_decay: float = 0.0, name: str | None = None) -> FrozenTrial:
        return self.trials([(program, weight_decay, name)])[0]

    def many(self, programs: Sequence[Program]) -> list[float]:
        """Scores of ``programs`` (inf for a failed training), trained as one batch."""
        return [t.value if t.state == TrialState.COMPLETE else math.inf
                for t in self.trials([(p, 0.0, None) for p in programs])]

    def __call__(self, program: Program) -> float:
        return self.many([program])[0]
