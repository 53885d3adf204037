"""``diffsearch sweep``: tune any training program (a W&B-style sweep file), or a Python function
(``diffsearch.search``), on the same engine as every job: one study, a budget of trials proposed by an
hparams searcher, pruning by the program's reports, workers, resume.

Python use::

    from diffsearch.jobs.sweep import SweepOptions, run_sweep
    results = run_sweep(SweepOptions(file="sweep.yaml", trials=12, workers=2))
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import UsageError
from diffsearch.jobs.base import ProgressFn, Run, WorkerSettings, run_job, worker_sampler_seed
from diffsearch.ledger import DEFAULT_HEARTBEAT_SECONDS, create_or_load_study, load_study, open_storage, run_location
from diffsearch.ledger.dead_workers import LOST_ATTR, worker_id
from diffsearch.ledger.explain import explain_study
from diffsearch.ledger.importance import importance_or_none
from diffsearch.ledger.studies import best_trial, is_done
from diffsearch.ledger.trial_loop import BudgetLoop, run_to_budget
from diffsearch.searchers import make_sampler
from diffsearch.sweeps.early_terminate import make_sweep_pruner
from diffsearch.sweeps.function_trial import FunctionTrial, importable_name, load_objective, objective_name
from diffsearch.sweeps.gpu_slots import gpu_slot, parse_gpus
from diffsearch.sweeps.function_trial import EXCEPTION
from diffsearch.sweeps.program_trial import BAD_REPORT, EXIT, NEVER_REPORTED, ProgramTrial
from diffsearch.sweeps.schema import GRID, Sweep, parse_sweep, plain, read_sweep_file

PYTHON_METRIC = "value"  # what diffsearch.search calls the objective's return value

# Budgets that forgive a broken program. A run is one `diffsearch sweep` (or diffsearch.search) command; the
# study remembers where the current run started. Trials of earlier runs that failed for the program's own
# reasons (it exited with an error, reported nothing, reported garbage, or the function raised) do not count
# against the budget: after a fix, the same command runs their values again. Timeouts and diverged values
# (not finite) do count: they say something about the values tried.
PROGRAM_FAULTS = (EXIT, NEVER_REPORTED, BAD_REPORT, EXCEPTION)
RUN_START_ATTR = "run_first_trial"  # the number of the current run's first trial
HALTED_ATTR = "halted"  # why the current run stopped before its budget (one line), or None
RERUN_ATTR = "rerun_of"  # on a trial: the earlier failed trial whose values it runs again
SAME_FAILURES = 3  # the first this many trials of a run failing the same way stop it


@dataclass
class SweepOptions:
    file: str | None = None  # the sweep file (``diffsearch sweep sweep.yaml``)
    config: dict[str, Any] | None = None  # or the sweep as a mapping (the Python API; a study's stored sweep)
    objective: Any = None  # Python API: a function or "module:function" instead of a program
    where: str | None = None  # how messages name ``config`` (default: the file)
    searcher: str | None = None  # overrides the file's method
    trials: int | None = None  # overrides the file's trials / run_cap
    workers: int = 1
    gpus: Any = None  # "0,1": worker i runs its programs on gpus[i % len(gpus)]
    trial_timeout: float | None = None  # seconds; a program running longer fails its trial
    seed: int = 0
    study: str | None = None  # default: the file's name, else sweep-<program>-<method>
    storage: str | None = None  # default: sqlite:///<out>/study.db
    out: str | None = None  # default: runs/<study>
    heartbeat: int | None = DEFAULT_HEARTBEAT_SECONDS
    sweep: Sweep | None = field(default=None, repr=False)  # set by resolved()

    def resolved(self) -> "SweepOptions":
        """Read and check everything before any study is opened; one UsageError line for anything wrong."""
        o = replace(self)
        if o.workers < 1:
            raise UsageError(f"--workers must be at least 1 (got {o.workers})")
        if o.heartbeat is not None and o.heartbeat < 1:
            raise UsageError(f"--heartbeat must be at least 1 second (got {o.heartbeat})")
        if o.trial_timeout is not None and not o.trial_timeout > 0:
            raise UsageError(f"--trial-timeout must be above 0 seconds (got {o.trial_timeout})")
        if o.trials is not None and o.trials < 1:
            raise UsageError(f"--trials must be at least 1 (got {o.trials})")
        o.gpus = parse_gpus(o.gpus)
        if (o.file is None) == (o.config is None):
            raise UsageError("give a sweep file or a sweep mapping (one of them)")
        if o.file is not None:
            config, where = read_sweep_file(o.file), str(o.file)
        else:
            config, where = o.config, o.where or "sweep"
        config = plain(config, where)
        o.sweep = parse_sweep(config, where, o.searcher, o.trials, runs_program=o.objective is None)
        o.config, o.file = o.sweep.config, None
        if o.objective is not None:
            if o.workers > 1 or isinstance(o.objective, str):  # other processes import it by name
                o.objective = importable_name(o.objective)
            elif not callable(o.objective):
                raise UsageError(f"objective: expected a function or 'module:function', got {o.objective!r}")
        if o.study is None:
            named = config.get("name") if isinstance(config.get("name"), str) else None
            stem = Path(o.sweep.program).stem if o.sweep.program else _function_stem(o.objective)
            o.study = named or f"{'sweep' if o.objective is None else 'search'}-{stem}-{o.sweep.config['method']}"
        o.out, o.storage = run_location(o.study, o.out, o.storage)
        return o


def _function_stem(objective: Any) -> str:
    return objective_name(objective).rpartition(":")[2].rpartition(".")[2].replace("<", "").replace(">", "")


def study_attrs(o: SweepOptions) -> dict[str, Any]:
    s = o.sweep
    objective = None if o.objective is None else objective_name(o.objective)
    return {
        "job": "sweep",
        "sweep": s.config,
        "program": s.program,
        "command": list(s.command),
        "objective": objective,
        "objective_importable": isinstance(o.objective, str),
        "metric": s.metric,
        "goal": s.goal,
        "parameters": s.config["parameters"],
        "method": s.method,
        "trials": s.trials,
        "seed": o.seed,
        "trial_timeout": o.trial_timeout,
    }


def make_sweep_sampler(sweep: Sweep, seed: int) -> optuna.samplers.BaseSampler:
    if sweep.method == GRID:
        return optuna.samplers.GridSampler(sweep.space.grid(sweep.where), seed=seed)
    return make_sampler(sweep.method, seed)


def run_worker(
    o: SweepOptions, worker: int = 0, on_trial_end: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> optuna.Study:
    """Join the study and run trials until it holds its budget (or the run stops early); the study."""
    storage = open_storage(o.storage, o.heartbeat)
    seed = worker_sampler_seed(storage, o.study, study_attrs(o), SweepJob.identity, o.seed, worker)
    study = create_or_load_study(
        storage,
        o.study,
        study_attrs(o),
        SweepJob.identity,
        sampler=make_sweep_sampler(o.sweep, seed),
        pruner=make_sweep_pruner(o.sweep.early_terminate),
    )
    budget = Budget(study, o.sweep)

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        budget.check_halt(trial)
        if on_trial_end is not None:
            on_trial_end(study, trial)

    with gpu_slot(o.gpus, o.out) as cuda_visible_devices, ExitStack() as held:
        if o.objective is None:  # held: the warm interpreter, when the sweep preloads modules
            evaluate = held.enter_context(ProgramTrial(o.sweep, Path(o.out), o.trial_timeout, cuda_visible_devices))
        else:
            function = load_objective(o.objective) if isinstance(o.objective, str) else o.objective
            evaluate = FunctionTrial(function, o.sweep.space)
        run_to_budget(BudgetLoop(study, o.sweep.trials, evaluate, budget.counts, budget.halted), after_trial)
    return study


class Budget:
    """What counts against a sweep's budget in the current run, and when the run stops before it."""

    def __init__(self, study: optuna.Study, sweep: Sweep):
        self.study, self.sweep = study, sweep
        self.first = study.user_attrs.get(RUN_START_ATTR, 0)

    def forgiven(self, trial: FrozenTrial) -> bool:
        """A trial of an earlier run that failed for the program's own reasons: it does not count now."""
        return (
            trial.number < self.first
            and trial.state == TrialState.FAIL
            and trial.user_attrs.get("fail_kind") in PROGRAM_FAULTS
        )

    def counts(self, trial: FrozenTrial) -> bool:
        return is_done(trial) and not self.forgiven(trial)

    def counted(self) -> list[FrozenTrial]:
        return [t for t in self.study.get_trials(deepcopy=False) if self.counts(t)]

    def halted(self, study: optuna.Study) -> str | None:
        return study.user_attrs.get(HALTED_ATTR)

    def check_halt(self, trial: FrozenTrial) -> None:
        """After a trial: stop the run when its first trials all failed the same way, or the target is met."""
        if self.halted(self.study) is not None:
            return
        reason = self._target_reached(trial) or self._same_failures()
        if reason is not None:
            self.study.set_user_attr(HALTED_ATTR, reason)

    def _target_reached(self, trial: FrozenTrial) -> str | None:
        target = self.sweep.target
        if target is None or trial.state != TrialState.COMPLETE or trial.value is None:
            return None
        reached = trial.value >= target if self.sweep.goal == "maximize" else trial.value <= target
        if not reached:
            return None
        return f"stopped: trial {trial.number} reached metric.target {target:g} ({self.sweep.metric} {trial.value:.6g})"

    def _same_failures(self) -> str | None:
        ours = sorted((t for t in self.counted() if t.number >= self.first), key=lambda t: t.number)
        first = ours[: min(SAME_FAILURES, self.sweep.trials)]
        if len(first) < SAME_FAILURES or len(self.counted()) >= self.sweep.trials:
            return None  # too few to judge, or nothing left to save
        ways = {
            (t.user_attrs.get("fail_kind"), t.user_attrs.get("fail_reason"))
            for t in first
            if t.state == TrialState.FAIL
        }
        if len(ways) != 1 or any(t.state != TrialState.FAIL for t in first):
            return None
        kind, reason = ways.pop()
        if kind not in PROGRAM_FAULTS:
            return None
        return (
            f"stopped early: the first {len(first)} trials failed the same way ({reason}); fix the program and "
            "run the same command again: trials that failed this way do not count against the budget"
        )


