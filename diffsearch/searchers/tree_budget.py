"""Shared bookkeeping of the tree searchers: dedup by probe hash, rejection, and an exact budget.

Duplicates (a program equivalent to one already seen) and rejected programs (descent or
non-degeneracy test failed) are never trained and do not use the budget, as in ENOS (Wang et al.,
NeurIPS 2022).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import Program

EvaluateFn = Callable[[Program], float]  # lower is better; inf for a failed training


@dataclass
class TreeBudget:
    """Programs are first admitted (new, passing the tests), then trained in batches by ``flush``.

    Admission does not depend on scores, so a searcher may admit a whole level or generation and have
    it trained at once by as many workers as there are.
    """

    space: UpdateRuleSpace
    evaluate: EvaluateFn
    budget: int
    scores: dict[str, float] = field(default_factory=dict)      # key -> score of evaluated programs
    programs: dict[str, Program] = field(default_factory=dict)  # key -> the first program with that key
    rejected: dict[str, str] = field(default_factory=dict)      # key -> reason
    pending: dict[str, Program] = field(default_factory=dict)   # admitted, not trained yet
    duplicates: int = 0
    proposed: int = 0
    check_seconds: float = 0.0

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
        many = getattr(self.evaluate, "many", None)
        scores = list(many(list(batch.values()))) if many else [self.evaluate(p) for p in batch.values()]
        for (key, program), score in zip(batch.items(), scores):
            self.scores[key] = score if math.isfinite(score) else math.inf
            self.programs[key] = program
        return [(program, self.scores[key]) for key, program in batch.items()]

    def best(self) -> tuple[Program, float] | None:
        if not self.scores:
            return None
        key = min(self.scores, key=self.scores.get)
        return self.programs[key], self.scores[key]

    def stats(self) -> dict[str, float]:
        return {"evaluated": self.used, "proposed": self.proposed, "duplicates": self.duplicates,
                "rejected": len(self.rejected), "check_seconds": self.check_seconds}
