"""The ``parameters`` of a sweep file (W&B's schema plus ``when``) as a space Optuna trials draw from.

Each parameter becomes an Optuna distribution (a constant is passed as it is and never suggested). A
``when: {parent: value | [values] | {not: value | [values]}}`` makes a parameter conditional on a
categorical parent: it is drawn only in trials where every parent is active and matches, so an inactive
parameter is neither an Optuna param nor on the program's command line. Parameters are drawn parents
first (a topological order that otherwise keeps the file's order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from diffsearch.errors import UsageError

# distribution -> the keys it takes besides ``distribution`` and ``when``
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "uniform": ("min", "max"),
    "int_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
}
_CHOICE_TYPES = (str, int, float, bool, type(None))  # what an Optuna categorical can hold


@dataclass(frozen=True)
class Condition:
    """Active when the parent's value is (or, negated, is not) one of ``values``."""

    parent: str
    values: tuple
    negate: bool = False

    def holds(self, value: Any) -> bool:
        return (value in self.values) != self.negate


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str                                # a key of DISTRIBUTIONS
    distribution: BaseDistribution | None    # None for a constant
    value: Any = None                        # the constant
    q: float | None = None                   # q_log_uniform_values: the program gets round(x / q) * q
    conditions: tuple[Condition, ...] = ()

    @property
    def choices(self) -> tuple:
        return tuple(self.distribution.choices) if isinstance(self.distribution, CategoricalDistribution) else ()


class Space:
    """Parameters in drawing order (parents first)."""

    def __init__(self, parameters: list[Parameter]):
        self.parameters = parameters

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The active parameters' values, as the program gets them (constants included)."""
        values: dict[str, Any] = {}
        for p in self.parameters:
            if not all(c.parent in values and c.holds(values[c.parent]) for c in p.conditions):
                continue
            if p.distribution is None:
                values[p.name] = p.value
            else:
                values[p.name] = _suggest(trial, p)
        return values

    def grid(self, where: str) -> dict[str, list]:
        """Optuna GridSampler's search space: every drawn parameter must be a categorical."""
        grid = {}
        for p in self.parameters:
            if p.distribution is None:
                continue
            if not isinstance(p.distribution, CategoricalDistribution):
                raise UsageError(f"{where}: parameters.{p.name}: method grid needs `values` for every parameter "
                                 f"(got distribution {p.kind})")
            grid[p.name] = list(p.distribution.choices)
        if not grid:
            raise UsageError(f"{where}: method grid needs at least one parameter with `values`")
        return grid


