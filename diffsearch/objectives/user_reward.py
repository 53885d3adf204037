"""``--reward MODULE:FUNCTION``: your own reward, ``function(images, prompt) -> scores``.

- ``images``: float tensor N x 3 x H x W in [0, 1], on the ``--device`` of the run (H, W: the SD
  pipeline's size; the function resizes as its model needs);
- ``prompt``: the user's prompt (the text the images should follow);
- returns N scores (a tensor of N values) or one float for the whole batch; higher is better. The
  search minimises -score.

The module is imported like any Python module: from the current directory or from PYTHONPATH (workers
on other machines need it too). The function is called once on a random 2 x 3 x 64 x 64 batch before
the search starts, to check what it returns and whether it is differentiable: the gradient searchers
(gpo, gpo+es) backpropagate through the reward (DPO-Diff's shortcut gradient) and are refused when its
scores carry no ``grad_fn`` (use --searcher evolution or random then).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Callable

import torch

from diffsearch.errors import UsageError
from diffsearch.objectives.reward_base import Reward, RewardOptions

PROBE_SHAPE = (2, 3, 64, 64)
PROBE_PROMPT = "a photograph of a cat"


def import_function(spec: str) -> Callable:
    """``module:function`` (``module:Class.method`` too) -> the callable, or a one-line UsageError."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--reward {spec!r}: give MODULE:FUNCTION, e.g. my_rewards:aesthetic")
    if os.getcwd() not in sys.path:  # `diffsearch` as a console script does not put it there itself
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # not found, or the module fails while it loads
        raise UsageError(
            f"--reward {spec}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from None
    try:
        function = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise UsageError(f"--reward {spec}: module {module_name!r} has no {attribute!r}") from None
    if not callable(function):
        raise UsageError(f"--reward {spec}: {attribute!r} in {module_name!r} is not a function")
    return function


def as_scores(value, n: int) -> torch.Tensor:
    """The function's return value as N float scores (one float is every image's score)."""
    if not torch.is_tensor(value):
        try:
            value = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"returned a {type(value).__name__}; want a tensor of {n} scores or a float") from None
    if value.numel() == 1:
        return value.float().reshape(1).expand(n)
    if value.numel() != n or value.squeeze().ndim != 1:
        raise ValueError(f"returned shape {tuple(value.shape)} for {n} images; want {n} scores or a float")
    return value.float().reshape(n)


class UserReward(Reward):
    score_name = "reward"
    loss_formula = "-score of your reward function"

    def __init__(self, spec: str, device: str = "cpu"):
        super().__init__()
        self.name, self.function = spec, import_function(spec)
        images = torch.rand(PROBE_SHAPE, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
        try:
            scores = self.score(images, PROBE_PROMPT)
        except Exception as exc:
            raise UsageError(
                f"--reward {spec}: on a {'x'.join(map(str, PROBE_SHAPE))} test batch it failed "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
            ) from None
        self.differentiable = scores.grad_fn is not None

    def score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return as_scores(self.function(images, prompt), len(images))


# ``--reward MODULE:FUNCTION`` (objectives/rewards.py's registry)
def check(options: RewardOptions) -> None:
    import_function(options.name)


def load(options: RewardOptions, device: str, seed: int) -> Reward:
    return UserReward(options.name, device)
