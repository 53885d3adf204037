"""Rewards for ``diffsearch prompt --reward``: how well a generated image follows the prompt.

One interface for every reward (``Reward``): ``score(images, prompt)`` is higher-is-better, one value per
image (images: float N x 3 x H x W in [0, 1]); ``loss(images, prompt)`` is what the search minimises.
The loss is the reward's own loss where it has one (``clip``: DPO-Diff's spherical CLIP loss, lower is
better), otherwise minus the score (``pickscore``, ``hpsv2``, ``MODULE:FUNCTION``). The attack task
maximises the same loss (it looks for rewordings that make the images fail).

``--reward`` names (``REWARDS``), each in its own module, imported only when chosen:
  clip              open_clip / transformers CLIP chosen by ``--clip`` (objectives/clip.py)
  pickscore         PickScore (Kirstain et al., NeurIPS 2023): a transformers CLIPModel + CLIPProcessor
                    directory or hub id in ``--reward-model`` (objectives/pickscore.py)
  hpsv2             HPSv2 / v2.1 (Wu et al., 2023): an open_clip checkpoint file in ``--reward-model``,
                    architecture ``--reward-arch`` (default ViT-H-14) (objectives/hpsv2.py)
  MODULE:FUNCTION   your ``function(images, prompt) -> scores`` (objectives/user_reward.py)

``RewardSpec.check()`` is cheap (names, paths, the function's import) and runs when the options are
resolved, before anything starts; ``RewardSpec.load()`` builds the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch

from diffsearch.errors import UsageError

REWARDS = {
    "clip": "spherical CLIP loss 2*arcsin(|a/|a|-b/|b||/2)^2 of images vs the prompt (DPO-Diff, Wang et al., "
            "ICML 2024); CLIP from --clip",
    "pickscore": "PickScore (Kirstain et al., NeurIPS 2023): logit_scale * cosine; loss = -score; "
                 "--reward-model DIR (transformers CLIPModel + CLIPProcessor) or hub id",
    "hpsv2": "HPSv2 / v2.1 (Wu et al., 2023): 100 * cosine of open_clip embeddings; loss = -score; "
             "--reward-model HPS_v2.1_compressed.pt, --reward-arch (default ViT-H-14)",
    "MODULE:FUNCTION": "your function(images N x 3 x H x W in [0, 1], prompt) -> N scores, higher is better; "
                       "loss = -score",
}
PICKSCORE_HUB_ID = "yuvalkirstain/PickScore_v1"  # the published checkpoint (where a hub is reachable)
HPSV2_ARCH = "ViT-H-14"


class Reward(ABC):
    """A higher-is-better score of images against a prompt, and the loss the search minimises."""

    name: str = ""                 # as given to --reward; recorded in the study
    loss_formula = "-score"        # one line for results.json
    score_name = "reward"          # what the score is called in tables
    differentiable = True          # gpo / gpo+es backpropagate through ``loss`` (the shortcut gradient)

    def __init__(self):
        self._texts: dict[str, torch.Tensor] = {}

    @property
    def loss_name(self) -> str:
        return f"-{self.score_name}"

    @abstractmethod
    def score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        """N scores, higher is better; keeps the autograd graph to ``images`` when differentiable."""

    def loss(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return -self.score(images, prompt)

    @torch.no_grad()
    def loss_and_score(self, images: torch.Tensor, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Both for a trial's record, from one pass of the model."""
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


def as_reward(reward_or_clip) -> Reward:
    """A ``Reward``; a bare ``ClipObjective`` (as benchmarks and tests build it) becomes ``--reward clip``."""
    from diffsearch.objectives.clip import ClipObjective, ClipReward

    if isinstance(reward_or_clip, ClipObjective):
        return ClipReward(reward_or_clip)
    if not isinstance(reward_or_clip, Reward):
        raise TypeError(f"expected a Reward or a ClipObjective, got {type(reward_or_clip).__name__}")
    return reward_or_clip


def is_user_reward(name: str) -> bool:
    return name not in REWARDS and ":" in name


@dataclass(frozen=True)
class RewardSpec:
    """What ``--reward``, ``--reward-model``, ``--reward-arch`` and ``--clip`` say about the reward."""

    name: str = "clip"
    model: str | None = None   # pickscore: directory or hub id; hpsv2: checkpoint file
    arch: str | None = None    # hpsv2: open_clip architecture name or a model-config JSON file
    clip: str | None = None    # clip: the --clip spec (None: the default CLIP)

    def check(self) -> None:
        """Raise a one-line UsageError for anything that cannot load; loads no model."""
        if (self.name not in REWARDS and not is_user_reward(self.name)) or self.name == "MODULE:FUNCTION":
            known = ", ".join(n for n in REWARDS if n != "MODULE:FUNCTION")
            raise UsageError(f"unknown --reward {self.name!r}; known: {known}, or MODULE:FUNCTION "
                             "(your function(images, prompt) -> scores)")
        if self.model is not None and self.name not in ("pickscore", "hpsv2"):
            raise UsageError(f"--reward-model is for --reward pickscore or hpsv2, not {self.name!r}")
        if self.arch is not None and self.name != "hpsv2":
            raise UsageError(f"--reward-arch is for --reward hpsv2, not {self.name!r}")
        if self.name == "pickscore":
            from diffsearch.objectives.pickscore import check_source

            check_source(self.model or PICKSCORE_HUB_ID)
        elif self.name == "hpsv2":
            from diffsearch.objectives.hpsv2 import check_checkpoint

            check_checkpoint(self.model, self.arch or HPSV2_ARCH)
        elif is_user_reward(self.name):
            from diffsearch.objectives.user_reward import import_function

            import_function(self.name)

    def load(self, device: str = "cpu", seed: int = 0) -> Reward:
        self.check()
        if self.name == "clip":
            from diffsearch.objectives.clip import DEFAULT_CLIP, ClipObjective, ClipReward

            return ClipReward(ClipObjective(self.clip or DEFAULT_CLIP, device, seed))
        if self.name == "pickscore":
            from diffsearch.objectives.pickscore import PickScore

            return PickScore(self.model or PICKSCORE_HUB_ID, device)
        if self.name == "hpsv2":
            from diffsearch.objectives.hpsv2 import HPSv2

            return HPSv2(Path(self.model).expanduser(), self.arch or HPSV2_ARCH, device)
        from diffsearch.objectives.user_reward import UserReward

        return UserReward(self.name, device)
