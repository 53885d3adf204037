"""Training-hyperparameter spaces of the thesis study of Optuna HPO for diffusion training: one for
2-D data and one for images.

Conditionals follow the thesis study: the warm-up ratio exists only when the lr scheduler is not
``constant``, the weight decay only with AdamW. Points are plain dicts of JSON values; the same
dict is stored as the Optuna trial's params.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

import optuna

from diffsearch import plugins
from diffsearch.errors import UsageError
from diffsearch.registry import Entry, Registry

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
WARMUP_RATIOS = (0.0, 0.05, 0.10, 0.15, 0.20)
OPTIMIZERS = ("adam", "adamw")
NOISE_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


@dataclass(frozen=True)
class TrainingSpace:
    """A space of the thesis study. ``fixed`` holds what the space does not search (e.g. the noise schedule on 2-D)."""

    name: str
    description: str
    lr_range: tuple[float, float]
    batch_sizes: tuple[int, ...]
    timesteps: tuple[int, ...] | None  # searched training timesteps, or None when fixed
    noise_schedules: tuple[str, ...] | None  # searched beta schedules, or None when fixed
    fixed: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    weight_decay_range: tuple[float, float] = (1e-6, 1e-2)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run sampling through an Optuna trial (TPE, GP and random all go through here)."""
        params: dict[str, Any] = {"lr": trial.suggest_float("lr", *self.lr_range, log=True)}
        params["lr_scheduler"] = trial.suggest_categorical("lr_scheduler", LR_SCHEDULERS)
        if params["lr_scheduler"] != "constant":
            params["warmup_ratio"] = trial.suggest_categorical("warmup_ratio", WARMUP_RATIOS)
        params["batch_size"] = trial.suggest_categorical("batch_size", self.batch_sizes)
        params["optimizer"] = trial.suggest_categorical("optimizer", OPTIMIZERS)
        if params["optimizer"] == "adamw":
            params["weight_decay"] = trial.suggest_float("weight_decay", *self.weight_decay_range, log=True)
        if self.timesteps is not None:
            params["num_train_timesteps"] = trial.suggest_categorical("num_train_timesteps", self.timesteps)
        if self.noise_schedules is not None:
            params["beta_schedule"] = trial.suggest_categorical("beta_schedule", self.noise_schedules)
        return params

    def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """The full training config: the point plus the space's fixed values and conditional defaults."""
        self.validate(params)
        config = {"warmup_ratio": 0.0, "weight_decay": 0.0, **self.fixed, **params}
        return config

    def validate(self, params: dict[str, Any]) -> None:
        """Raise UsageError naming the first value outside the space (never fix it silently)."""

        def bad(key: str, allowed: Any) -> UsageError:
            return UsageError(f"{self.name}: {key}={params.get(key)!r} is outside the space ({allowed})")

        lo, hi = self.lr_range
        if not lo <= float(params.get("lr", -1)) <= hi:
            raise bad("lr", f"{lo:g} .. {hi:g}")
        if params.get("lr_scheduler") not in LR_SCHEDULERS:
            raise bad("lr_scheduler", ", ".join(LR_SCHEDULERS))
        if params["lr_scheduler"] == "constant" and params.get("warmup_ratio", 0.0) != 0.0:
            raise bad("warmup_ratio", "only with a scheduler other than constant")
        if params.get("warmup_ratio", 0.0) not in WARMUP_RATIOS:
            raise bad("warmup_ratio", WARMUP_RATIOS)
        if params.get("batch_size") not in self.batch_sizes:
            raise bad("batch_size", self.batch_sizes)
        if params.get("optimizer") not in OPTIMIZERS:
            raise bad("optimizer", OPTIMIZERS)
        if params["optimizer"] == "adam" and params.get("weight_decay", 0.0) != 0.0:
            raise bad("weight_decay", "only with adamw")
        if params["optimizer"] == "adamw":
            lo, hi = self.weight_decay_range
            if not lo <= float(params.get("weight_decay", -1)) <= hi:
                raise bad("weight_decay", f"{lo:g} .. {hi:g}")
        if self.timesteps is not None and params.get("num_train_timesteps") not in self.timesteps:
            raise bad("num_train_timesteps", self.timesteps)
        if self.noise_schedules is not None and params.get("beta_schedule") not in self.noise_schedules:
            raise bad("beta_schedule", self.noise_schedules)

    def baseline(self, name: str = "default") -> dict[str, Any]:
        if name not in self.baselines:
            raise UsageError(f"{self.name} has no baseline {name!r}; known: {', '.join(self.baselines)}")
        return dict(self.baselines[name])


TOY2D = TrainingSpace(
    name="toy2d",
    description="the thesis study's 2-D space: lr, lr scheduler, warm-up, batch size, optimizer, weight decay, timesteps",
    lr_range=(1e-5, 1e-2),
    batch_sizes=(1024, 2048, 4096),
    timesteps=(20, 40, 60, 80, 100),
    noise_schedules=None,
    # the toy-diffusion notebook's cosine noise schedule, diffusers' name for it
    fixed={"beta_schedule": "squaredcos_cap_v2"},
    baselines={
        # the thesis study's 2-D baseline: the public toy-diffusion notebook's settings
        "default": {
            "lr": 1e-3,
            "lr_scheduler": "linear",
            "warmup_ratio": 0.0,
            "batch_size": 2048,
            "optimizer": "adam",
            "num_train_timesteps": 40,
        },
    },
)

IMAGES = TrainingSpace(
    name="images",
    description="the thesis study's image space: lr, lr scheduler, warm-up, batch size, optimizer, weight decay, noise schedule",
    lr_range=(1e-5, 1e-3),
    batch_sizes=(32, 64, 128),
    timesteps=None,
    noise_schedules=NOISE_SCHEDULES,
    fixed={"num_train_timesteps": 1000},
    baselines={
        # the thesis study's image baseline: the diffusers unconditional-training tutorial's settings
        "default": {
            "lr": 4e-4,
            "lr_scheduler": "constant",
            "batch_size": 64,
            "optimizer": "adamw",
            "weight_decay": 0.01,
            "beta_schedule": "squaredcos_cap_v2",
        },
    },
)


def _space_of(ep: importlib.metadata.EntryPoint, obj: Any) -> Entry[TrainingSpace]:
    """A ``diffsearch.spaces`` entry point's object: a ``TrainingSpace`` named as the entry point."""
    if not isinstance(obj, TrainingSpace):
        raise UsageError(f"{plugins.describe(ep)} is a {type(obj).__name__}, not a TrainingSpace")
    if obj.name != ep.name:
        raise UsageError(f"{plugins.describe(ep)} is the TrainingSpace {obj.name!r}: the names must match")
    return Entry(obj.name, obj, obj.description)


SPACES: Registry[TrainingSpace] = Registry("space", plugins.SPACES_GROUP, _space_of)
for _space in (TOY2D, IMAGES):
    SPACES.register(_space.name, _space, _space.description)


def get_space(name: str) -> TrainingSpace:
    """A built-in space, or one an installed package declares (entry point group ``diffsearch.spaces``);
    a built-in name wins."""
    return SPACES.get(name)


def training_spaces() -> dict[str, TrainingSpace]:
    """``SPACES`` and the training spaces of installed packages (for listings)."""
    return {name: entry.value for name, entry in SPACES.all().items()}