def start_run(study: optuna.Study) -> list[int]:
    """A new run of the sweep starts: it begins after the trials there are, is not halted, and queues the
    values of earlier trials that failed for the program's own reasons to run again first. Their numbers."""
    trials = study.get_trials(deepcopy=False)
    study.set_user_attr(RUN_START_ATTR, len(trials))
    study.set_user_attr(HALTED_ATTR, None)
    budget = Budget(study, None)  # forgiven() needs no sweep
    rerun = {t.user_attrs.get(RERUN_ATTR) for t in trials}
    queued = []
    for trial in trials:
        if budget.forgiven(trial) and trial.number not in rerun:
            study.enqueue_trial(trial.params, user_attrs={RERUN_ATTR: trial.number})
            queued.append(trial.number)
    return queued


class SweepJob:
    """``diffsearch sweep`` and ``diffsearch.search``: one study, trials proposed by an Optuna sampler."""

    name = "sweep"
    # values are comparable only for the same program (or function), command, metric and space
    identity = ("job", "program", "command", "objective", "metric", "goal", "parameters")
    renamed: dict[str, str] = {}

    def prepare(self, o: SweepOptions) -> list[int]:
        """Create the study with the sweep's direction (the ledger creates minimising studies), or check it;
        start this run (``start_run``). The numbers of earlier failed trials queued to run again."""
        storage = open_storage(o.storage)
        direction = StudyDirection.MAXIMIZE if o.sweep.goal == "maximize" else StudyDirection.MINIMIZE
        existing = load_study(storage, o.study)
        if existing is None:
            optuna.create_study(storage=storage, study_name=o.study, direction=direction)
        elif existing.direction != direction:
            made = existing.direction.name.lower()
            raise UsageError(
                f"study {o.study!r} was made to {made} its value, not to {o.sweep.goal} it: "
                "use another --study name (or another --out)"
            )
        # checked (a study of another sweep is refused here, before anything is written) before the run starts
        study = create_or_load_study(storage, o.study, study_attrs(o), self.identity, self.renamed)
        return start_run(study)

    def studies(self, o: SweepOptions) -> dict[str, dict[str, Any]]:
        return {o.study: study_attrs(o)}

    def serve(self, o: SweepOptions) -> int:
        study = run_worker(o, worker=os.getpid())
        return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == worker_id())

    def worker_options(self, study: optuna.Study, w: WorkerSettings) -> SweepOptions:
        attrs = study.user_attrs
        if attrs.get("objective") and not attrs.get("objective_importable"):
            raise UsageError(
                f"study {w.study!r} calls the Python function {attrs['objective']}, which another "
                "process cannot import: run diffsearch.search with the function's 'module:function'"
            )
        if w.trials is not None:
            study.set_user_attr("trials", w.trials)
        return SweepOptions(
            config=attrs["sweep"],
            objective=attrs.get("objective"),
            where=f"study {w.study}",
            trials=w.trials or attrs.get("trials"),
            seed=attrs.get("seed", 0),
            trial_timeout=attrs.get("trial_timeout"),
            study=w.study,
            storage=w.storage,
            out=w.out,
            heartbeat=w.heartbeat,
        ).resolved()

    def search(self, run: Run) -> dict[str, Any]:
        o, sweep = run.options, run.options.sweep
        study = run.studies[o.study]
        what = f"the program {sweep.program}" if o.objective is None else f"the function {objective_name(o.objective)}"
        metric = sweep.metric or "every combination (no metric)"
        explain_study(
            study,
            metric,
            f"**{metric}** ({sweep.goal}) of {what}, one trial per "
            f"configuration proposed by **{sweep.method}** (`diffsearch sweep`).",
        )
        for note in sweep.notes:
            run.log(note)
        if run.prepared:
            run.log(rerun_line(run.prepared))
        budget = Budget(study, sweep)

        def on_trial_end(study: optuna.Study, trial: FrozenTrial | None) -> None:
            if trial is not None and "surplus" not in trial.user_attrs:
                run.log(describe_trial(trial, sweep.metric))
            best = _best(study, sweep)
            run.report("trials", len(budget.counted()), sweep.trials, best.value if best else None)

        study = run_worker(o, on_trial_end=on_trial_end)
        on_trial_end(study, None)  # the bar's last step: other workers' last trials ended after ours
        results = summarise(study, o)
        if results["halted"]:
            run.log(results["halted"])
        return results


