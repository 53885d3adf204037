"""``diffsearch optimizer``: discover an update rule for diffusion training (ENOS, Wang et al., NeurIPS 2022).

Python use::

    from diffsearch.jobs.optimizer import OptimizerOptions, run_optimizer
    results = run_optimizer(OptimizerOptions(task="toy2d-moons", searcher="mct", budget=128))
    results["leaderboard"][0]["expr"]   # -> use it with diffsearch.optimizers.from_expr(expr, params, lr=...)

Every training of a rule is an Optuna trial (params: the program's tokens; user attrs: role, expr,
formula, key, lr, the lr grid's proxy losses, the loss curve), so a rerun replays the search from the
storage without training anything twice.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import UsageError
from diffsearch.jobs import notes
from diffsearch.jobs.base import ProgressFn, Run, WorkerSettings, run_job
from diffsearch.jobs.optimizer_ledger import LedgerEvaluator, RuleTrialRunner
from diffsearch.ledger import DEFAULT_HEARTBEAT_SECONDS, load_study, open_storage, run_location
from diffsearch.ledger.trial_timeout import TIME_LIMIT_ATTR, check_trial_timeout
from diffsearch.optimizers.rules import HAND_DESIGNED, MUON_RULE, baseline, baseline_names
from diffsearch.run_files import save_figure
from diffsearch.searchers.tree.registry import TreeSearchSettings, get_tree_searcher
from diffsearch.spaces.update_rule_space import UpdateRuleSpace, formula
from diffsearch.spaces.update_rules import Program, parse, to_text
from diffsearch.tasks.optimizer_tasks import SCORES, TASKS, DiffusionTrainingTask, make_task, parse_lr_grid
from diffsearch.tasks.user_task import is_user_task, load_user_task

CURVE_BASELINES = ("Adam", "AdamW", "Lion", "Muon")
PROMOTE_KEEP = 4  # each promotion rung keeps the best quarter of the rules it is given (at least --top)


@dataclass
class OptimizerOptions:
    task: str = "toy2d-moons"  # a TASKS name, or module:factory for your own (diffsearch.tasks.user_task)
    searcher: str = "mct"
    budget: int = 128
    levels: int = 4  # mct: levels of the traversal (budget / levels samples each)
    max_length: int = 10  # tokens per program (the super-tree's depth)
    transfer: str | None = None  # e.g. "digits" or module:factory: re-train the top rules and the baselines there
    top: int = 3  # rules shown, re-trained on the transfer task and plotted
    baselines: tuple[str, ...] = baseline_names()  # hand-designed rules and torch baselines (Muon)
    seed: int = 0
    scale: float = 1.0  # multiplies the tasks' step counts (tests: small; GPU: large)
    score: str = "loss"  # or "prdc" on the 2-D tasks (SCORES)
    lr_grid: str = "decade"  # lrs of the proxy runs: a LR_GRIDS name or a comma list
    start_from: tuple[str, ...] = ()  # evolution: hand-designed rules (their programs) in the first population
    promote: tuple[float, ...] = ()  # e.g. (4, 10): successive halving over training length, see _promote
    matrix_ops: bool = False  # grow the matrix operators (orth, rownorm, colnorm) and Muon's momentum mn
    study: str | None = None  # default: optimizer-<task>-<searcher>
    storage: str | None = None  # default: sqlite:///<out>/study.db
    out: str | None = None  # default: runs/<study>
    workers: int = 1  # processes training rules on this machine, this one included (--workers)
    heartbeat: int = DEFAULT_HEARTBEAT_SECONDS  # a trial silent for 3 beats is re-run by another worker
    trial_timeout: float | None = None  # seconds; a rule trained longer fails its trial with the reason

    def resolved(self) -> "OptimizerOptions":
        o = OptimizerOptions(**asdict(self))
        o.baselines = tuple(o.baselines)
        get_tree_searcher(o.searcher)
        for name in (o.task, o.transfer):
            if is_user_task(name):
                load_user_task(name)  # import it and check its protocol now, before anything is written
            elif name is not None and name not in TASKS:
                raise UsageError(
                    f"unknown task {name!r}; known: {', '.join(TASKS)}, or module:factory for a task of your own"
                )
        if is_user_task(o.task) and (o.score != "loss" or o.scale != 1.0):
            raise UsageError(
                "--score and --scale apply to the built-in tasks; a task of your own "
                "(module:factory) is as long as it trains and scored by what its train() returns"
            )
        if o.budget < 1 or o.levels < 1 or o.top < 0:
            raise UsageError("--budget and --levels must be at least 1, --top at least 0")
        if o.workers < 1 or o.heartbeat < 1:
            raise UsageError("--workers and --heartbeat must be at least 1")
        check_trial_timeout(o.trial_timeout)
        if o.max_length < 1 or not 0 < o.scale <= 100:
            raise UsageError("--max-length must be at least 1 and --scale in (0, 100]")
        o.start_from = tuple(o.start_from)
        if o.start_from and o.searcher != "evolution":
            raise UsageError("--start-from needs --searcher evolution (the other searchers do not breed rules)")
        unknown = [b for b in o.baselines if b not in baseline_names()]
        unknown += [b for b in o.start_from if b not in HAND_DESIGNED and b != "Muon"]  # evolution breeds programs
        if "Muon" in o.start_from and not o.matrix_ops:
            raise UsageError("--start-from Muon starts from orth(mn), Muon's matrix rule: it needs --matrix-ops")
        if unknown:
            known = baseline_names() if unknown[0] in o.baselines else tuple(HAND_DESIGNED)
            raise UsageError(f"unknown hand-designed optimizer {unknown[0]!r}; known: {', '.join(known)}")
        o.promote = tuple(float(f) for f in o.promote)
        if o.promote and (
            not all(math.isfinite(f) for f in o.promote)
            or list(o.promote) != sorted(set(o.promote))
            or o.promote[0] <= 1
            or o.scale * o.promote[-1] > 100
        ):
            raise UsageError(
                "--promote takes increasing length factors above 1 (e.g. 4,10), with --scale x the largest at most 100"
            )
        if o.promote and is_user_task(o.task):
            raise UsageError(
                "--promote lengthens the built-in tasks; a task of your own (module:factory) sets its own length"
            )
        if o.score not in SCORES:
            raise UsageError(f"unknown --score {o.score!r}; known: {', '.join(SCORES)}")
        grid = parse_lr_grid(o.lr_grid)
        o.study = o.study or (
            f"optimizer-{o.task.replace(':', '-')}-{o.searcher}"
            + (f"-{o.score}" if o.score != "loss" else "")
            + ("" if o.lr_grid == "decade" else "-lr-" + "_".join(f"{v:g}" for v in grid))
            + ("-matrix" if o.matrix_ops else "")
        )
        o.out, o.storage = run_location(o.study, o.out, o.storage)
        return o


class OptimizerJob:
    """``diffsearch optimizer``: one study holds every training of a rule (search, baselines, transfer),
    each a waiting trial that any worker trains."""

    name = "optimizer"
    identity = ("job", "space", "dataset", "scale", "score", "lr_grid")
    renamed = {"scale": "epochs"}  # studies before 0.2 stored the step scale as "epochs"

    def studies(self, o: OptimizerOptions) -> dict[str, dict[str, Any]]:
        return {
            o.study: {
                "job": "optimizer",
                "space": UpdateRuleSpace.name,
                "dataset": o.task,
                "scale": o.scale,
                "searcher": o.searcher,
                "budget": o.budget,
                "seed": o.seed,
                "max_length": o.max_length,
                "score": o.score,
                "lr_grid": list(parse_lr_grid(o.lr_grid)),
                TIME_LIMIT_ATTR: o.trial_timeout,
                **({"matrix_ops": True} if o.matrix_ops else {}),
            }
        }

    def prepare(self, o: OptimizerOptions) -> DiffusionTrainingTask:
        return make_task(o.task, o.scale, o.score, parse_lr_grid(o.lr_grid))

    def search(self, run: Run) -> dict[str, Any]:
        o, task = run.options, run.prepared
        notes.explain(run.studies[o.study], notes.optimizer_study(o))  # what the study says in optuna-dashboard
        results = _search_and_compare(
            o, run.studies[o.study], UpdateRuleSpace(max_length=o.max_length, matrix_ops=o.matrix_ops), task, run
        )
        results["plot"] = _plot(results["leaderboard"], o, run.out)
        notes.attach_images([run.studies[o.study]], [results["plot"]], run.out)
        return results

    def serve(self, o: OptimizerOptions) -> int:
        study = load_study(open_storage(o.storage, o.heartbeat), o.study)
        return RuleTrialRunner(study, UpdateRuleSpace(max_length=o.max_length, matrix_ops=o.matrix_ops)).serve()

    def worker_options(self, study: optuna.Study, w: WorkerSettings) -> OptimizerOptions:
        a = study.user_attrs
        return OptimizerOptions(
            task=a["dataset"],
            searcher=a.get("searcher", "mct"),
            max_length=int(a.get("max_length", 10)),
            score=a.get("score", "loss"),
            matrix_ops=bool(a.get("matrix_ops", False)),
            study=w.study,
            storage=w.storage,
            out=w.out,
            heartbeat=w.heartbeat,
        ).resolved()


JOB = OptimizerJob()


def run_optimizer(
    options: OptimizerOptions, progress: ProgressFn | None = None, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Search, train the hand-designed baselines, optionally transfer, and write results.json + PNG."""
    return run_job(JOB, options, progress, log)


