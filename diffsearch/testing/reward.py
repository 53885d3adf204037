"""``RewardSuite``: what every reward (``diffsearch prompt --reward``, ``MODULE:FUNCTION`` too) must do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffsearch.errors import UsageError
from diffsearch.objectives.reward_base import Reward
from diffsearch.objectives.rewards import RewardSpec

PROMPT = "a red boat on a calm lake"


class RewardSuite:
    """Subclass and give the fixture ``reward_name`` (a ``--reward`` value); ``reward_model`` and ``clip``
    (fixtures too) say what ``--reward-model`` and ``--clip`` would."""

    size = 32

    @pytest.fixture
    def reward_name(self) -> str:
        raise NotImplementedError("give the fixture `reward_name`: a --reward value")

    @pytest.fixture
    def reward_model(self) -> str | None:
        return None

    @pytest.fixture
    def clip(self) -> str | None:
        return "tiny"

    @pytest.fixture
    def reward(self, reward_name: str, reward_model: str | None, clip: str | None) -> Reward:
        return RewardSpec(reward_name, model=reward_model, clip=clip).load(seed=0)

    def images(self, seed: int, n: int = 3) -> torch.Tensor:
        return torch.rand(n, 3, self.size, self.size, generator=torch.Generator().manual_seed(seed))

    def test_one_score_per_image_the_same_each_time(self, reward: Reward) -> None:
        images = self.images(0)
        scores = reward.score(images, PROMPT)
        assert scores.shape == (len(images),) and torch.isfinite(scores).all()
        assert torch.allclose(reward.score(images, PROMPT), scores), "the same images scored differently"
        losses, again = reward.loss_and_score(images, PROMPT)
        assert torch.allclose(again, scores) and losses.shape == scores.shape

    def test_differentiable_says_the_truth(self, reward: Reward) -> None:
        images = self.images(1).requires_grad_(True)
        loss = reward.loss(images, PROMPT).mean()
        assert loss.requires_grad == reward.differentiable, (
            f"differentiable = {reward.differentiable} but the loss {'has' if loss.requires_grad else 'has no'} "
            "grad_fn: gpo and gpo+es decide by it"
        )

    def test_bad_options_are_refused_in_one_line(self, reward_name: str, tmp_path: Path) -> None:
        for spec in (
            RewardSpec(reward_name, model=str(tmp_path / "missing")),
            RewardSpec(reward_name, arch=str(tmp_path / "missing.json")),
        ):
            with pytest.raises(UsageError) as refused:
                spec.check()
            assert "\n" not in str(refused.value)
