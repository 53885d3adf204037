"""What a reward is (``Reward``) and what the options say about one (``RewardOptions``): a leaf that every
reward module imports; the registry of rewards by name is objectives/rewards.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class RewardOptions:
    """What ``--reward``, ``--reward-model``, ``--reward-arch`` and ``--clip`` say about the reward."""

    name: str = "clip"
    model: str | None = None  # pickscore: directory or hub id; hpsv2: checkpoint file
    arch: str | None = None  # hpsv2: open_clip architecture name or a model-config JSON file
    clip: str | None = None  # clip: the --clip spec (None: the default CLIP)


class RewardKind(Protocol):
    """A registry entry's value: ``check`` is cheap (names, paths, an import; one-line UsageError), ``load``
    builds the model."""

    def check(self, options: RewardOptions) -> None: ...

    def load(self, options: RewardOptions, device: str, seed: int) -> Reward: ...


class Reward(ABC):
    """A higher-is-better score of images against a prompt, and the loss the search minimises."""

    name: str = ""  # as given to --reward; recorded in the study
    loss_formula = "-score"  # one line for results.json
    score_name = "reward"  # what the score is called in tables
    differentiable = True  # gpo / gpo+es backpropagate through ``loss`` (the shortcut gradient)

    def __init__(self) -> None:
        self._texts: dict[str, torch.Tensor] = {}

    @property
    def loss_name(self) -> str:
        return f"-{self.score_name}"

    @abstractmethod
    def score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        """N scores, higher is better; keeps the autograd graph to ``images`` when differentiable."""

    def loss(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return -self.score(images, prompt)

    def loss_and_score(self, images: torch.Tensor, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Both for a trial's record, from one pass of the model (no gradient)."""
        with torch.no_grad():
            scores = self.score(images, prompt)
        return -scores, scores

    def text_features(self, prompt: str) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not embed text")

    def cached_text(self, prompt: str) -> torch.Tensor:
        """The prompt's embedding, computed once (every evaluation of a study scores against one prompt)."""
        if prompt not in self._texts:
            with torch.no_grad():
                self._texts[prompt] = self.text_features(prompt)
        return self._texts[prompt]
