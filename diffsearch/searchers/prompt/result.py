"""What every prompt searcher is, takes and gives back (its registry is ``prompt_registry``): the
``PromptSearcher`` and ``PromptTask`` protocols, its settings and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from diffsearch.spaces.prompts import PromptSpace


@dataclass
class PromptSearchSettings:
    """The options a prompt searcher may use; each reads only its own."""

    iterations: int = 20  # gpo: gradient iterations
    k: int = 1  # gpo: UNet steps with gradient in the shortcut


@dataclass
class PromptSearchResult:
    """What a searcher learned beside the evaluations it recorded on the task."""

    gradient_steps: list[dict[str, Any]] = field(default_factory=list)  # gpo: loss per iteration
    learned_logits: list[Any] | None = None  # gpo: the slot distributions


class PromptEvaluated(Protocol):
    """One point's record on the task (tasks/prompt_sd.py's ``PromptEvaluation``)."""

    value: float | None  # minimised; None when rejected or failed
    loss: float | None


class PromptTask(Protocol):
    """What a prompt searcher evaluates points on (tasks/prompt_sd.py): a budget counted in generations and
    this run's evaluations by point (``seen``). A point is one choice index per slot of the space."""

    budget: float
    spent: float

    @property
    def seen(self) -> dict[tuple[int, ...], Any]: ...

    @property
    def remaining(self) -> float: ...

    @property
    def exhausted(self) -> bool: ...

    def evaluate(self, point: Sequence[int], role: str = "search") -> Any: ...

    def evaluate_many(
        self, points: Sequence[Sequence[int]], role: str = "search", respect_budget: bool = True
    ) -> list[Any]: ...


class PromptSearcher(Protocol):
    """Evaluates points through ``task.evaluate_many`` until the budget is spent; returns what it learned
    beside them. An entry that backpropagates through the reward (``task.shortcut_loss``, as gpo does)
    declares ``needs_gradient=True`` on its registry entry."""

    def __call__(
        self, task: PromptTask, space: PromptSpace, seed: int, settings: PromptSearchSettings
    ) -> PromptSearchResult: ...
