"""A verifier for noise search: one reward or an ensemble of them (Ma et al., CVPR 2025 use ensembles).

``--reward clip,pickscore`` loads each reward (objectives/rewards.py); every candidate is scored by each
(higher is better) and the scores are kept apart in the ledger. Candidates are compared within the set a
searcher compares (best-of-N's N images, a pivot and its neighbours, the particles of a step):

  rank    the mean over rewards of each candidate's rank in the set (0 = worst), so no reward's scale wins;
  zscore  the mean over rewards of (score - mean) / std in the set (std 0: zeros).

With one reward the comparison is its value itself. A reward's value is minus its loss: the score for
pickscore, hpsv2 and MODULE:FUNCTION, minus the spherical CLIP loss for clip (unclamped, unlike the CLIP
score).
"""

from __future__ import annotations

import numpy as np
import torch

from diffsearch.errors import UsageError
from diffsearch.objectives.rewards import REWARDS, Reward, RewardSpec

ENSEMBLES = {
    "rank": "mean rank over the rewards within the compared set",
    "zscore": "mean z-score over the rewards within the compared set",
}


def reward_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--reward is empty")
    if len(set(names)) != len(names):
        raise UsageError(f"--reward {text}: a reward is named twice")
    return names


class Verifier:
    """Scores images against a prompt with one or more rewards, and compares sets of candidates."""

    def __init__(self, rewards: list[Reward], ensemble: str = "rank"):
        if ensemble not in ENSEMBLES:
            raise UsageError(f"unknown --ensemble {ensemble!r}; known: {', '.join(ENSEMBLES)}")
        self.rewards, self.ensemble = rewards, ensemble
        self.names = [r.name for r in rewards]

    @classmethod
    def load(
        cls,
        names: str,
        ensemble: str,
        reward_model: str | None,
        reward_arch: str | None,
        clip: str | None,
        device: str = "cpu",
        seed: int = 0,
    ) -> "Verifier":
        return cls([spec.load(device, seed) for spec in specs(names, reward_model, reward_arch, clip)], ensemble)

    @property
    def differentiable(self) -> bool:
        return len(self.rewards) == 1 and self.rewards[0].differentiable

    @torch.no_grad()
    def scores(self, images: torch.Tensor, prompt: str) -> np.ndarray:
        """R x N values (one row per reward), higher is better: minus each reward's loss, so minus the
        spherical CLIP loss for ``clip`` (the CLIP score is clamped at 0, and a clamp ties the candidates
        a search must tell apart), the score itself for the others (their loss is minus the score)."""
        return np.stack([(-r.loss_and_score(images.float(), prompt)[0]).float().cpu().numpy() for r in self.rewards])

    def combine(self, scores: np.ndarray) -> np.ndarray:
        """N comparable values of an R x N score matrix (higher is better)."""
        scores = np.asarray(scores, dtype=float)
        if len(scores) == 1:
            return scores[0]
        if self.ensemble == "rank":
            return np.mean([np.argsort(np.argsort(row, kind="stable"), kind="stable") for row in scores], axis=0)
        std = scores.std(axis=1, keepdims=True)
        return np.mean(
            np.where(std > 0, (scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1), 0), axis=0
        )

    def differentiable_score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        """The one reward's value (minus its loss) with its graph (gradient searchers)."""
        return -self.rewards[0].loss(images, prompt)


def specs(names: str, reward_model: str | None, reward_arch: str | None, clip: str | None) -> list[RewardSpec]:
    """One RewardSpec per named reward; --reward-model / --reward-arch go to the reward they belong to."""
    out = []
    for name in reward_names(names):
        entry = REWARDS[name] if name in REWARDS else None  # capabilities, not names: plugins say theirs
        model = reward_model if entry is not None and entry.can("takes_model") else None
        arch = reward_arch if entry is not None and entry.can("takes_arch") else None
        out.append(RewardSpec(name, model, arch, clip))
    if reward_model is not None and not any(s.model for s in out):
        raise UsageError(f"--reward-model is for --reward {' or '.join(REWARDS.with_capability('takes_model'))}")
    if reward_arch is not None and not any(s.arch for s in out):
        raise UsageError(f"--reward-arch is for --reward {' or '.join(REWARDS.with_capability('takes_arch'))}")
    return out
