"""The ``parameters`` of a sweep file (W&B's schema plus ``when``) as a space Optuna trials draw from.

Every distribution of W&B's sweep schema is read. How each is searched, so that every searcher (random,
TPE, GP, grid) can move in it:

- ``constant``: passed as it is, never suggested; ``categorical`` (``values``): an Optuna categorical;
  ``values`` (or ``value``) under another distribution (``distribution: uniform, values: [...]``, seen in
  public sweep files) is read the same way: the values listed;
- ``int_uniform``, ``uniform``, ``log_uniform_values``: Optuna's int, float and log float distributions;
  ``log_uniform`` (W&B's bounds are natural-log exponents: the value is ``exp(U(min, max))``) and
  ``inv_log_uniform`` (``exp(-U(min, max))``) are log floats on the values' bounds, the same distribution;
  ``inv_log_uniform_values`` (1/X log-uniform over [1/max, 1/min]) is, as W&B defines it, log-uniform on
  [min, max] too;
- ``q_`` forms: the value rounded to a multiple of ``q`` (an int when q is whole), as W&B rounds it;
  ``q_uniform`` whose bounds are multiples of q is an Optuna stepped distribution;
- ``normal``, ``log_normal``, ``beta`` and their ``q_`` forms (unbounded or curved): searched as a quantile
  u in [0, 1] (uniform: a random draw has exactly the distribution) and passed as the distribution's
  inverse CDF at u (``scipy.stats``), u kept within [1e-6, 1 - 1e-6] so a normal stays finite (±4.75 sigma);
- ``categorical`` with ``probabilities``: also a quantile u, split into spans as wide as the
  probabilities, so random search draws the values with those weights; TPE and GP start from the same
  weights but see the listed order as neighbourhood.

A parameter with its own ``parameters:`` (W&B's nested parameters) is flattened for searching: its
parameters are named ``outer.inner`` (Optuna params, ``when`` parents, results), and the program gets them
nested again (``{"outer": {"inner": value}}``), as W&B passes them in ``wandb.config``.

A ``when: {parent: value | [values] | {not: value | [values]}}`` makes a parameter conditional on a
categorical parent: it is drawn only in trials where every parent is active and matches, so an inactive
parameter is neither an Optuna param nor on the program's command line. Parameters are drawn parents
first (a topological order that otherwise keeps the file's order).
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from diffsearch.errors import UsageError

# distribution -> the keys it takes besides ``distribution`` and ``when`` (W&B's schema, with its defaults)
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values", "probabilities"),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
    "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}
# searched as a quantile in [0, 1], passed as scipy.stats' inverse CDF there
QUANTILE_KINDS = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")
QUANTILE_EDGE = 1e-6
GRID_KINDS = ("constant", "categorical", "int_uniform", "q_uniform")  # what W&B's grid search takes


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
    name: str  # dotted for a nested parameter: outer.inner
    kind: str  # a key of DISTRIBUTIONS
    distribution: BaseDistribution | None  # None for a constant
    value: Any = None  # the constant
    q: float | None = None  # q_ forms: the program gets round(x / q) * q
    conditions: tuple[Condition, ...] = ()
    path: tuple[str, ...] = ()  # where the value goes in the program's (nested) values
    settings: tuple = ()  # (key, value) pairs of the distribution (mu, sigma, a, b, min...)
    weighted: tuple = ()  # categorical with probabilities: (values, cumulative probabilities)
    listed: tuple = ()  # values that are lists or mappings; Optuna's choices are their JSON

    @property
    def choices(self) -> tuple:
        if self.weighted:
            return self.weighted[0]
        if self.listed:
            return self.listed
        return tuple(self.distribution.choices) if isinstance(self.distribution, CategoricalDistribution) else ()


class Space:
    """Parameters in drawing order (parents first)."""

    def __init__(self, parameters: list[Parameter]):
        self.parameters = parameters

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The active parameters' values as the program gets them (constants included, nested ones nested)."""
        drawn: dict[str, Any] = {}
        for p in self.parameters:
            if not all(c.parent in drawn and c.holds(drawn[c.parent]) for c in p.conditions):
                continue
            drawn[p.name] = p.value if p.distribution is None else _suggest(trial, p)
        return self.nested(drawn)

    def nested(self, drawn: Mapping[str, Any]) -> dict[str, Any]:
        """Values by parameter name as the program gets them: a nested parameter inside its parent's dict."""
        values: dict[str, Any] = {}
        for p in self.parameters:
            if p.name not in drawn:
                continue
            path = p.path or (p.name,)
            inner = values
            for key in path[:-1]:
                inner = inner.setdefault(key, {})
            inner[path[-1]] = drawn[p.name]
        return values

    def as_grid(self, where: str) -> "Space":
        """The space W&B's grid search walks: int_uniform as every whole number of [min, max], q_uniform as
        numpy's ``arange(min, max, q)`` (max left out, as W&B's grid does); other distributions refused."""
        import numpy as np

        grid = []
        for p in self.parameters:
            settings = dict(p.settings)
            if p.kind not in GRID_KINDS or p.weighted:
                what = "probabilities" if p.weighted else f"distribution {p.kind}"
                raise UsageError(
                    f"{where}: parameters.{p.name}: method grid needs `values` (or int_uniform, "
                    f"q_uniform) for every parameter, as W&B's grid does; {what} has no grid: list "
                    "`values: [...]`, or use method: random, tpe or bayes"
                )
            if p.kind == "int_uniform":
                p = replace(p, distribution=CategoricalDistribution(tuple(range(settings["min"], settings["max"] + 1))))
            elif p.kind == "q_uniform":
                q = settings["q"]
                points = [_rounded(v, q) for v in np.arange(settings["min"], settings["max"], q).tolist()]
                p = replace(p, distribution=CategoricalDistribution(tuple(points)), q=None)
            grid.append(p)
        return Space(grid)

    def grid(self, where: str) -> dict[str, list]:
        """Optuna GridSampler's search space: every drawn parameter must be a categorical."""
        grid = {}
        for p in self.parameters:
            if p.distribution is None:
                continue
            if not isinstance(p.distribution, CategoricalDistribution):
                raise UsageError(
                    f"{where}: parameters.{p.name}: method grid needs `values` for every parameter "
                    f"(got distribution {p.kind})"
                )
            grid[p.name] = list(p.distribution.choices)
        if not grid:
            raise UsageError(f"{where}: method grid needs at least one parameter with `values`")
        return grid