def _suggest(trial: optuna.Trial, p: Parameter) -> Any:
    d = p.distribution
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(p.name, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
    value = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
    if p.q is None:
        return value
    # W&B's q_log_uniform_values: a log-uniform draw rounded to a multiple of q, kept inside [min, max]
    low, high = math.ceil(d.low / p.q - 1e-9), math.floor(d.high / p.q + 1e-9)
    steps = min(max(round(value / p.q), low), high)
    return int(steps * p.q) if float(p.q).is_integer() else steps * p.q


def parse_parameters(spec: Any, where: str) -> Space:
    """Check ``parameters`` (one line naming ``where`` and the key for anything wrong) and build the space."""
    if not isinstance(spec, Mapping) or not spec:
        raise UsageError(f"{where}: parameters: expected a mapping of parameter name -> settings, "
                         f"got {_shown(spec)}")
    parsed = {}
    for name, settings in spec.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: parameters: a parameter name must be text (got {name!r})")
        parsed[name] = _parse_one(name, settings, f"{where}: parameters.{name}")
    conditioned = {name: _parse_when(name, spec[name].get("when"), parsed, f"{where}: parameters.{name}.when")
                   for name in parsed}
    order = _parents_first(conditioned, where)
    return Space([replace(parsed[name], conditions=conditioned[name]) for name in order])


def _parse_one(name: str, settings: Any, where: str) -> Parameter:
    if not isinstance(settings, Mapping):
        raise UsageError(f"{where}: expected a mapping such as {{values: [a, b]}} or "
                         f"{{distribution: uniform, min: 0, max: 1}}, got {_shown(settings)}")
    kind = settings["distribution"] if "distribution" in settings else _implied_distribution(settings, where)
    if kind not in DISTRIBUTIONS:
        raise UsageError(f"{where}.distribution: unknown distribution {kind!r}; known: {', '.join(DISTRIBUTIONS)}")
    allowed = {"distribution", "when", *DISTRIBUTIONS[kind]}
    for key in settings:
        if key not in allowed:
            raise UsageError(f"{where}: unknown key {key!r} for distribution {kind} "
                             f"(it takes: {', '.join(sorted(allowed))})")
    if kind == "constant":
        if "value" not in settings:
            raise UsageError(f"{where}: distribution constant needs `value`")
        return Parameter(name, kind, None, value=_choice(settings["value"], f"{where}.value"))
    if kind == "categorical":
        values = settings.get("values")
        if not isinstance(values, list) or not values:
            raise UsageError(f"{where}.values: expected a non-empty list, got {_shown(values)}")
        choices = tuple(_choice(v, f"{where}.values") for v in values)
        if len({repr(c) for c in choices}) < len(choices):
            raise UsageError(f"{where}.values: a value is listed twice")
        return Parameter(name, kind, CategoricalDistribution(choices))
    for key in ("min", "max"):
        if key not in settings:
            raise UsageError(f"{where}: distribution {kind} needs `min` and `max`")
    low, high = _number(settings["min"], f"{where}.min"), _number(settings["max"], f"{where}.max")
    if not low < high:
        raise UsageError(f"{where}: min {low} must be below max {high}")
    if kind == "int_uniform":
        low, high = _integer(low, f"{where}.min"), _integer(high, f"{where}.max")
        return Parameter(name, kind, IntDistribution(low, high))
    if kind in ("log_uniform_values", "q_log_uniform_values") and low <= 0:
        raise UsageError(f"{where}: {kind} needs min > 0 (got {low})")
    if kind == "uniform":
        return Parameter(name, kind, FloatDistribution(low, high))
    if kind == "log_uniform_values":
        return Parameter(name, kind, FloatDistribution(low, high, log=True))
    q = _number(settings.get("q", 1), f"{where}.q")  # W&B's default q
    if q <= 0:
        raise UsageError(f"{where}.q: must be above 0 (got {q})")
    if kind == "q_log_uniform_values":
        if math.floor(high / q + 1e-9) < math.ceil(low / q - 1e-9):
            raise UsageError(f"{where}: no multiple of q {q} lies between min {low} and max {high}")
        return Parameter(name, kind, FloatDistribution(low, high, log=True), q=q)
    steps = (high - low) / q
    if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
        raise UsageError(f"{where}: max - min ({high - low}) must be a multiple of q {q}")
    if all(float(v).is_integer() for v in (low, high, q)):  # whole numbers: the program gets ints, not 32.0
        return Parameter(name, kind, IntDistribution(int(low), int(high), step=int(q)))
    return Parameter(name, kind, FloatDistribution(low, high, step=q))


def _implied_distribution(settings: Mapping, where: str) -> str:
    """W&B's rules when ``distribution`` is left out: value, values, or min/max (ints: int_uniform)."""
    if "value" in settings:
        return "constant"
    if "values" in settings:
        return "categorical"
    if "min" in settings and "max" in settings:
        ints = all(isinstance(settings[k], int) and not isinstance(settings[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    raise UsageError(f"{where}: give `value`, `values`, or `min` and `max` (with a `distribution`)")


def _parse_when(name: str, when: Any, parsed: Mapping[str, Parameter], where: str) -> tuple[Condition, ...]:
    if when is None:
        return ()
    if not isinstance(when, Mapping) or not when:
        raise UsageError(f"{where}: expected a mapping {{parent: value | [values] | {{not: ...}}}}, "
                         f"got {_shown(when)}")
    conditions = []
    for parent, test in when.items():
        if parent not in parsed:
            raise UsageError(f"{where}: unknown parent {parent!r} (not a parameter of this sweep)")
        if parsed[parent].kind != "categorical":
            raise UsageError(f"{where}.{parent}: the parent must be a categorical parameter (`values`), "
                             f"not {parsed[parent].kind}")
        negate = isinstance(test, Mapping)
        if negate:
            if set(test) != {"not"}:
                raise UsageError(f"{where}.{parent}: a mapping here must be {{not: value | [values]}}, "
                                 f"got keys {sorted(map(str, test))}")
            test = test["not"]
        values = tuple(test) if isinstance(test, list) else (test,)
        for value in values:
            if value not in parsed[parent].choices:
                raise UsageError(f"{where}.{parent}: {value!r} is not one of its values "
                                 f"{list(parsed[parent].choices)}")
        conditions.append(Condition(parent, values, negate))
    return tuple(conditions)


def _parents_first(conditioned: Mapping[str, tuple[Condition, ...]], where: str) -> list[str]:
    """A topological order of the parameters (parents before children); a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" on the current path, "done" once placed

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise UsageError(f"{where}: parameters.{name}.when: conditions form a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for condition in conditioned[name]:
            visit(condition.parent, path + [name])
        state[name] = "done"
        order.append(name)

    for name in conditioned:
        visit(name, [])
    return order


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, str):  # PyYAML reads 1e-5 (no dot) as text; the intent is plain
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: expected a finite number, got {_shown(value)}")
    return value


def _integer(value: float | int, where: str) -> int:
    if not float(value).is_integer():
        raise UsageError(f"{where}: int_uniform needs whole numbers, got {value}")
    return int(value)


def _choice(value: Any, where: str) -> Any:
    if not isinstance(value, _CHOICE_TYPES):
        raise UsageError(f"{where}: values must be text, numbers, booleans or null, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
