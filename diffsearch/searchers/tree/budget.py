"""What a tree searcher is (``TreeSearcher``, its ``TreeEvaluator``) and their shared bookkeeping (``TreeBudget``):
dedup by probe hash, rejection, and an exact budget.

Duplicates (a program equivalent to one already seen) and rejected programs (descent or
non-degeneracy test failed) are never trained and do not use the budget, as in ENOS (Wang et al.,
NeurIPS 2022).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import Program


@runtime_checkable
class TreeEvaluator(Protocol):
    """Trains update-rule programs; lower is better, ``inf`` for a failed training. ``many`` trains a batch
    at once (on every worker of the study, jobs/optimizer_ledger.py); one program is ``many([p])[0]``."""

    def __call__(self, program: Program) -> float: ...

    def many(self, programs: Sequence[Program]) -> list[float]: ...


class OneByOne:
    """A plain ``program -> score`` function as a ``TreeEvaluator`` (tests, notebooks): a batch in order."""

    def __init__(self, function: Callable[[Program], float]) -> None:
        self.function = function

    def __call__(self, program: Program) -> float:
        return self.function(program)

    def many(self, programs: Sequence[Program]) -> list[float]:
        return [self.function(p) for p in programs]


def as_evaluator(evaluate: TreeEvaluator | Callable[[Program], float]) -> TreeEvaluator:
    return evaluate if isinstance(evaluate, TreeEvaluator) else OneByOne(evaluate)


EvaluateFn = TreeEvaluator | Callable[[Program], float]  # what a tree searcher takes (made a TreeEvaluator)


@dataclass
class TreeBudget:
    """Programs are first admitted (new, passing the tests), then trained in batches by ``flush``.

    Admission does not depend on scores, so a searcher may admit a whole level or generation and have
    it trained at once by as many workers as there are.
    """

    space: UpdateRuleSpace
    evaluate: TreeEvaluator
    budget: int
    scores: dict[str, float] = field(default_factory=dict)  # key -> score of evaluated programs
    programs: dict[str, Program] = field(default_factory=dict)  # key -> the first program with that key
    rejected: dict[str, str] = field(default_factory=dict)  # key -> reason
    pending: dict[str, Program] = field(default_factory=dict)  # admitted, not trained yet
    duplicates: int = 0
    proposed: int = 0
    check_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.evaluate = as_evaluator(self.evaluate)

    @property
    def used(self) -> int:
        return len(self.scores)

    @property
    def left(self) -> int:
        return self.budget - self.used - len(self.pending)

    def admit(self, program: Sequence[str]) -> bool:
        """Queue ``program`` for training if it is new and passes the tests; False when it uses no budget.

        Callers admit only while ``left`` > 0; with no budget left nothing is queued (False)."""
        if self.left <= 0:
            return False
        program = tuple(program)
        self.proposed += 1
        start = time.perf_counter()
        key = self.space.key(program)
        if key in self.scores or key in self.rejected or key in self.pending:
            self.duplicates += 1
            self.check_seconds += time.perf_counter() - start
            return False
        reason = self.space.check(program)
        self.check_seconds += time.perf_counter() - start
        if reason is not None:
            self.rejected[key] = reason
            return False
        self.pending[key] = program
        return True

    def flush(self) -> list[tuple[Program, float]]:
        """Train the admitted programs (one batch); their (program, score) in admission order."""
        batch, self.pending = self.pending, {}
        if not batch:
            return []
        scores = self.evaluate.many(list(batch.values()))
        for (key, program), score in zip(batch.items(), scores):
            self.scores[key] = score if math.isfinite(score) else math.inf
            self.programs[key] = program
        return [(program, self.scores[key]) for key, program in batch.items()]

    def best(self) -> tuple[Program, float] | None:
        if not self.scores:
            return None
        key = min(self.scores, key=lambda k: self.scores[k])
        return self.programs[key], self.scores[key]

    def stats(self) -> dict[str, float]:
        return {
            "evaluated": self.used,
            "proposed": self.proposed,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "check_seconds": self.check_seconds,
        }


class TreeSearcher(Protocol):
    """A tree searcher (searchers/tree/registry.py): admits programs to a ``TreeBudget`` (dedup, rejection,
    the exact budget), has them trained by ``evaluate`` and returns the ``TreeBudget`` with its own extras
    for results.json. ``settings`` is a ``TreeSearchSettings``; each searcher reads only its own fields."""

    def __call__(
        self, space: UpdateRuleSpace, evaluate: EvaluateFn, budget: int, seed: int, settings: Any
    ) -> tuple[TreeBudget, dict[str, Any]]: ...
