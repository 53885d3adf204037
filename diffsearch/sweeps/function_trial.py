"""One trial of ``diffsearch.search``: a Python function ``objective(params, report) -> float``.

``report(step, value)`` reports an intermediate value and raises ``optuna.TrialPruned`` when the pruner
says so. An exception, or a value that is not a finite number, fails the trial with a ``fail_reason``
and the study goes on, as a program that exits with an error does in ``diffsearch sweep``.

Workers in other processes import the function by name: ``"module:function"`` or ``"path/file.py:function"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import optuna

from diffsearch.errors import TrialFailed, UsageError
from diffsearch.sweeps.space import Space

Objective = Callable[[dict, Callable[[int, float], None]], float]
EXCEPTION, BAD_VALUE = "exception", "bad_value"  # fail_kind values: the function raised / returned no number


def objective_name(objective: Any) -> str:
    """``module:function`` of a callable (or the string as given), for the study's attrs and messages."""
    if isinstance(objective, str):
        return objective
    module = getattr(objective, "__module__", None) or "?"
    return f"{module}:{getattr(objective, '__qualname__', type(objective).__name__)}"


def importable_name(objective: Any) -> str:
    """A name another process can import ``objective`` by; one line saying why not for a lambda, a local
    function or anything else without one."""
    if isinstance(objective, str):
        load_objective(objective)  # fails here, in one line, when it cannot be imported
        return objective
    qualname = getattr(objective, "__qualname__", "")
    module = getattr(objective, "__module__", None)
    if not callable(objective) or "<" in qualname or "." in qualname or not module:
        raise UsageError(
            f"objective {objective_name(objective)} cannot be imported by worker processes "
            "(a lambda, a local function or a method): with workers > 1 define it at the top "
            "level of a module and pass it, or its name as 'module:function'"
        )
    if module == "__main__":  # a script's function: workers load the script's file (its main block stays out)
        path = getattr(sys.modules["__main__"], "__file__", None)
        if path is None:
            raise UsageError(
                f"objective {qualname} is defined in an interactive session: with workers > 1 "
                "define it in a module and pass 'module:function'"
            )
        module = str(Path(path).resolve())
    name = f"{module}:{qualname}"
    load_objective(name)
    return name


def load_objective(name: str) -> Objective:
    """The function named ``module:function`` or ``path/to/file.py:function``."""
    module_name, _, attr = name.rpartition(":")
    if not module_name or not attr:
        raise UsageError(f"objective {name!r}: expected 'module:function' or 'path/to/file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise UsageError(f"objective {name!r}: {path} does not exist")
            spec = importlib.util.spec_from_file_location(f"diffsearch_objective_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as exc:  # ImportError, or the module failing as it loads: the user needs one line
        raise UsageError(
            f"objective {name!r} cannot be imported: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise UsageError(f"objective {name!r}: {module_name} has no function {attr!r}")
    return function


class FunctionTrial:
    """Evaluates an Optuna trial by calling the objective with the trial's values."""

    def __init__(self, objective: Objective, space: Space):
        self.objective, self.space = objective, space

    def __call__(self, trial: optuna.Trial) -> float:
        params = self.space.suggest(trial)
        trial.set_user_attr("arguments", params)
        started = time.monotonic()

        def report(step: int, value: float) -> None:
            trial.report(float(value), int(step))
            if trial.should_prune():
                trial.set_user_attr("pruned_at_step", int(step))
                raise optuna.TrialPruned(f"pruned at step {step} with value {float(value):.6g}")

        try:
            value = self.objective(dict(params), report)
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
                raise TrialFailed(f"the objective returned {value!r}, not a number")
            value = float(value)
            if not math.isfinite(value):
                raise TrialFailed(f"the objective returned {value}")
        except optuna.TrialPruned:
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            raise
        except Exception as exc:  # the user's code failed: recorded on its trial, the study goes on
            reason = str(exc) if isinstance(exc, TrialFailed) else _describe(exc)
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("fail_kind", BAD_VALUE if isinstance(exc, TrialFailed) else EXCEPTION)
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
            raise TrialFailed(reason) from exc
        trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
        return value


def _describe(exc: BaseException) -> str:
    """``Type: message (file:line)``, the line being the deepest frame of the user's code."""
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    tb, where = exc.__traceback__, ""
    while tb is not None:
        where = f" ({Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno})"
        tb = tb.tb_next
    return text + where
