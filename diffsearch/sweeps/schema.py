"""A sweep file (W&B's whole sweep schema, plus ``when``, ``${trial_dir}``, ``preload``, ``metric.source``),
read and checked into a ``Sweep``; docs/sweep-files.md says what each key does here.

Keys only W&B's servers use (``project``, ``entity``...) are accepted and named once as ignored
(``Sweep.notes``), as is ``method: bayes`` running as gp. Everything wrong is one ``UsageError`` line naming
the file and the key, raised before any study is opened. The file is read with PyYAML's ``safe_load`` (no tags, no code). A ``Sweep`` is also stored as a
study attr (``Sweep.config``, plain JSON), so ``diffsearch worker`` rebuilds it from the study alone.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any, Mapping

from diffsearch.errors import UsageError
from diffsearch.sweeps.macros import TEXT_MACROS, WORD_MACROS, check_command, check_values
from diffsearch.sweeps.space import Space, parse_parameters

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
DEFAULT_TRIALS = 20
# W&B's method names that are not names of our searchers; grid is Optuna's GridSampler over `values`
METHOD_ALIASES = {"bayes": "gp"}
BAYES_NOTE = "method bayes runs as gp (a Gaussian process, as W&B's bayes is)"
GRID = "grid"
UNRANKED_METHODS = (GRID, "random")  # W&B runs these without a metric: every trial runs, none is ranked
GOALS = ("minimize", "maximize")
SOURCES = ("auto", "stdout", "tensorboard", "wandb")  # where a trial's metric is read from
TOP_LEVEL_KEYS = (
    "program",
    "command",
    "method",
    "metric",
    "trials",
    "run_cap",
    "parameters",
    "early_terminate",
    "name",
    "description",
    "preload",
)
# keys that mean something only to W&B's servers: accepted, named once as ignored
SERVER_ONLY_KEYS = ("project", "entity", "controller", "apiVersion", "kind")
# W&B Launch: a job or an image run by W&B's servers; what to write instead
LAUNCH_KEYS = ("job", "image_uri")
METRIC_KEYS = ("name", "goal", "target", "source", "path")
METRIC_SERVER_ONLY = ("impute", "impute_while_running")  # W&B's bayes imputes failed runs; here they are left out


@dataclass
class Sweep:
    config: dict[str, Any]  # the checked file, program made absolute: what the study stores
    where: str  # the file (or "space" for the Python API), for messages
    space: Space
    method: str  # a searcher of the hparams registry, or "grid"
    metric: str | None  # None only for a grid or random sweep without a metric: trials run, none ranked
    goal: str
    trials: int
    early_terminate: dict[str, Any] | None
    program: str | None = None
    command: tuple[str, ...] = tuple(DEFAULT_COMMAND)
    preload: tuple[str, ...] = ()  # modules (or module:function) a warm interpreter loads once per worker
    source: str = "auto"  # metric.source: auto, stdout, tensorboard or wandb
    source_path: str | None = None  # metric.path: where the source's files are (may hold ${trial_dir})
    target: float | None = None  # metric.target: the sweep stops once a trial reaches it
    notes: tuple[str, ...] = ()  # lines to say once at the start (bayes runs gp, keys ignored)


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


def parse_sweep(
    config: Mapping[str, Any],
    where: str,
    method: str | None = None,
    trials: int | None = None,
    runs_program: bool = True,
) -> Sweep:
    """Check a sweep mapping; ``method`` and ``trials`` (command-line flags) override the file's.

    ``runs_program=False``: the Python API's sweep, whose trials call a function (no program, no command).
    """
    known = (
        TOP_LEVEL_KEYS
        if runs_program
        else tuple(k for k in TOP_LEVEL_KEYS if k not in ("program", "command", "preload"))
    )
    ignored = []
    for key in config:
        if key in SERVER_ONLY_KEYS:
            ignored.append(key)
        elif key in LAUNCH_KEYS:
            raise UsageError(
                f"{where}: {key}: W&B Launch runs a job or image on W&B's side; here write "
                "program: train.py (and command: if it needs one)"
            )
        elif key in ("program", "command", "preload") and not runs_program:
            raise UsageError(
                f"{where}: {key}: diffsearch.search calls your function, it runs no program; "
                f"leave {key} out (or run the file with `diffsearch sweep`)"
            )
        elif key not in known:
            raise UsageError(f"{where}: unknown key {key!r}; known: {', '.join(known + SERVER_ONLY_KEYS)}")
    check_values(config.get("parameters"), f"{where}: parameters")
    space = parse_parameters(config.get("parameters"), where)
    chosen_method = method if method is not None else config.get("method", "tpe")
    resolved = check_method(chosen_method, "--searcher" if method is not None else f"{where}: method")
    metric = _metric(config.get("metric"), where, resolved in UNRANKED_METHODS, runs_program)
    ignored += [f"metric.{key}" for key in metric.pop("ignored")]
    notes = [f"ignored (only W&B's servers use them): {', '.join(ignored)}"] if ignored else []
    if not runs_program:
        return _finish(config, where, space, metric, chosen_method, resolved, trials, None, (), notes=notes)
    command = _command(config.get("command", DEFAULT_COMMAND), where)
    program = config.get("program")
    if program is not None and not isinstance(program, str):
        raise UsageError(f"{where}: program: expected a path, got {program!r}")
    if any("${program}" in word for word in command):
        if program is None:
            raise UsageError(
                f"{where}: program: missing (the command runs ${{program}}); a sweep file without "
                "a program runs a Python function: diffsearch.search(train, 'sweep.yaml'), as "
                "W&B's wandb.agent(sweep_id, function=train) does"
            )
        if not Path(program).is_file():
            raise UsageError(f"{where}: program: {program} does not exist")
    elif program is not None and not Path(program).is_file():
        raise UsageError(f"{where}: program: {program} does not exist")
    first = command[0]
    if first not in WORD_MACROS + TEXT_MACROS and shutil.which(first) is None and not Path(first).is_file():
        raise UsageError(f"{where}: command: {first!r} is not a program on PATH")
    preload = _preload(config.get("preload"), command, program, where)
    return _finish(
        config, where, space, metric, chosen_method, resolved, trials, program, tuple(command), preload, notes
    )


def _preload(preload: Any, command: list[str], program: str | None, where: str) -> tuple[str, ...]:
    """``preload``: module names (or ``module:function``) for the warm interpreter; only for a command that
    runs ``${interpreter} ${program}``, the Python file a trial is forked into."""
    if preload is None:
        return ()
    if isinstance(preload, str):
        preload = [preload]
    if (
        not isinstance(preload, list)
        or not preload
        or not all(isinstance(entry, str) and _is_import_name(entry) for entry in preload)
    ):
        raise UsageError(
            f"{where}: preload: expected a list of modules to import once per worker, such as "
            f"[torch, diffusers] (or module:function to call once), got {preload!r}"
        )
    words = command[1:] if command[0] == "${env}" else command
    if words[:2] != ["${interpreter}", "${program}"]:
        raise UsageError(
            f"{where}: preload needs a command that runs ${{interpreter}} ${{program}} (a Python "
            f"program, forked from a warm interpreter), not {command}"
        )
    for entry in preload:  # found without importing it here; the warm interpreter imports it
        top = entry.partition(":")[0].partition(".")[0]
        # importlib's find_spec also sees packages installed in editable mode (a finder, not a path entry)
        if PathFinder.find_spec(top, [str(Path(program).parent)]) is None and importlib.util.find_spec(top) is None:
            raise UsageError(f"{where}: preload: no module named {top!r} (beside the program or installed)")
    return tuple(preload)


def _is_import_name(entry: str) -> bool:
    module, _, function = entry.partition(":")
    return all(part.isidentifier() for part in module.split(".")) and (not function or function.isidentifier())


def _finish(
    config: Mapping[str, Any],
    where: str,
    space: Space,
    metric: dict[str, Any],
    chosen_method: str,
    resolved_method: str,
    trials: int | None,
    program: str | None,
    command: tuple[str, ...],
    preload: tuple[str, ...] = (),
    notes: list[str] = (),
) -> Sweep:
    """The checked ``Sweep``: method (``chosen_method`` as written, ``resolved_method`` as run), budget,
    early_terminate, and the lines to say once at the start."""
    notes = list(notes)
    if chosen_method == "bayes":
        notes.insert(0, BAYES_NOTE)
    if trials is None:
        trials = _trials(config, where)
    if resolved_method == GRID:
        space = space.as_grid(where)
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
    if early is not None and metric["name"] is None:
        raise UsageError(
            f"{where}: early_terminate needs a metric to compare trials by: add "
            "metric: {name: <what the program reports>, goal: minimize}"
        )
    if early is not None and "strict" in config["early_terminate"]:
        notes.append("early_terminate.strict: ignored (W&B's stopping code does not read it)")
    checked = {**config, "method": chosen_method}
    if program is not None:
        checked["command"] = list(command)
    return Sweep(
        config=checked,
        where=where,
        space=space,
        method=resolved_method,
        metric=metric["name"],
        goal=metric["goal"],
        trials=trials,
        early_terminate=early,
        program=program,
        command=command,
        preload=preload,
        source=metric["source"],
        source_path=metric["path"],
        target=metric["target"],
        notes=tuple(notes),
    )


def check_method(name: Any, flag: str) -> str:
    """A searcher name of the hparams registry (W&B's ``bayes`` is gp), or ``grid``."""
    from diffsearch.searchers.hparams.registry import SEARCHERS, lookup

    if not isinstance(name, str):
        raise UsageError(f"{flag}: expected a searcher name (grid, random, bayes, tpe...), got {name!r}")
    resolved = METHOD_ALIASES.get(name, name)
    if resolved != GRID:
        try:
            lookup(SEARCHERS, resolved, job="hparams")  # installed packages' searchers too
        except UsageError as exc:
            raise UsageError(f"{flag}: {exc}, grid, or W&B's bayes (which runs as gp)") from None
    return resolved


def _metric(metric: Any, where: str, optional: bool, runs_program: bool) -> dict[str, Any]:
    """``metric`` checked: name, goal, target, source, path (and W&B's server-side keys, to name as ignored)."""
    if metric is None and optional and runs_program:  # W&B: grid and random sweeps need no metric
        return {"name": None, "goal": "minimize", "target": None, "source": "auto", "path": None, "ignored": []}
    if metric is None and runs_program:
        raise UsageError(
            f"{where}: metric: expected {{name: <key the program reports>, goal: minimize}}: the "
            "searcher learns from it (only grid and random run without one)"
        )
    if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str) or not metric["name"]:
        raise UsageError(
            f"{where}: metric: expected {{name: <key the program reports>, goal: minimize}}, got {metric!r}"
        )
    for key in metric:
        if key not in METRIC_KEYS + METRIC_SERVER_ONLY:
            raise UsageError(f"{where}: metric: unknown key {key!r}; known: {', '.join(METRIC_KEYS)}")
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise UsageError(f"{where}: metric.goal: expected minimize or maximize, got {goal!r}")
    target = metric.get("target")
    if target is not None:
        if isinstance(target, str):  # PyYAML reads 1e-3 (no dot) as text
            try:
                target = float(target)
            except ValueError:
                pass
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
            raise UsageError(
                f"{where}: metric.target: expected a finite number (the sweep stops once a trial "
                f"reaches it), got {target!r}"
            )
    source = metric.get("source", "auto")
    if source not in SOURCES:
        raise UsageError(
            f"{where}: metric.source: expected one of {', '.join(SOURCES)} (where the trial writes "
            f"{metric['name']!r}: JSON lines on stdout, TensorBoard event files, wandb's offline "
            f"run), got {source!r}"
        )
    if source == "wandb" and importlib.util.find_spec("wandb") is None:
        raise UsageError(
            f"{where}: metric.source: wandb: a trial's offline wandb run is read with the wandb "
            "package, which is not installed here (pip install wandb)"
        )
    if not runs_program and source != "auto":
        raise UsageError(
            f"{where}: metric.source: diffsearch.search takes the value your function returns; leave source out"
        )
    path = metric.get("path")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise UsageError(
                f"{where}: metric.path: expected the folder the trial writes its logs to "
                f"(such as ${{trial_dir}}/logs), got {path!r}"
            )
        if source == "stdout":
            raise UsageError(
                f"{where}: metric.path: source stdout reads the program's output, not files; "
                "leave path out, or say source: tensorboard or source: wandb"
            )
        check_values(path, f"{where}: metric.path")
    return {
        "name": metric["name"],
        "goal": goal,
        "target": target,
        "source": source,
        "path": path,
        "ignored": [key for key in metric if key in METRIC_SERVER_ONLY],
    }