class _CountedEvaluator:
    """What the searchers call: trains through the ledger and moves the progress bar per finished trial."""

    def __init__(self, evaluator: LedgerEvaluator, budget: int, run: Run):
        self.evaluator, self.budget, self.run = evaluator, budget, run
        self.used, self.best = 0, math.inf
        evaluator.queue.on_trial = self._tick  # each finished search trial moves the bar

    def _tick(self, trial: FrozenTrial) -> None:
        self.used += 1
        if trial.state == TrialState.COMPLETE:
            self.best = min(self.best, trial.value)
        self.run.report(
            "candidates", min(self.used, self.budget), self.budget, self.best if math.isfinite(self.best) else None
        )

    def many(self, programs: list[Program]) -> list[float]:
        before = set(self.evaluator.done)
        scores = self.evaluator.many(programs)
        for key in {(self.evaluator.space.key(p), 0.0) for p in programs} & before:  # replayed: no callback
            self._tick(self.evaluator.done[key])
        return scores

    def __call__(self, program: Program) -> float:
        return self.many([program])[0]


def _search_and_compare(
    o: OptimizerOptions, study: optuna.Study, space: UpdateRuleSpace, task: DiffusionTrainingTask, run: Run
) -> dict[str, Any]:
    evaluator = LedgerEvaluator(study, space, task, "search", o.seed)
    counted = _CountedEvaluator(evaluator, o.budget, run)
    search_start = time.perf_counter()
    results: dict[str, Any] = {
        "job": "optimizer",
        "options": asdict(o),
        "initial_loss": task.initial_loss,
        "initial_score": task.initial_score,
    }
    settings = TreeSearchSettings(
        levels=o.levels,
        threshold=task.initial_score,
        batch=o.workers,
        start=[_start_program(name) for name in o.start_from],
    )
    tree_budget, extras = get_tree_searcher(o.searcher).value(space, counted, o.budget, o.seed, settings)
    results.update(extras)
    search_seconds = time.perf_counter() - search_start
    results["search"] = {**tree_budget.stats(), "replayed_from_storage": evaluator.replayed, "seconds": search_seconds}

    # a rule the search started from is a baseline, not a discovery
    started = {space.key(_start_program(name)) for name in o.start_from}
    scores = tree_budget.scores
    ranked = [
        (key, program)
        for key, program in sorted(tree_budget.programs.items(), key=lambda kp: scores[kp[0]])
        if key not in started and math.isfinite(scores[key])
    ]
    grid = parse_lr_grid(o.lr_grid)
    long_scale = o.scale * (o.promote[-1] if o.promote else 1.0)
    if o.promote:
        ranked, results["promotion"] = _promote(o, study, space, ranked, run)
    rules = [(f"rule {i + 1}", program, 0.0) for i, (_, program) in enumerate(ranked[: max(o.top, 1)])]
    hand = [(name, *baseline(name)) for name in o.baselines]
    if o.baselines:
        run.log(f"training {len(o.baselines)} hand-designed optimizers on {o.task}")
    short_trials = evaluator.trials([(program, wd, None) for _, program, wd in rules])
    short_hand = LedgerEvaluator(study, space, task, "baseline", o.seed).trials(
        [(program, wd, name) for name, program, wd in hand]
    )
    if o.promote:  # the leaderboard's score is the longest run's; the search length's is a column beside it
        long_task = make_task(o.task, long_scale, o.score, grid)
        long_rules = LedgerEvaluator(study, space, long_task, "promote", o.seed, scale=long_scale).trials(
            [(program, wd, None) for _, program, wd in rules]
        )
        long_hand = LedgerEvaluator(study, space, long_task, "baseline", o.seed, scale=long_scale).trials(
            [(program, wd, name) for name, program, wd in hand]
        )
        rows = [
            {
                **_row(name, program, wd, t),
                "short_score": short.value,
                "steps": long_task.steps,
                "short_steps": task.steps,
            }
            for (name, program, wd), t, short in zip(rules + hand, long_rules + long_hand, short_trials + short_hand)
        ]
    else:
        rows = [_row(name, program, wd, t) for (name, program, wd), t in zip(rules + hand, short_trials + short_hand)]
    if o.transfer:
        run.log(f"transfer: training the top rules and the baselines on {o.transfer}")
        transfer_task = make_task(o.transfer, long_scale, o.score, grid)
        transfer_eval = LedgerEvaluator(
            study, space, transfer_task, "transfer", o.seed, scale=long_scale if o.promote else None
        )
        transferred = transfer_eval.trials([(program, wd, name) for name, program, wd in rules + hand])
        for row, t in zip(rows, transferred):
            row["transfer_score"], row["transfer_lr"] = t.value, t.user_attrs.get("lr")
            row["transfer_curve"] = t.user_attrs.get("curve", [])
    rows.sort(key=lambda r: (r["score"] is None, r["score"] if r["score"] is not None else 0))
    results["leaderboard"] = rows
    results["best"] = next((r for r in rows if r["kind"] == "rule"), None)
    results["trials"] = [_trial_record(t) for t in study.get_trials(deepcopy=False)]
    return results


