"""What every prompt searcher takes and gives back (its registry is ``prompt_registry``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PromptSearchSettings:
    """The options a prompt searcher may use; each reads only its own."""

    iterations: int = 20   # gpo: gradient iterations
    k: int = 1             # gpo: UNet steps with gradient in the shortcut


@dataclass
class PromptSearchResult:
    """What a searcher learned beside the evaluations it recorded on the task."""

    gradient_steps: list[dict[str, Any]] = field(default_factory=list)  # gpo: loss per iteration
    learned_logits: list[Any] | None = None                              # gpo: the slot distributions
