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
  NAME              a reward of an installed package: entry point group ``diffsearch.rewards``, the same
                    ``function(images, prompt) -> scores`` contract, under the entry point's name

``RewardSpec.check()`` is cheap (names, paths, the function's import) and runs when the options are
resolved, before anything starts; ``RewardSpec.load()`` builds the model.
"""

from __future__ import annotations

import importlib
from typing import Any

import importlib.metadata

from diffsearch import plugins
from diffsearch.errors import UsageError
from diffsearch.objectives.reward_base import Reward, RewardKind, RewardOptions
from diffsearch.registry import Entry, Registry

__all__ = ["REWARDS", "Reward", "RewardSpec", "as_reward", "is_user_reward"]

USER_FUNCTION = "MODULE:FUNCTION"  # the entry of a user's function: any name with a colon


class LazyReward:
    """A reward kind whose module (its model library) is imported only when the reward is chosen; the module
    has ``check(options)`` and ``load(options, device, seed)``."""

    def __init__(self, module: str) -> None:
        self.module = module

    def _module(self) -> Any:
        return importlib.import_module(self.module)

    def check(self, options: RewardOptions) -> None:
        self._module().check(options)

    def load(self, options: RewardOptions, device: str, seed: int) -> Reward:
        reward: Reward = self._module().load(options, device, seed)
        return reward


class EntryPointReward:
    """A reward an installed package declares in the group ``diffsearch.rewards``: a function with the
    ``MODULE:FUNCTION`` contract (objectives/user_reward.py), run under the entry point's name."""

    def __init__(self, target: str) -> None:
        self.target = target  # the entry point's value, ``module:function``

    def check(self, options: RewardOptions) -> None:
        from diffsearch.objectives.user_reward import import_function

        import_function(self.target)

    def load(self, options: RewardOptions, device: str, seed: int) -> Reward:
        from diffsearch.objectives.user_reward import UserReward

        reward = UserReward(self.target, device)
        reward.name = options.name  # the study records the name the user gave
        return reward


def _reward_plugin(ep: importlib.metadata.EntryPoint, loaded: Any) -> Entry[RewardKind]:
    if not callable(loaded):
        raise UsageError(
            f"{plugins.describe(ep)} is a {type(loaded).__name__}: a reward entry point is a "
            "function(images, prompt) -> scores"
        )
    description = plugins.first_line(getattr(loaded, "__doc__", None)) or "function(images, prompt) -> scores"
    return Entry(ep.name, EntryPointReward(ep.value), description)


# ``takes_model`` / ``takes_arch``: the reward reads --reward-model / --reward-arch (refused elsewhere)
REWARDS: Registry[RewardKind] = Registry("--reward", plugins.REWARDS_GROUP, _reward_plugin)
REWARDS.register(
    "clip",
    LazyReward("diffsearch.objectives.clip"),
    "spherical CLIP loss 2*arcsin(|a/|a|-b/|b||/2)^2 of images vs the prompt (DPO-Diff, Wang et al., "
    "ICML 2024); CLIP from --clip",
)
REWARDS.register(
    "pickscore",
    LazyReward("diffsearch.objectives.pickscore"),
    "PickScore (Kirstain et al., NeurIPS 2023): logit_scale * cosine; loss = -score; "
    "--reward-model DIR (transformers CLIPModel + CLIPProcessor) or hub id",
    takes_model=True,
)
REWARDS.register(
    "hpsv2",
    LazyReward("diffsearch.objectives.hpsv2"),
    "HPSv2 / v2.1 (Wu et al., 2023): 100 * cosine of open_clip embeddings; loss = -score; "
    "--reward-model HPS_v2.1_compressed.pt, --reward-arch (default ViT-H-14)",
    takes_model=True,
    takes_arch=True,
)
REWARDS.register(
    USER_FUNCTION,
    LazyReward("diffsearch.objectives.user_reward"),
    "your function(images N x 3 x H x W in [0, 1], prompt) -> N scores, higher is better; loss = -score",
    pattern=True,
)


def as_reward(reward_or_clip: Any) -> Reward:
    """A ``Reward``; a bare ``ClipObjective`` (as benchmarks and tests build it) becomes ``--reward clip``."""
    from diffsearch.objectives.clip import ClipObjective, ClipReward

    if isinstance(reward_or_clip, ClipObjective):
        return ClipReward(reward_or_clip)
    if not isinstance(reward_or_clip, Reward):
        raise TypeError(f"expected a Reward or a ClipObjective, got {type(reward_or_clip).__name__}")
    return reward_or_clip


def is_user_reward(name: str) -> bool:
    return name not in REWARDS and ":" in name


class RewardSpec(RewardOptions):
    """The reward options with what to do with them: ``check`` (cheap, before anything starts) and ``load``."""

    def entry(self) -> Entry[RewardKind]:
        """The registry entry (built in, a user's function, or an installed package's), or a one-line
        UsageError for an unknown name."""
        if self.name in REWARDS and self.name != USER_FUNCTION:
            return REWARDS.lookup(self.name)
        if is_user_reward(self.name):
            return REWARDS[USER_FUNCTION]
        if any(ep.name == self.name for ep in REWARDS.entry_points()):
            return REWARDS.lookup(self.name)  # an installed package's; a broken one says why in one line
        known = ", ".join(n for n, e in REWARDS.all().items() if not e.can("pattern"))
        raise UsageError(
            f"unknown --reward {self.name!r}; known: {known}, or MODULE:FUNCTION "
            "(your function(images, prompt) -> scores)"
        )

    def kind(self) -> RewardKind:
        return self.entry().value

    def check(self) -> None:
        """Raise a one-line UsageError for anything that cannot load; loads no model."""
        entry = self.entry()
        if self.model is not None and not entry.can("takes_model"):
            raise UsageError(
                f"--reward-model is for --reward {' or '.join(REWARDS.with_capability('takes_model'))}"
                f", not {self.name!r}"
            )
        if self.arch is not None and not entry.can("takes_arch"):
            raise UsageError(
                f"--reward-arch is for --reward {' or '.join(REWARDS.with_capability('takes_arch'))}, not {self.name!r}"
            )
        entry.value.check(self)

    def load(self, device: str = "cpu", seed: int = 0) -> Reward:
        self.check()
        return self.kind().load(self, device, seed)
