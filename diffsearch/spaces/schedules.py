"""The sampling-schedule space: the N timesteps of a short sampler of a pretrained model, and its free settings.

A point is N numbers in [0, 1] (``gap_1`` .. ``gap_N``) plus the solver's free settings (the order of
DPM-Solver++). Every point of the closed box is a valid schedule, so any searcher can move in it freely:

- stick-breaking from the top of the model's range: step k takes the fraction ``f_k`` of what is left above
  the bottom, ``s_k = s_{k-1} (1 - f_k)`` with ``s_0`` the whole range, so ``s`` never increases and stays
  inside the range;
- ``f_k = gap_k ** a_k`` with ``0.5 ** a_k = 1 / (N - k + 2)``: the box centre (all 0.5) is the evenly spaced
  schedule (N + 1 equal gaps), ``gap_1 = 0`` starts at the very top (diffusers' ``trailing``);
- strict decrease after rounding: a discrete-time model (epsilon or v prediction, ``num_train_timesteps``
  T) gets integer timesteps ``t_k = floor(s_k) + (N - k)`` with ``s`` in ``[0, T - N + 1)``, so consecutive
  steps differ by at least 1 and ``T - 1 >= t_1 > ... > t_N >= 0``; a flow-matching model gets sigmas
  ``sigma_k = lo + (N - k) g + (1 - lo - (N - 1) g) s_k`` (before the scheduler's shift) with a minimum gap g.

``encode`` maps any valid schedule back to its point (exactly for integer timesteps), so the baselines
(uniform spacing, Align Your Steps) are points of the same space and searches can start from them.

Solvers are diffusers schedulers that accept a custom schedule (``set_timesteps(timesteps=...)`` or
``sigmas=``), so what the search finds is reproduced by the user's own pipeline:

- ``ddim``: deterministic DDIM, i.e. DPM-Solver++ of order 1 (Lu et al. 2022 show the first-order solver is
  DDIM), run by ``DPMSolverMultistepScheduler(solver_order=1)``; diffusers' ``DDIMScheduler`` computes the
  previous timestep from a fixed stride and takes no custom list, so it only serves the uniform baselines
  (and DDIM's eta is no free setting here: eta > 0 has no custom-timestep scheduler in diffusers);
- ``dpm++``: DPM-Solver++ (multistep, Lu et al. 2022), the order (1, 2, 3) is searched with the timesteps;
- ``euler``: flow-matching Euler (``FlowMatchEulerDiscreteScheduler``, SD3 / FLUX), custom ``sigmas``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from diffsearch.errors import UsageError

# solver -> (prediction kinds it serves, free settings it has, one line)
SOLVERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "ddim": (
        ("epsilon", "v_prediction"),
        (),
        "deterministic DDIM (DPM-Solver++ of order 1, DPMSolverMultistepScheduler(solver_order=1))",
    ),
    "dpm++": (
        ("epsilon", "v_prediction"),
        ("order",),
        "DPM-Solver++ multistep (Lu et al. 2022); its order 1, 2 or 3 is searched too",
    ),
    "euler": (("flow",), (), "flow-matching Euler (FlowMatchEulerDiscreteScheduler; SD3, FLUX), custom sigmas"),
}
ORDERS = (1, 2, 3)
FLOW_MIN_GAP = 1e-3  # sigmas of a flow schedule differ by at least this much (before the scheduler's shift)


def default_solver(prediction: str) -> str:
    return "euler" if prediction == "flow" else "dpm++"


@dataclass(frozen=True)
class Schedule:
    """One sampler: a solver, its order, and N strictly decreasing timesteps (discrete) or sigmas (flow)."""

    solver: str
    timesteps: tuple[int, ...] = ()  # discrete-time models, T - 1 >= t_1 > ... > t_N >= 0
    sigmas: tuple[float, ...] = ()  # flow models: 1 >= sigma_1 > ... > sigma_N > 0, before the shift
    order: int = 1

    @property
    def nfe(self) -> int:
        return len(self.sigmas) if self.solver == "euler" else len(self.timesteps)

    def call_kwargs(self) -> dict[str, Any]:
        """What the pipeline's ``__call__`` takes for this schedule."""
        return {"sigmas": list(self.sigmas)} if self.solver == "euler" else {"timesteps": list(self.timesteps)}

    def to_dict(self) -> dict[str, Any]:
        d = {"solver": self.solver, "nfe": self.nfe, "order": self.order}
        return d | (
            {"sigmas": [float(s) for s in self.sigmas]}
            if self.solver == "euler"
            else {"timesteps": [int(t) for t in self.timesteps]}
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schedule":
        return cls(
            d["solver"],
            tuple(int(t) for t in d.get("timesteps", ())),
            tuple(float(s) for s in d.get("sigmas", ())),
            int(d.get("order", 1)),
        )

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class ModelRange:
    """What a model allows: its prediction kind and its training timesteps (flow: sigmas in (lo, 1])."""

    prediction: str  # epsilon, v_prediction, flow
    num_train_timesteps: int = 1000

    @property
    def flow(self) -> bool:
        return self.prediction == "flow"


@dataclass(frozen=True)
class ScheduleSpace:
    """N steps of ``solver`` on a model with ``model_range``; points are dicts of Optuna params."""

    nfe: int
    solver: str
    model_range: ModelRange
    free: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise UsageError(f"unknown --solver {self.solver!r}; known: {', '.join(SOLVERS)}")
        kinds, free, _ = SOLVERS[self.solver]
        if self.model_range.prediction not in kinds:
            raise UsageError(
                f"--solver {self.solver} does not serve a {self.model_range.prediction}-prediction "
                f"model; use --solver {default_solver(self.model_range.prediction)}"
            )
        T = self.model_range.num_train_timesteps
        if self.nfe < 1 or (not self.model_range.flow and self.nfe > T):
            raise UsageError(f"--nfe must be between 1 and the model's {T} training timesteps (got {self.nfe})")
        if self.model_range.flow and self.nfe > T:
            raise UsageError(f"--nfe must be between 1 and {T} (got {self.nfe})")
        object.__setattr__(self, "free", free)

    # ---- the box ------------------------------------------------------------------------------------
    @property
    def gap_names(self) -> list[str]:
        return [f"gap_{k + 1}" for k in range(self.nfe)]

    def distributions(self) -> dict[str, BaseDistribution]:
        d: dict[str, BaseDistribution] = {name: FloatDistribution(0.0, 1.0) for name in self.gap_names}
        if "order" in self.free:
            d["order"] = CategoricalDistribution(ORDERS)
        return d

    def _exponents(self) -> np.ndarray:
        n = self.nfe
        return np.array([math.log2(n - k + 2) for k in range(1, n + 1)])  # 0.5 ** a_k = 1 / (N - k + 2)

    def _levels(self, params: dict[str, Any]) -> np.ndarray:
        """s_k / s_0 in [0, 1], non-increasing (stick-breaking)."""
        gaps = np.clip(np.array([float(params[name]) for name in self.gap_names]), 0.0, 1.0)
        fractions = gaps ** self._exponents()
        return np.cumprod(1.0 - fractions)

    # ---- point <-> schedule -------------------------------------------------------------------------
    def decode(self, params: dict[str, Any]) -> Schedule:
        levels = self._levels(params)
        order = int(params.get("order", 1)) if "order" in self.free else 1
        n, T = self.nfe, self.model_range.num_train_timesteps
        if self.model_range.flow:
            lo, g = 1.0 / T, FLOW_MIN_GAP if n > 1 else 0.0
            span = 1.0 - lo - (n - 1) * g
            sigmas = tuple(float(lo + (n - 1 - k) * g + span * levels[k]) for k in range(n))
            return Schedule(self.solver, sigmas=sigmas, order=order)
        top = T - n + 1 - 1e-6  # s in [0, T - N + 1): floor(s) <= T - N
        s = top * levels
        timesteps = tuple(int(math.floor(s[k])) + (n - 1 - k) for k in range(n))
        return Schedule(self.solver, timesteps=timesteps, order=order)

    def encode(self, schedule: Schedule) -> dict[str, Any]:
        """The point whose decoding is ``schedule`` (exact for integer timesteps; flow: to float precision)."""
        n, T = self.nfe, self.model_range.num_train_timesteps
        self.check(schedule)
        if self.model_range.flow:
            lo, g = 1.0 / T, FLOW_MIN_GAP if n > 1 else 0.0
            span = 1.0 - lo - (n - 1) * g
            levels = np.array([(schedule.sigmas[k] - lo - (n - 1 - k) * g) / span for k in range(n)])
            levels = np.minimum.accumulate(np.clip(levels, 0.0, 1.0))
        else:
            top = T - n + 1 - 1e-6
            base = np.array([schedule.timesteps[k] - (n - 1 - k) for k in range(n)], dtype=float)
            if np.any(np.diff(base) > 0) or base.min() < 0:
                raise UsageError(f"timesteps {list(schedule.timesteps)} are not strictly decreasing inside the range")
            levels = (base + 0.5) / top  # the middle of the unit interval that floors to base
        previous = np.concatenate([[1.0], levels[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            fractions = np.where(previous > 0, 1.0 - levels / previous, 0.0)
        gaps = np.clip(fractions, 0.0, 1.0) ** (1.0 / self._exponents())
        params: dict[str, Any] = {name: float(v) for name, v in zip(self.gap_names, gaps)}
        if "order" in self.free:
            params["order"] = schedule.order if schedule.order in ORDERS else 2
        return params

    def centre(self) -> dict[str, Any]:
        """The evenly spaced schedule (N + 1 equal gaps), order 2 where the order is free."""
        return {name: 0.5 for name in self.gap_names} | ({"order": 2} if "order" in self.free else {})

    def check(self, schedule: Schedule) -> None:
        """UsageError unless ``schedule`` has N strictly decreasing steps inside the model's range."""
        T = self.model_range.num_train_timesteps
        values = schedule.sigmas if self.model_range.flow else schedule.timesteps
        low, high = (0.0, 1.0) if self.model_range.flow else (0, T - 1)
        if len(values) != self.nfe:
            raise UsageError(f"the schedule has {len(values)} steps; this space has {self.nfe}")
        if any(b >= a for a, b in zip(values, values[1:])) or min(values) < low or max(values) > high:
            raise UsageError(f"the schedule {list(values)} is not strictly decreasing inside [{low}, {high}]")

    def describe(self) -> str:
        free = f" + {', '.join(self.free)}" if self.free else ""
        return f"{self.nfe} steps of {self.solver}: {self.nfe} gaps in [0, 1]{free}"


def schedule_from_json(text: str) -> Schedule:
    return Schedule.from_dict(json.loads(text))


def describe_space() -> str:
    """One line for ``diffsearch list``."""
    return (
        "N timesteps of a short sampler (stick-breaking gaps in [0, 1]^N: every point a strictly "
        "decreasing schedule inside the model's range) + DPM-Solver++ order"
    )


__all__ = [
    "FLOW_MIN_GAP",
    "ModelRange",
    "ORDERS",
    "SOLVERS",
    "Schedule",
    "ScheduleSpace",
    "default_solver",
    "describe_space",
    "schedule_from_json",
    "asdict",
]