def _suggest(trial: optuna.Trial, p: Parameter) -> Any:
    d = p.distribution
    if isinstance(d, CategoricalDistribution):
        choice = trial.suggest_categorical(p.name, d.choices)
        return p.listed[d.choices.index(choice)] if p.listed else choice
    if isinstance(d, IntDistribution):
        return trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
    value = trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
    if p.weighted:
        values, cumulative = p.weighted
        return values[min(bisect.bisect_right(cumulative, value), len(values) - 1)]
    if p.kind in QUANTILE_KINDS:
        value = _inverse_cdf(p, min(max(value, QUANTILE_EDGE), 1 - QUANTILE_EDGE))
        return value if p.q is None else _rounded(round(value / p.q) * p.q, p.q)
    if p.q is None:
        return value
    # W&B's q_ forms: a draw rounded to a multiple of q, kept inside [min, max]
    low, high = math.ceil(d.low / p.q - 1e-9), math.floor(d.high / p.q + 1e-9)
    return _rounded(min(max(round(value / p.q), low), high) * p.q, p.q)


def _inverse_cdf(p: Parameter, u: float) -> float:
    """The value at quantile u of W&B's normal, log_normal or beta (scipy.stats, W&B's parameterisation)."""
    import numpy as np
    from scipy import stats

    s = dict(p.settings)
    with np.errstate(over="ignore"):  # an overflow is inf, which parsing refuses
        if p.kind in ("normal", "q_normal"):
            return float(stats.norm.ppf(u, loc=s["mu"], scale=s["sigma"]))
        if p.kind in ("log_normal", "q_log_normal"):
            return float(stats.lognorm.ppf(u, s=s["sigma"], scale=math.exp(s["mu"])))
        return float(stats.beta.ppf(u, a=s["a"], b=s["b"]))


