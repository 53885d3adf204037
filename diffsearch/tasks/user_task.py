"""Your own training as the task an update rule is discovered on: ``diffsearch optimizer --task module:factory``.

``factory`` is a callable of ``module`` that takes no argument and returns an object with the ``UserTask``
protocol below. diffsearch imports ``module`` as ``python -m`` would from the current folder (the folder is
put on ``sys.path``, as uvicorn and gunicorn do), so run the command where ``import module`` works. The
``module:factory`` text is stored in the study (attr ``dataset``) and every worker process rebuilds the task
from it, so a worker on another machine needs the same module importable there.

How a rule is scored (ENOS, Wang et al., NeurIPS 2022, with your training in place of theirs): for every
learning rate of ``--lr-grid`` the task trains once with ``make_optimizer`` building that rule's optimizer;
the rule's score is the lowest value ``train`` returned and its ``lr`` the rate that gave it. ``train`` must
build the parameters it trains from ``seed`` alone (the same initial weights for every rule) and return a
number where lower is better (a final loss, an FID). A run that blows up returns ``math.inf`` or ``nan``, or
raises ``diffsearch.errors.TrialDiverged``: that learning rate counts as diverged. Any other exception fails
the rule's trial, with its message as the trial's ``fail_reason``.

The untrained model's score (the threshold MCT's rules must beat) is one ``train`` with ``lr = 0``.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time
from importlib import import_module
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

import torch

from diffsearch.errors import TrialFailed, UsageError
from diffsearch.ledger.interrupt import stop_point
from diffsearch.optimizers.rules import make_optimizer as build_optimizer
from diffsearch.tasks.evaluation import RuleEvaluation

MakeOptimizer = Callable[[Iterable[Any]], torch.optim.Optimizer]
PROTOCOL = (
    "name (str), steps (int >= 1: optimizer steps per training) and "
    "train(make_optimizer, seed) -> float (lower is better)"
)


@runtime_checkable
class UserTask(Protocol):
    """What ``factory()`` returns."""

    name: str  # shown in the results and logs
    steps: int  # optimizer.step() calls one ``train`` makes: the decay leaves (ld, cd, rd) need the total

    def train(self, make_optimizer: MakeOptimizer, seed: int) -> float:
        """Train from ``seed``'s initial weights with ``make_optimizer(params)``; the score, lower is better."""
        ...


def is_user_task(spec: str | None) -> bool:
    """``module:factory`` names a task of your own; the built-in tasks' names have no colon."""
    return spec is not None and ":" in spec


_LOADED: dict[str, UserTask] = {}  # spec -> the factory's task, built once per process


def load_user_task(spec: str) -> UserTask:
    """Import ``module``, call ``factory()`` and check the protocol; a ``UsageError`` (one line) if any fails."""
    if spec in _LOADED:
        return _LOADED[spec]
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name or ":" in factory_name:
        raise UsageError(
            f"--task {spec!r}: a task of your own is module:factory, e.g. examples.optimizer_task:make_task"
        )
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)  # import from the current folder, as `python -m` does
    try:
        module = import_module(module_name)
    except Exception as exc:  # the user's module is input: any failure to import it is theirs to fix
        raise UsageError(
            f"--task {spec}: cannot import {module_name!r} from {here}: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise UsageError(f"--task {spec}: module {module_name!r} has no {factory_name!r}")
    if not callable(factory):
        raise UsageError(f"--task {spec}: {factory_name} is a {type(factory).__name__}, not a callable factory")
    try:
        task = factory()
    except Exception as exc:
        raise UsageError(f"--task {spec}: {factory_name}() failed: {type(exc).__name__}: {_one_line(exc)}") from None
    missing = _protocol_gaps(task)
    if missing:
        raise UsageError(
            f"--task {spec}: {factory_name}() returned a {type(task).__name__} whose "
            f"{', '.join(missing)}; a task has {PROTOCOL}"
        )
    _LOADED[spec] = task
    return task


def _protocol_gaps(task: Any) -> list[str]:
    gaps = []
    if not isinstance(getattr(task, "name", None), str) or not task.name:
        gaps.append("name is not a non-empty str")
    steps = getattr(task, "steps", None)
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        gaps.append("steps is not an int >= 1")
    if not callable(getattr(task, "train", None)):
        gaps.append("train is not a method")
    return gaps


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


class UserTrainingTask:
    """A user's task seen as the optimizer job sees its built-in tasks: ``evaluate(program, seed, weight_decay)``
    picks the lr on the grid and returns an ``RuleEvaluation``; ``initial_score`` is the untrained model's.

    ``name`` is the ``module:factory`` text (what the trials' ``task`` attr and the workers look it up by);
    ``title`` is the task's own ``name``.
    """

    def __init__(self, spec: str, lr_grid: Sequence[float]):
        self.user = load_user_task(spec)
        self.name, self.title, self.lr_grid = spec, self.user.name, tuple(lr_grid)
        self._initial: float | None = None

    def _train(self, make_optimizer: MakeOptimizer, seed: int) -> float:
        """One ``train``; inf when it diverged. It must build its optimizer through ``make_optimizer``."""
        built = []

        def counted(params: Iterable[Any]) -> torch.optim.Optimizer:
            optimizer = make_optimizer(params)
            optimizer.register_step_pre_hook(lambda *_: stop_point())  # Ctrl-C stops between steps
            built.append(optimizer)
            return optimizer

        try:
            value = self.user.train(counted, seed)
        except TrialFailed:  # TrialDiverged and its kin: this run blew up
            return math.inf
        if not built:
            raise RuntimeError(
                f"{self.title}: train() returned without calling make_optimizer, so every rule would score the same"
            )
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"{self.title}: train() returned a {type(value).__name__}, not a number")
        value = float(value)
        return value if math.isfinite(value) else math.inf

    def evaluate(self, program: Sequence[str], seed: int = 0, weight_decay: float = 0.0) -> RuleEvaluation:
        """Train once per lr of the grid; the best run gives the score and the lr."""
        start = time.perf_counter()
        grid: dict[str, float] = {}
        for lr in self.lr_grid:

            def make_optimizer(params: Iterable[Any], lr: float = lr) -> torch.optim.Optimizer:
                return build_optimizer(
                    program, params, lr=lr, weight_decay=weight_decay, total_steps=int(self.user.steps), seed=seed
                )

            grid[f"{lr:g}"] = self._train(make_optimizer, seed)
        best_lr, best = min(zip(self.lr_grid, grid.values()), key=lambda pair: pair[1])
        seconds = time.perf_counter() - start
        if not math.isfinite(best):
            return RuleEvaluation(math.nan, math.inf, [], grid, seconds)
        return RuleEvaluation(best_lr, best, [], grid, seconds)

    @property
    def initial_score(self) -> float:
        """The untrained model's score: one training whose optimizer never moves the weights (SGD, lr 0)."""
        if self._initial is None:
            self._initial = self._train(lambda params: torch.optim.SGD(params, lr=0.0), 0)
        return self._initial

    @property
    def initial_loss(self) -> float:
        return self.initial_score