def _start_program(name: str) -> Program:
    """A hand-designed rule's program; "Muon" is its matrix rule orth(mn) (the AdamW half is no program)."""
    return parse(MUON_RULE[0] if name == "Muon" else HAND_DESIGNED[name][0])


def _promote(
    o: OptimizerOptions, study: optuna.Study, space: UpdateRuleSpace, ranked: list[tuple[str, Program]], run: Run
) -> tuple[list[tuple[str, Program]], list[dict[str, Any]]]:
    """Successive halving over training length: the rules ranked by the search (at the task's length) go to
    rungs ``--scale x f`` for each factor f of ``--promote``; each rung trains the best quarter (at least
    --top) of the rules the last rung ranked, and re-ranks them by this longer run. A rule is thus judged by
    its longest training: what wins the first few hundred steps need not win at ten times the length."""
    rungs, grid = [], parse_lr_grid(o.lr_grid)
    for factor in o.promote:
        ranked = ranked[: max(o.top, 1, math.ceil(len(ranked) / PROMOTE_KEEP))]
        scale = o.scale * factor
        task = make_task(o.task, scale, o.score, grid)
        run.log(f"promotion: training the best {len(ranked)} rules for {task.steps} steps ({factor:g}x)")
        trials = LedgerEvaluator(study, space, task, "promote", o.seed, scale=scale).trials(
            [(program, 0.0, None) for _, program in ranked]
        )
        values = [t.value if t.state == TrialState.COMPLETE else math.inf for t in trials]
        order = sorted(range(len(ranked)), key=lambda i: values[i])
        ranked = [ranked[i] for i in order]
        rungs.append(
            {
                "factor": factor,
                "steps": task.steps,
                "trained": len(ranked),
                "best": to_text(ranked[0][1]) if ranked else None,
                "scores": [values[i] if math.isfinite(values[i]) else None for i in order],
            }
        )
    return ranked, rungs


