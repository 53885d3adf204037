"""Update-rule trainings as Optuna trials that any worker can run (the optimizer job's ledger).

The searchers propose programs in batches (a whole MCT level, a generation of children). Each program
of a batch is submitted as a waiting trial whose user attrs name everything needed to train it (task,
role, seed, weight decay, the program's tokens as params); see ``diffsearch.ledger.trial_loop``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import TrialFailed
from diffsearch.optimizers import TORCH_BASELINES
from diffsearch.spaces.update_rule_space import UpdateRuleSpace, formula
from diffsearch.spaces.update_rules import Program, to_text
from diffsearch.tasks.optimizer_tasks import LR_GRID, DiffusionTrainingTask, make_task
from diffsearch.ledger.trial_loop import TrialRunner, WorkQueue, give_up_reason


class RuleTrialRunner(TrialRunner):
    """Trains the program of a waiting rule trial on the task its attrs name."""

    def __init__(self, study: optuna.Study, space: UpdateRuleSpace):
        super().__init__(study)
        self.space = space
        attrs = study.user_attrs  # studies before 0.2 stored the step scale as "epochs"
        self.scale = float(attrs.get("scale", attrs.get("epochs", 1.0)))
        self.score = study.user_attrs.get("score", "loss")
        self.lr_grid = tuple(study.user_attrs.get("lr_grid", LR_GRID))
        self.tasks: dict[str, DiffusionTrainingTask] = {}

    def task(self, name: str, scale: float | None = None) -> DiffusionTrainingTask:
        """The task ``name`` at ``scale`` (default: the study's); a trial of a promoted rule has its own scale."""
        scale = self.scale if scale is None else float(scale)
        if (name, scale) not in self.tasks:
            self.tasks[(name, scale)] = make_task(name, scale, self.score, self.lr_grid)
        return self.tasks[(name, scale)]

    def evaluate(self, trial: optuna.Trial) -> float:
        attrs = trial.user_attrs
        params = {
            name: trial.suggest_categorical(name, dist.choices) for name, dist in self.space.distributions().items()
        }
        # a torch baseline (Muon) is not a program: its trial names it, its token params are empty
        program = attrs.get("optimizer") or self.space.from_params(params)
        try:
            ev = self.task(attrs["task"], attrs.get("scale")).evaluate(
                program, seed=attrs["seed"], weight_decay=attrs["weight_decay"]
            )
        except (KeyboardInterrupt, TrialFailed):
            raise
        except Exception as exc:  # a failed evaluation is recorded, not fatal
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise TrialFailed(str(exc)) from exc
        for attr, value in (
            ("lr", ev.lr),
            ("lr_grid", ev.grid),
            ("curve", ev.curve),
            ("seconds", round(ev.seconds, 3)),
            ("final_loss", ev.final_loss),
        ):
            if value is not None:
                trial.set_user_attr(attr, value)
        if not math.isfinite(ev.score):
            trial.set_user_attr("fail_reason", "the loss blew up at every lr of the grid")
            raise TrialFailed("the loss blew up at every lr of the grid")
        return ev.score


Item = tuple[Program | str, float, str | None]  # program (or a torch baseline's name), weight decay, display name


def item_key(space: UpdateRuleSpace, program: Program | str) -> str:
    """Equivalent programs share a key (probe hash); a torch baseline is keyed by its name."""
    return f"torch:{program}" if isinstance(program, str) else space.key(program)


def describe(program: Program | str) -> tuple[str, str]:
    """(expr, formula) shown for a trial."""
    if isinstance(program, str):
        return program, TORCH_BASELINES[program].description
    return to_text(program), formula(program)


class LedgerEvaluator:
    """Train programs on a task as Optuna trials; a program already in the study is not trained again."""

    def __init__(
        self,
        study: optuna.Study,
        space: UpdateRuleSpace,
        task: DiffusionTrainingTask,
        role: str,
        seed: int,
        on_trial: Callable[[FrozenTrial], None] | None = None,
        scale: float | None = None,
    ):
        """``scale``: set when the task is not at the study's scale (a promotion rung); stored on each trial."""
        self.study, self.space, self.task, self.role, self.seed = study, space, task, role, seed
        runner = RuleTrialRunner(study, space)
        self.scale = scale
        runner.tasks[(task.name, runner.scale if scale is None else float(scale))] = task
        self.queue = WorkQueue(study, runner, self._mine, on_trial)
        self.replayed = 0

    @property
    def done(self) -> dict[tuple[str, float], FrozenTrial]:
        return self.queue.done

    def _mine(self, trial: FrozenTrial) -> tuple[str, float] | None:
        a = trial.user_attrs  # a training counts for the same role, task and training seed only
        if (
            a.get("role") == self.role
            and a.get("task") == self.task.name
            and a.get("seed") == self.seed
            and a.get("scale") == self.scale
        ):
            return a["key"], a.get("weight_decay", 0.0)
        return None

    def trials(self, items: Sequence[Item]) -> list[FrozenTrial]:
        """Train every program of ``items`` (in parallel where workers are running); their trials."""
        keys = [(item_key(self.space, p), wd) for p, wd, _ in items]
        self.replayed += sum(1 for k in dict.fromkeys(keys) if k in self.done)
        self.queue.collect({k: self._submitter(k, item) for k, item in zip(keys, items)})
        return [self.done[k] for k in keys]

    def _submitter(self, key: tuple[str, float], item: Item) -> Callable[[bool], None]:
        program, _, name = item
        expr, shown = describe(program)
        attrs = {
            "role": self.role,
            "task": self.task.name,
            "key": key[0],
            "weight_decay": key[1],
            "expr": expr,
            "formula": shown,
            "seed": self.seed,
        }
        if name:
            attrs["name"] = name
        if isinstance(program, str):
            attrs["optimizer"] = program
            program = ()
        if self.scale is not None:
            attrs["scale"] = self.scale

        def submit(give_up: bool) -> None:
            if not give_up:
                self.study.enqueue_trial(self.space.to_params(program), user_attrs=attrs)
                return
            self.study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.FAIL,
                    params=self.space.to_params(program),
                    distributions=self.space.distributions(),
                    user_attrs={**attrs, "fail_reason": give_up_reason()},
                )
            )

        return submit

    def trial(self, program: Program, weight_decay: float = 0.0, name: str | None = None) -> FrozenTrial:
        return self.trials([(program, weight_decay, name)])[0]

    def many(self, programs: Sequence[Program]) -> list[float]:
        """Scores of ``programs`` (inf for a failed training), trained as one batch."""
        return [
            t.value if t.state == TrialState.COMPLETE else math.inf
            for t in self.trials([(p, 0.0, None) for p in programs])
        ]

    def __call__(self, program: Program) -> float:
        return self.many([program])[0]
