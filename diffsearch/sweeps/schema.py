"""A sweep file (W&B's sweep-file convention plus ``when`` conditionals), read and checked into a ``Sweep``.

Everything wrong is one ``UsageError`` line naming the file and the key, raised before any study is
opened. The file is read with PyYAML's ``safe_load`` (no tags, no code). A ``Sweep`` is also stored as a
study attr (``Sweep.config``, plain JSON), so ``diffsearch worker`` rebuilds it from the study alone.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any, Mapping

from diffsearch.errors import UsageError
from diffsearch.sweeps.space import Space, parse_parameters

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
MACROS = ("${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}", "${args_json}")
DEFAULT_TRIALS = 20
# W&B's method names that are not names of our searchers; grid is Optuna's GridSampler over `values`
METHOD_ALIASES = {"bayes": "tpe"}
GRID = "grid"
GOALS = ("minimize", "maximize")
TOP_LEVEL_KEYS = ("program", "command", "method", "metric", "trials", "run_cap", "parameters", "early_terminate",
                  "name", "description", "preload")


@dataclass
class Sweep:
    config: dict[str, Any]     # the checked file, program made absolute: what the study stores
    where: str                 # the file (or "space" for the Python API), for messages
    space: Space
    method: str                # a searcher of the hparams registry, or "grid"
    metric: str
    goal: str
    trials: int
    early_terminate: dict[str, Any] | None
    program: str | None = None
    command: tuple[str, ...] = tuple(DEFAULT_COMMAND)
    preload: tuple[str, ...] = ()  # modules (or module:function) a warm interpreter loads once per worker


def plain(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The mapping as JSON would hold it (tuples become lists, YAML dates text): what a study attr stores,
    so a resumed study compares equal to the file it came from."""
    import json

    try:
        return json.loads(json.dumps(dict(config), default=str))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: cannot be stored as JSON: {exc}") from None


def read_sweep_file(path: str | Path) -> dict[str, Any]:
    """The file as a mapping, with ``program`` made absolute (it is relative to the file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"sweep file {str(path)!r} not found")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}: not valid YAML: {problem}{at}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: expected a mapping of settings (program, metric, parameters, ...)")
    if isinstance(config.get("program"), str):
        config["program"] = str((path.parent / config["program"]).resolve())
    return config


def parse_sweep(config: Mapping[str, Any], where: str, method: str | None = None,
                trials: int | None = None, runs_program: bool = True) -> Sweep:
    """Check a sweep mapping; ``method`` and ``trials`` (command-line flags) override the file's.

    ``runs_program=False``: the Python API's sweep, whose trials call a function (no program, no command).
    """
    known = TOP_LEVEL_KEYS if runs_program else \
        tuple(k for k in TOP_LEVEL_KEYS if k not in ("program", "command", "preload"))
    for key in config:
        if key not in known:
            raise UsageError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")
    space = parse_parameters(config.get("parameters"), where)
    metric, goal = _metric(config.get("metric"), where)
    if not runs_program:
        return _finish(config, where, space, metric, goal, method, trials, None, ())
    command = _command(config.get("command", DEFAULT_COMMAND), where)
    program = config.get("program")
    if program is not None and not isinstance(program, str):
        raise UsageError(f"{where}: program: expected a path, got {program!r}")
    if "${program}" in command:
        if program is None:
            raise UsageError(f"{where}: program: missing (the command runs ${{program}})")
        if not Path(program).is_file():
            raise UsageError(f"{where}: program: {program} does not exist")
    elif program is not None and not Path(program).is_file():
        raise UsageError(f"{where}: program: {program} does not exist")
    first = command[0]
    if first not in MACROS and shutil.which(first) is None and not Path(first).is_file():
        raise UsageError(f"{where}: command: {first!r} is not a program on PATH")
    preload = _preload(config.get("preload"), command, program, where)
    return _finish(config, where, space, metric, goal, method, trials, program, tuple(command), preload)


def _preload(preload: Any, command: list[str], program: str | None, where: str) -> tuple[str, ...]:
    """``preload``: module names (or ``module:function``) for the warm interpreter; only for a command that
    runs ``${interpreter} ${program}``, the Python file a trial is forked into."""
    if preload is None:
        return ()
    if isinstance(preload, str):
        preload = [preload]
    if not isinstance(preload, list) or not preload or not all(
            isinstance(entry, str) and _is_import_name(entry) for entry in preload):
        raise UsageError(f"{where}: preload: expected a list of modules to import once per worker, such as "
                         f"[torch, diffusers] (or module:function to call once), got {preload!r}")
    words = command[1:] if command[0] == "${env}" else command
    if words[:2] != ["${interpreter}", "${program}"]:
        raise UsageError(f"{where}: preload needs a command that runs ${{interpreter}} ${{program}} (a Python "
                         f"program, forked from a warm interpreter), not {command}")
    for entry in preload:  # found without importing it here; the warm interpreter imports it
        top = entry.partition(":")[0].partition(".")[0]
        # importlib's find_spec also sees packages installed in editable mode (a finder, not a path entry)
        if PathFinder.find_spec(top, [str(Path(program).parent)]) is None and importlib.util.find_spec(top) is None:
            raise UsageError(f"{where}: preload: no module named {top!r} (beside the program or installed)")
    return tuple(preload)


def _is_import_name(entry: str) -> bool:
    module, _, function = entry.partition(":")
    return all(part.isidentifier() for part in module.split(".")) and (not function or function.isidentifier())


def _finish(config: Mapping[str, Any], where: str, space: Space, metric: str, goal: str, method: str | None,
            trials: int | None, program: str | None, command: tuple[str, ...],
            preload: tuple[str, ...] = ()) -> Sweep:
    chosen_method = method if method is not None else config.get("method", "tpe")
    flag = "--searcher" if method is not None else f"{where}: method"
    resolved_method = check_method(chosen_method, flag)
    if trials is None:
        trials = _trials(config, where)
    if resolved_method == GRID:
        grid_size = 1
        for values in space.grid(where).values():
            grid_size *= len(values)
        trials = grid_size if trials is None else trials
        if trials > grid_size:
            raise UsageError(f"{where}: trials {trials} is more than the {grid_size} points of the grid")
    if trials is None:
        trials = DEFAULT_TRIALS
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UsageError(f"--trials must be at least 1 (got {trials!r})")
    early = parse_early_terminate(config.get("early_terminate"), f"{where}: early_terminate")
    checked = {**config, "method": chosen_method}
    if program is not None:
        checked["command"] = list(command)
    return Sweep(config=checked, where=where, space=space, method=resolved_method, metric=metric, goal=goal,
                 trials=trials, early_terminate=early, program=program, command=command, preload=preload)


def check_method(name: Any, flag: str) -> str:
    """A searcher name of the hparams registry (W&B's ``bayes`` is tpe), or ``grid``."""
    from diffsearch.searchers.registry import SEARCHERS, lookup

    resolved = METHOD_ALIASES.get(name, name)
    if resolved != GRID:
        if not isinstance(resolved, str):
            raise UsageError(f"{flag}: expected a searcher name, got {name!r}")
        try:
            lookup(SEARCHERS, resolved, job="hparams")  # installed packages' searchers too
        except UsageError as exc:
            raise UsageError(f"{flag}: {exc}, or grid (W&B's bayes is tpe)") from None
    return resolved


def _metric(metric: Any, where: str) -> tuple[str, str]:
    if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str) or not metric["name"]:
        raise UsageError(f"{where}: metric: expected {{name: <key the program reports>, goal: minimize}}, "
                         f"got {metric!r}")
    for key in metric:
        if key not in ("name", "goal"):
            raise UsageError(f"{where}: metric: unknown key {key!r}; known: name, goal")
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise UsageError(f"{where}: metric.goal: expected minimize or maximize, got {goal!r}")
    return metric["name"], goal