def _rounded(value: float, q: float) -> int | float:
    """A multiple of q: an int when q is whole (the program gets 32, not 32.0), else 12 significant digits
    (0.3, not 0.30000000000000004)."""
    if float(q).is_integer():
        return int(round(value))
    return float(f"{value:.12g}")


def parse_parameters(spec: Any, where: str) -> Space:
    """Check ``parameters`` (one line naming ``where`` and the key for anything wrong) and build the space."""
    if not isinstance(spec, Mapping) or not spec:
        raise UsageError(f"{where}: parameters: expected a mapping of parameter name -> settings, got {_shown(spec)}")
    flat: dict[str, tuple[tuple[str, ...], Any, str]] = {}
    _flatten(spec, (), where, "parameters", flat)
    parsed = {name: replace(_parse_one(name, settings, key), path=path) for name, (path, settings, key) in flat.items()}
    conditioned = {
        name: _parse_when(name, flat[name][1].get("when"), parsed, f"{flat[name][2]}.when") for name in parsed
    }
    order = _parents_first(conditioned, where)
    return Space([replace(parsed[name], conditions=conditioned[name]) for name in order])


def _flatten(
    spec: Mapping, path: tuple[str, ...], where: str, key: str, flat: dict[str, tuple[tuple[str, ...], Any, str]]
) -> None:
    """Parameters by dotted name, nested ones (``outer: {parameters: {inner: ...}}``) included."""
    for name, settings in spec.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: {key}: a parameter name must be text (got {name!r})")
        here = f"{where}: {key}.{name}"
        if isinstance(settings, Mapping) and "parameters" in settings:
            extra = [k for k in settings if k != "parameters"]
            if extra:
                raise UsageError(f"{here}: a nested parameter holds only `parameters:` (got also {extra})")
            inner = settings["parameters"]
            if not isinstance(inner, Mapping) or not inner:
                raise UsageError(
                    f"{here}.parameters: expected a mapping of parameter name -> settings, got {_shown(inner)}"
                )
            _flatten(inner, path + (name,), where, f"{key}.{name}.parameters", flat)
            continue
        dotted = ".".join(path + (name,))
        if dotted in flat:
            raise UsageError(
                f"{here}: the nested parameter is named {dotted!r}, as "
                f"{flat[dotted][2].split(': ', 1)[1]} is: rename one of them"
            )
        flat[dotted] = (path + (name,), settings, here)


def _parse_one(name: str, settings: Any, where: str) -> Parameter:
    if not isinstance(settings, Mapping):
        raise UsageError(
            f"{where}: expected a mapping such as {{values: [a, b]}} or "
            f"{{distribution: uniform, min: 0, max: 1}}, got {_shown(settings)}"
        )
    kind = settings["distribution"] if "distribution" in settings else _implied_distribution(settings, where)
    if kind == "categorical_w_probabilities":  # the name W&B's schema gives a categorical with probabilities
        if "probabilities" not in settings:
            raise UsageError(f"{where}: distribution categorical_w_probabilities needs `probabilities`")
        kind = "categorical"
    if not isinstance(kind, str) or kind not in DISTRIBUTIONS:
        raise UsageError(
            f"{where}.distribution: unknown distribution {_shown(kind)}; known: {', '.join(DISTRIBUTIONS)}"
        )
    if kind not in ("categorical", "constant") and ("values" in settings or "value" in settings):
        # `values` (or `value`) under another distribution, as public sweep files write it: what is listed
        if any(key in settings for key in ("min", "max")):
            raise UsageError(f"{where}: give `values` (or `value`) or `min` and `max`, not both")
        kind = "categorical" if "values" in settings else "constant"
    allowed = {"distribution", "when", *DISTRIBUTIONS[kind]}
    for key in settings:
        if key not in allowed:
            raise UsageError(
                f"{where}: unknown key {key!r} for distribution {kind} (it takes: {', '.join(sorted(allowed))})"
            )
    if kind == "constant":
        if "value" not in settings:
            raise UsageError(f"{where}: distribution constant needs `value`")
        return Parameter(name, kind, None, value=_constant(settings["value"], f"{where}.value"))
    if kind == "categorical":
        return _categorical(name, settings, where)
    if kind in QUANTILE_KINDS:
        return _quantile(name, kind, settings, where)
    for key in ("min", "max"):
        if key not in settings:
            raise UsageError(f"{where}: distribution {kind} needs `min` and `max`")
    low, high = _number(settings["min"], f"{where}.min"), _number(settings["max"], f"{where}.max")
    if not low < high:
        raise UsageError(f"{where}: min {low} must be below max {high}")
    if kind == "int_uniform":
        low, high = _integer(low, f"{where}.min"), _integer(high, f"{where}.max")
        return Parameter(name, kind, IntDistribution(low, high), settings=(("min", low), ("max", high)))
    if kind == "uniform":
        return Parameter(name, kind, FloatDistribution(low, high))
    q = None
    if kind.startswith("q_"):
        q = _number(settings.get("q", 1), f"{where}.q")  # W&B's default q
        if q <= 0:
            raise UsageError(f"{where}.q: must be above 0 (got {q})")
    if kind == "q_uniform":
        return _q_uniform(name, low, high, q, where)
    # the log forms: bounds of the values, from W&B's exponents where it takes exponents
    if kind in ("log_uniform", "q_log_uniform"):
        low, high = _exp(low, f"{where}.min"), _exp(high, f"{where}.max")
    elif kind == "inv_log_uniform":
        low, high = _exp(-high, f"{where}.max"), _exp(-low, f"{where}.min")
    elif low <= 0:
        raise UsageError(f"{where}: {kind} needs min > 0 (got {low})")
    if q is not None and math.floor(high / q + 1e-9) < math.ceil(low / q - 1e-9):
        raise UsageError(f"{where}: no multiple of q {q} lies between {low:g} and {high:g}")
    return Parameter(name, kind, FloatDistribution(low, high, log=True), q=q)