def rerun_line(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10]) + (", ..." if len(numbers) > 10 else "")
    return (
        f"{len(numbers)} trial(s) of an earlier run failed for the program's own reasons (trials {shown}): "
        "they do not count against the budget, and their values run again first"
    )


JOB = SweepJob()


def run_sweep(
    options: SweepOptions, progress: ProgressFn | None = None, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run the sweep to its budget (resuming its study) and write results.json to ``out``; the results."""
    return run_job(JOB, options, progress, log)


def _best(study: optuna.Study, sweep: Sweep) -> FrozenTrial | None:
    return None if sweep.metric is None else best_trial(study)  # a grid without a metric ranks nothing


def describe_trial(trial: FrozenTrial, metric: str | None) -> str:
    """One line for the log: the trial's value, where it was pruned, or why it failed."""
    if trial.state == TrialState.COMPLETE:
        if metric is None:
            return f"  trial {trial.number}: ran to its end"
        return f"  trial {trial.number}: {metric} {trial.value:.6g}"
    if trial.state == TrialState.PRUNED:
        return f"  trial {trial.number}: pruned at step {trial.user_attrs.get('pruned_at_step')}"
    return f"  trial {trial.number}: failed: {trial.user_attrs.get('fail_reason', 'cut short')}"


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    reason = attrs.get("fail_reason")
    if trial.state == TrialState.FAIL and reason is None:
        reason = attrs.get(LOST_ATTR, "cut short (Ctrl-C or a lost worker); not counted, not repeated")
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": attrs.get("arguments", trial.params),
        "fail_reason": reason,
        "fail_kind": attrs.get("fail_kind"),
        "pruned_at_step": attrs.get("pruned_at_step"),
        "seconds": attrs.get("seconds"),
        "trial_dir": attrs.get("trial_dir"),
        "metric_source": attrs.get("metric_source"),
        RERUN_ATTR: attrs.get(RERUN_ATTR),
        "stdout_log": attrs.get("stdout_log"),
        "stderr_log": attrs.get("stderr_log"),
        "worker": attrs.get("worker"),
        "cuda_visible_devices": attrs.get("cuda_visible_devices"),
    }