def _command(command: Any, where: str) -> list[str]:
    if not isinstance(command, list) or not command:
        raise UsageError(f"{where}: command: expected a list such as {DEFAULT_COMMAND}, got {command!r}")
    words = []
    for word in command:
        if isinstance(word, (dict, list)) or word is None:
            raise UsageError(f"{where}: command: each item must be text, got {word!r}")
        words.append(str(word))
    check_command(words, f"{where}: command")
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
    """W&B's ``early_terminate`` checked: {type: hyperband | successive_halving, min_iter (or max_iter with s),
    max_iter, eta, strict}.

    W&B's hyperband stops a run at bands ``min_iter * eta**k`` or, given ``max_iter`` and ``s``, at
    ``max_iter / eta**k`` for k = 1..s: the first band is our ``min_iter``. W&B's stopping code does not read
    ``strict``; it is accepted (and the sweep says it is ignored).
    """
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise UsageError(f"{where}: expected {{type: hyperband, min_iter: 1, eta: 3}}, got {spec!r}")
    known = ("type", "min_iter", "max_iter", "s", "eta", "strict")
    for key in spec:
        if key not in known:
            raise UsageError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")
    kind = spec.get("type")
    if kind not in ("hyperband", "successive_halving"):
        raise UsageError(f"{where}.type: expected hyperband or successive_halving, got {kind!r}")
    checked = {
        "type": kind,
        "min_iter": spec.get("min_iter", 1),
        "max_iter": spec.get("max_iter"),
        "eta": spec.get("eta", 3),
    }  # W&B's defaults
    if isinstance(checked["eta"], float) and checked["eta"].is_integer():
        checked["eta"] = int(checked["eta"])
    for key, least in (("min_iter", 1), ("eta", 2), ("max_iter", 2)):
        value = checked[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise UsageError(f"{where}.{key}: expected a whole number, at least {least}, got {value!r}")
    if "s" in spec:
        s = spec["s"]
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise UsageError(f"{where}.s: expected a whole number of bands, at least 1, got {s!r}")
        if checked["max_iter"] is None:
            raise UsageError(f"{where}.s: counts bands down from max_iter: give max_iter too (or min_iter alone)")
        if "min_iter" in spec:
            raise UsageError(f"{where}: give min_iter, or max_iter with s (W&B takes one or the other)")
        bands = [
            int(checked["max_iter"] / checked["eta"] ** k)
            for k in range(1, s + 1)
            if checked["max_iter"] / checked["eta"] ** k >= 1
        ]
        if not bands:
            raise UsageError(
                f"{where}: max_iter {checked['max_iter']} / eta {checked['eta']} is below 1: "
                "no band to stop runs at; raise max_iter or lower eta"
            )
        checked["min_iter"] = min(bands)
    if "strict" in spec and not isinstance(spec["strict"], bool):
        raise UsageError(f"{where}.strict: expected true or false, got {spec['strict']!r}")
    if checked["max_iter"] is not None and checked["max_iter"] <= checked["min_iter"]:
        raise UsageError(f"{where}: max_iter {checked['max_iter']} must be above min_iter {checked['min_iter']}")
    return checked