def _categorical(name: str, settings: Mapping, where: str) -> Parameter:
    values = settings.get("values")
    if not isinstance(values, list) or not values:
        raise UsageError(f"{where}.values: expected a non-empty list, got {_shown(values)}")
    choices = tuple(_constant(v, f"{where}.values") for v in values)
    keys = [json.dumps(v, sort_keys=True) for v in choices]
    if len(set(keys)) < len(keys):
        raise UsageError(f"{where}.values: a value is listed twice")
    if "probabilities" not in settings:
        if any(isinstance(v, (list, dict)) for v in choices):  # W&B takes any value: Optuna holds its JSON
            return Parameter(name, "categorical", CategoricalDistribution(tuple(keys)), listed=choices)
        return Parameter(name, "categorical", CategoricalDistribution(choices))
    weights = settings["probabilities"]
    if (
        not isinstance(weights, list)
        or len(weights) != len(choices)
        or not all(not isinstance(w, bool) and isinstance(w, (int, float)) and w >= 0 for w in weights)
    ):
        raise UsageError(
            f"{where}.probabilities: expected {len(choices)} numbers of at least 0, one per value, "
            f"got {_shown(weights)}"
        )
    if not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        raise UsageError(f"{where}.probabilities: must add up to 1 (they add up to {sum(weights):g})")
    cumulative, total = [], 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    return Parameter(name, "categorical", FloatDistribution(0.0, 1.0), weighted=(choices, tuple(cumulative)))


def _quantile(name: str, kind: str, settings: Mapping, where: str) -> Parameter:
    """normal, log_normal, beta and their q_ forms, with W&B's defaults (mu 0, sigma 1, a 1, b 1, q 1)."""
    if kind in ("beta", "q_beta"):
        values = {"a": settings.get("a", 1), "b": settings.get("b", 1)}
    else:
        values = {"mu": settings.get("mu", 0), "sigma": settings.get("sigma", 1)}
    for key, value in values.items():
        values[key] = _number(value, f"{where}.{key}")
        if key != "mu" and values[key] <= 0:
            raise UsageError(f"{where}.{key}: must be above 0 (got {values[key]})")
    q = None
    if kind.startswith("q_"):
        q = _number(settings.get("q", 1), f"{where}.q")
        if q <= 0:
            raise UsageError(f"{where}.q: must be above 0 (got {q})")
    parameter = Parameter(name, kind, FloatDistribution(0.0, 1.0), q=q, settings=tuple(values.items()))
    for u in (QUANTILE_EDGE, 1 - QUANTILE_EDGE):  # the extremes a trial can get must be numbers
        try:
            edge = _inverse_cdf(parameter, u)
        except OverflowError:
            edge = math.inf
        if not math.isfinite(edge) or (q is not None and not math.isfinite(edge / q)):
            raise UsageError(
                f"{where}: {kind} with {', '.join(f'{k} {v:g}' for k, v in values.items())} reaches "
                f"{edge:g} at its {u:g} quantile: use a smaller mu or sigma"
            )
    return parameter


