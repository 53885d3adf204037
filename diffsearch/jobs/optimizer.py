"""``diffsearch optimizer``: discover an update rule for diffusion training (seed 004, chapter 3).

Python use::

    from diffsearch.jobs.optimizer import OptimizerOptions, run_optimizer
    results = run_optimizer(OptimizerOptions(task="toy2d-moons", searcher="mct", budget=128))
    results["leaderboard"][0]["expr"]   # -> use it with diffsearch.optim.from_expr(expr, params, lr=...)

Every training of a rule is an Optuna trial (params: the program's tokens; user attrs: role, expr,
formula, key, lr, the lr grid's proxy losses, the loss curve), so a rerun replays the search from the
storage without training anything twice.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import UsageError
from diffsearch.ledger import create_or_load_study, is_done, open_storage, run_location
from diffsearch.optim import HAND_DESIGNED
from diffsearch.spaces.update_rule_space import UpdateRuleSpace, formula
from diffsearch.spaces.update_rules import Program, parse, to_text
from diffsearch.tasks.optimizer_tasks import TASKS, DiffusionTrainingTask, make_task

TREE_SEARCHERS = {
    "mct": "Monte Carlo tree traversal: levels x samples, best mean child expanded (seed 004)",
    "random": "random programs grown top-down",
    "evolution": "deap gp: tournament, one-point crossover, subtree mutation",
}
CURVE_BASELINES = ("Adam", "AdamW", "Lion")


@dataclass
class OptimizerOptions:
    task: str = "toy2d-moons"
    searcher: str = "mct"
    budget: int = 128
    levels: int = 4                   # mct: levels of the traversal (budget / levels samples each)
    max_length: int = 10              # tokens per program (the super-tree's depth)
    transfer: str | None = None       # e.g. "digits": re-train the top rules and the baselines there
    top: int = 3                      # rules shown, re-trained on the transfer task and plotted
    baselines: tuple[str, ...] = tuple(HAND_DESIGNED)
    seed: int = 0
    scale: float = 1.0                # multiplies the tasks' step counts (tests: small; GPU: large)
    study: str | None = None          # default: optimizer-<task>-<searcher>
    storage: str | None = None        # default: sqlite:///<out>/study.db
    out: str | None = None            # default: runs/<study>

    def resolved(self) -> "OptimizerOptions":
        o = OptimizerOptions(**asdict(self))
        o.baselines = tuple(o.baselines)
        if o.searcher not in TREE_SEARCHERS:
            raise UsageError(f"unknown searcher {o.searcher!r}; known: {', '.join(TREE_SEARCHERS)}")
        for name in (o.task, o.transfer):
            if name is not None and name not in TASKS:
                raise UsageError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
        if o.budget < 1 or o.levels < 1 or o.top < 0:
            raise UsageError("--budget and --levels must be at least 1, --top at least 0")
        if o.max_length < 1 or not 0 < o.scale <= 100:
            raise UsageError("--max-length must be at least 1 and --scale in (0, 100]")
        unknown = [b for b in o.baselines if b not in HAND_DESIGNED]
        if unknown:
            raise UsageError(f"unknown baseline {unknown[0]!r}; known: {', '.join(HAND_DESIGNED)}")
        o.study = o.study or f"optimizer-{o.task}-{o.searcher}"
        o.out, o.storage = run_location(o.study, o.out, o.storage)
        return o


class LedgerEvaluator:
    """Train a program on a task as an Optuna trial; a program already in the study is not trained again."""

    def __init__(self, study: optuna.Study, space: UpdateRuleSpace, task: DiffusionTrainingTask, role: str,
                 seed: int, on_trial: Callable[[FrozenTrial], None] | None = None):
        self.study, self.space, self.task, self.role, self.seed, self.on_trial = study, space, task, role, seed, on_trial
        self.done: dict[tuple, FrozenTrial] = {}
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs  # a training counts for the same role, task and training seed only
            if is_done(t) and a.get("role") == role and a.get("task") == task.name and a.get("seed") == seed:
                self.done[(t.user_attrs["key"], t.user_attrs.get("weight_decay", 0.0))] = t
        self.replayed = 0

    def trial(self, program: Program, weight_decay: float = 0.0, name: str | None = None) -> FrozenTrial:
        key = (self.space.key(program), weight_decay)
        if key in self.done:
            self.replayed += 1
            return self.done[key]
        attrs = {"role": self.role, "task": self.task.name, "key": key[0], "weight_decay": weight_decay,
                 "expr": to_text(program), "formula": formula(program), "seed": self.seed}
        if name:
            attrs["name"] = name
        self.study.enqueue_trial(self.space.to_params(program), user_attrs=attrs)
        trial = self.study.ask(self.space.distributions())
        try:
            ev = self.task.evaluate(program, seed=self.seed, weight_decay=weight_decay)
            for attr, value in (("lr", ev.lr), ("lr_grid", ev.grid), ("curve", ev.curve), ("seconds", ev.seconds)):
                trial.set_user_attr(attr, value)
            if math.isfinite(ev.score):
                self.study.tell(trial, ev.score)
            else:
                trial.set_user_attr("fail_reason", "the loss blew up at every lr of the grid")
                self.study.tell(trial, state=TrialState.FAIL)
        except Exception as exc:  # a failed evaluation is recorded, not fatal
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            self.study.tell(trial, state=TrialState.FAIL)
        frozen = self.study.get_trials(deepcopy=False)[trial.number]
        self.done[key] = frozen
        if self.on_trial:
            self.on_trial(frozen)
        return frozen

    def __call__(self, program: Program) -> float:
        t = self.trial(program)
        return t.value if t.state == TrialState.COMPLETE else math.inf


ProgressFn = Callable[[int, int, float | None], None]


def run_optimizer(options: OptimizerOptions, progress: ProgressFn | None = None,
                  log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Search, train the hand-designed baselines, optionally transfer, and write results.json + PNG."""
    from diffsearch.searchers.mct import describe, mct_search
    from diffsearch.searchers.tree_evolution import evolution_search
    from diffsearch.searchers.tree_random import random_tree_search

    o = options.resolved()
    start = time.perf_counter()
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    space = UpdateRuleSpace(max_length=o.max_length)
    # "epochs" is the ledger's identity attr for training length: here the step scale
    attrs = {"job": "optimizer", "space": space.name, "dataset": o.task, "epochs": o.scale,
             "searcher": o.searcher, "budget": o.budget, "seed": o.seed, "max_length": o.max_length}
    study = create_or_load_study(open_storage(o.storage), o.study, attrs, optuna.samplers.RandomSampler(o.seed))
    task = make_task(o.task, o.scale)
    evaluator = LedgerEvaluator(study, space, task, "search", o.seed)
    used, best = [0], [math.inf]

    def counted(program: Program) -> float:  # the searchers call this once per budget unit
        value = evaluator(program)
        used[0] += 1
        best[0] = min(best[0], value)
        if progress:
            progress(used[0], o.budget, best[0] if math.isfinite(best[0]) else None)
        return value

    search_start = time.perf_counter()
    results: dict[str, Any] = {"job": "optimizer", "options": asdict(o), "initial_loss": task.initial_loss}
    if o.searcher == "mct":
        book, history = mct_search(space, counted, o.budget, o.levels, o.seed, threshold=task.initial_loss)
        results["mct_levels"] = [asdict(r) for r in history]
        results["mct_path"] = describe(history)
    elif o.searcher == "random":
        book = random_tree_search(space, counted, o.budget, o.seed)
    else:
        book = evolution_search(space, counted, o.budget, o.seed)
    search_seconds = time.perf_counter() - search_start
    results["search"] = {**book.stats(), "replayed_from_storage": evaluator.replayed, "seconds": search_seconds}

    ranked = sorted(book.programs.items(), key=lambda kp: book.scores[kp[0]])
    rules = [(f"rule {i + 1}", program, 0.0) for i, (_, program) in enumerate(ranked[: max(o.top, 1)])
             if math.isfinite(book.scores[ranked[i][0]])]
    baseline_eval = LedgerEvaluator(study, space, task, "baseline", o.seed)
    if o.baselines:
        log(f"training {len(o.baselines)} hand-designed optimizers on {o.task}")
    hand = [(name, parse(HAND_DESIGNED[name][0]), HAND_DESIGNED[name][1]) for name in o.baselines]
    rows = []
    for name, program, wd in rules + hand:
        t = evaluator.trial(program) if name.startswith("rule") else baseline_eval.trial(program, wd, name)
        rows.append(_row(name, program, wd, t))
    if o.transfer:
        log(f"transfer: training the top rules and the baselines on {o.transfer}")
        transfer_eval = LedgerEvaluator(study, space, make_task(o.transfer, o.scale), "transfer", o.seed)
        for row, (name, program, wd) in zip(rows, rules + hand):
            t = transfer_eval.trial(program, wd, name)
            row["transfer_score"], row["transfer_lr"] = t.value, t.user_attrs.get("lr")
            row["transfer_curve"] = t.user_attrs.get("curve", [])
    rows.sort(key=lambda r: (r["score"] is None, r["score"] if r["score"] is not None else 0))
    results["leaderboard"] = rows
    results["best"] = next((r for r in rows if r["kind"] == "rule"), None)
    results["trials"] = [_trial_record(t) for t in study.get_trials(deepcopy=False)]
    results["elapsed_seconds"] = time.perf_counter() - start
    results["storage"], results["study"] = o.storage, o.study
    results["plot"] = _plot(rows, o, out)
    (out / "results.json").write_text(json.dumps(_clean(results), indent=2, default=str))
    results["results_file"] = str(out / "results.json")
    return results


def _row(name: str, program: Program, wd: float, t: FrozenTrial) -> dict[str, Any]:
    return {"name": name, "kind": "rule" if name.startswith("rule") else "hand-designed",
            "expr": to_text(program), "formula": formula(program), "weight_decay": wd, "trial": t.number,
            "score": t.value, "lr": t.user_attrs.get("lr"), "curve": t.user_attrs.get("curve", []),
            "fail_reason": t.user_attrs.get("fail_reason")}


def _trial_record(t: FrozenTrial) -> dict[str, Any]:
    a = t.user_attrs
    return {"number": t.number, "state": t.state.name, "score": t.value, "role": a.get("role"),
            "task": a.get("task"), "expr": a.get("expr"), "formula": a.get("formula"), "lr": a.get("lr"),
            "seconds": a.get("seconds"), "fail_reason": a.get("fail_reason")}


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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _clean(value: Any) -> Any:
    """JSON without Infinity / NaN (not valid JSON): non-finite numbers become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