def _row(name: str, program: Program | str, wd: float, t: FrozenTrial) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "rule" if name.startswith("rule") else "hand-designed",
        "expr": t.user_attrs.get("formula") if isinstance(program, str) else to_text(program),
        "formula": t.user_attrs.get("formula") if isinstance(program, str) else formula(program),
        "weight_decay": wd,
        "trial": t.number,
        "score": t.value,
        "lr": t.user_attrs.get("lr"),
        "curve": t.user_attrs.get("curve", []),
        "fail_reason": t.user_attrs.get("fail_reason"),
    }


def _trial_record(t: FrozenTrial) -> dict[str, Any]:
    a = t.user_attrs
    return {
        "number": t.number,
        "state": t.state.name,
        "score": t.value,
        "role": a.get("role"),
        "task": a.get("task"),
        "expr": a.get("expr"),
        "formula": a.get("formula"),
        "lr": a.get("lr"),
        "seconds": a.get("seconds"),
        "fail_reason": a.get("fail_reason"),
    }


def _plot(rows: list[dict[str, Any]], o: OptimizerOptions, out: Path) -> str | None:
    """Loss curves (fixed batch) of the best rules against Adam, AdamW and Lion, per task."""
    from diffsearch.plots import plt

    shown = [r for r in rows if r["kind"] == "rule"][: o.top] + [r for r in rows if r["name"] in CURVE_BASELINES]
    panels = [("curve", o.task)] + ([("transfer_curve", o.transfer)] if o.transfer else [])
    if not any(r.get(k) for r in shown for k, _ in panels):
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (key, task_name) in zip(axes[0], panels):
        for r in shown:
            curve = r.get(key) or []
            if curve:
                style = "-" if r["kind"] == "rule" else "--"
                label = f"{r['name']}: {r['expr']}" if r["kind"] == "rule" else r["name"]
                ax.plot(range(1, len(curve) + 1), curve, style, label=label[:60])
        ax.set_title(f"{task_name}: denoising loss on a fixed batch")
        ax.set_xlabel("checkpoint (every 10 training steps)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "loss_curves.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return str(path)