def _command(command: Any, where: str) -> list[str]:
    if not isinstance(command, list) or not command:
        raise UsageError(f"{where}: command: expected a list such as {DEFAULT_COMMAND}, got {command!r}")
    words = []
    for word in command:
        if isinstance(word, (dict, list)) or word is None:
            raise UsageError(f"{where}: command: each item must be text, got {word!r}")
        word = str(word)
        if "${" in word and word not in MACROS:
            raise UsageError(f"{where}: command: unknown macro {word!r}; known: {', '.join(MACROS)}")
        words.append(word)
    return words


def _trials(config: Mapping[str, Any], where: str) -> int | None:
    if "trials" in config and "run_cap" in config:
        raise UsageError(f"{where}: trials and run_cap say the same thing: keep one")
    key = "trials" if "trials" in config else "run_cap"
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where}: {key}: expected a whole number of trials, at least 1, got {value!r}")
    return value


def parse_early_terminate(spec: Any, where: str) -> dict[str, Any] | None:
    """W&B's ``early_terminate`` checked: {type: hyperband | successive_halving, min_iter, max_iter, eta}."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise UsageError(f"{where}: expected {{type: hyperband, min_iter: 1, eta: 3}}, got {spec!r}")
    for key in spec:
        if key not in ("type", "min_iter", "max_iter", "eta"):
            raise UsageError(f"{where}: unknown key {key!r}; known: type, min_iter, max_iter, eta")
    kind = spec.get("type")
    if kind not in ("hyperband", "successive_halving"):
        raise UsageError(f"{where}.type: expected hyperband or successive_halving, got {kind!r}")
    checked = {"type": kind, "min_iter": spec.get("min_iter", 1), "max_iter": spec.get("max_iter"),
               "eta": spec.get("eta", 3)}  # W&B's defaults
    for key, least in (("min_iter", 1), ("eta", 2), ("max_iter", 2)):
        value = checked[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise UsageError(f"{where}.{key}: expected a whole number, at least {least}, got {value!r}")
    if checked["max_iter"] is not None and checked["max_iter"] <= checked["min_iter"]:
        raise UsageError(f"{where}: max_iter {checked['max_iter']} must be above min_iter {checked['min_iter']}")
    return checked