def _q_uniform(name: str, low: float, high: float, q: float, where: str) -> Parameter:
    """Bounds on multiples of q: Optuna's stepped distribution; otherwise a draw rounded as W&B rounds it."""
    settings = (("min", low), ("max", high), ("q", q))
    on_grid = all(abs(v - round(v / q) * q) <= 1e-9 * max(abs(v), 1e-12) for v in (low, high))
    if on_grid and all(float(v).is_integer() for v in (low, high, q)):  # whole numbers: ints, not 32.0
        return Parameter(name, "q_uniform", IntDistribution(int(low), int(high), step=int(q)), settings=settings)
    if on_grid:
        return Parameter(name, "q_uniform", FloatDistribution(low, high, step=q), settings=settings)
    if math.floor(high / q + 1e-9) < math.ceil(low / q - 1e-9):
        raise UsageError(f"{where}: no multiple of q {q} lies between min {low} and max {high}")
    return Parameter(name, "q_uniform", FloatDistribution(low, high), q=q, settings=settings)


def _exp(exponent: float, where: str) -> float:
    try:
        value = math.exp(exponent)
    except OverflowError:
        value = math.inf
    if not 0 < value < math.inf:
        raise UsageError(
            f"{where}: exp({exponent:g}) is out of range: W&B's log_uniform and inv_log_uniform "
            "take natural-log exponents; for bounds as values write log_uniform_values"
        )
    return value


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
        raise UsageError(f"{where}: expected a mapping {{parent: value | [values] | {{not: ...}}}}, got {_shown(when)}")
    conditions = []
    for written, test in when.items():
        parent = _in_scope(written, name, parsed)
        if parent is None:
            raise UsageError(f"{where}: unknown parent {written!r} (not a parameter of this sweep)")
        if parsed[parent].kind != "categorical":
            raise UsageError(
                f"{where}.{parent}: the parent must be a categorical parameter (`values`), not {parsed[parent].kind}"
            )
        negate = isinstance(test, Mapping)
        if negate:
            if set(test) != {"not"}:
                raise UsageError(
                    f"{where}.{parent}: a mapping here must be {{not: value | [values]}}, "
                    f"got keys {sorted(map(str, test))}"
                )
            test = test["not"]
        values = tuple(test) if isinstance(test, list) else (test,)
        for value in values:
            if value not in parsed[parent].choices:
                raise UsageError(f"{where}.{parent}: {value!r} is not one of its values {list(parsed[parent].choices)}")
        conditions.append(Condition(parent, values, negate))
    return tuple(conditions)


def _in_scope(parent: Any, child: str, parsed: Mapping[str, Parameter]) -> str | None:
    """The parameter a ``when`` names: its dotted name, or a name beside the child inside the same nested
    parameter (``lr`` for ``optimizer.momentum`` is ``optimizer.lr``), nearest scope first."""
    if not isinstance(parent, str):
        return None
    scope = child.rpartition(".")[0]
    while scope:
        if f"{scope}.{parent}" in parsed:
            return f"{scope}.{parent}"
        scope = scope.rpartition(".")[0]
    return parent if parent in parsed else None


def _parents_first(conditioned: Mapping[str, tuple[Condition, ...]], where: str) -> list[str]:
    """A topological order of the parameters (parents before children); a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" on the current path, "done" once placed

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name) :] + [name]
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


def _constant(value: Any, where: str) -> Any:
    """A value may be any plain value W&B would pass (a list or mapping too); JSON is what studies keep."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expected a value JSON can hold, got {_shown(value)}") from None
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