def summarise(study: optuna.Study, o: SweepOptions) -> dict[str, Any]:
    sweep = o.sweep
    trials = [
        t for t in study.get_trials(deepcopy=False) if "surplus" not in t.user_attrs and t.state != TrialState.WAITING
    ]
    records = [trial_record(t) for t in trials]
    best = _best(study, sweep)
    budget = Budget(study, sweep)
    counted = budget.counted()
    states = Counter(t.state for t in counted)
    options = {f.name: getattr(o, f.name) for f in fields(o) if f.name not in ("sweep", "config", "objective")}
    halted = study.user_attrs.get(HALTED_ATTR)
    results: dict[str, Any] = {
        "job": "sweep",
        "metric": sweep.metric,
        "goal": sweep.goal,
        "method": sweep.method,
        "program": sweep.program,
        "objective": None if o.objective is None else objective_name(o.objective),
        "sweep": sweep.config,
        "options": options,
        "budget": sweep.trials,
        "counts": {
            "complete": states.get(TrialState.COMPLETE, 0),
            "pruned": states.get(TrialState.PRUNED, 0),
            "failed": states.get(TrialState.FAIL, 0),
            "cut_short": sum(1 for t in trials if t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs),
            # failed in an earlier run for the program's own reasons: not counted, their values ran again
            "not_counted": sum(1 for t in trials if budget.forgiven(t)),
        },
        "best": trial_record(best) if best else None,
        "halted": halted,
        "trials": records,
        "logs": str(Path(o.out) / "trials") if o.objective is None else None,
        "importance": importance_or_none(study) if best else None,
        "note": _note(counted, sweep.metric, o, halted),
    }
    return results


def _note(counted: list[FrozenTrial], metric: str | None, o: SweepOptions, halted: str | None) -> str | None:
    """Said at the end when no trial completed (or nothing is ranked): why, in one line."""
    if metric is None:
        return "no metric: every combination ran, none is ranked (the trials' logs are in their folders)"
    if not counted or any(t.state == TrialState.COMPLETE for t in counted):
        return None
    failed = [t for t in counted if t.state == TrialState.FAIL]
    if failed and len(failed) == len(counted) and all(t.user_attrs.get("fail_kind") == NEVER_REPORTED for t in failed):
        return (
            f"no trial reported metric {metric!r}; the first: {failed[0].user_attrs.get('fail_reason')} "
            f"(see what the program printed in {failed[0].user_attrs.get('stdout_log')})"
        )
    if halted:
        return halted
    if failed and len(failed) == len(counted):
        return f"every trial failed; the first: {failed[0].user_attrs.get('fail_reason')}"
    return "no trial completed (every trial was pruned or failed)"
