"""Searchers and spaces from other installed packages, declared as entry points (docs/plugins.md).

A package names objects in two entry-point groups; the registries ask this module when a name is not
built in (``searchers/registry.py``'s ``lookup``, ``spaces/training.py``'s ``get_space``) and when they
list everything (``diffsearch list``). What an entry point's object must be:

``diffsearch.searchers``
  - a ``SearcherEntry(factory, description)`` (diffsearch/searchers/registry.py): an ``hparams``
    searcher, ``factory(seed) -> optuna.samplers.BaseSampler``;
  - an Optuna sampler class (a ``BaseSampler`` subclass taking ``seed=``): an ``hparams`` searcher
    built as ``cls(seed=seed)``, described by the first line of its docstring;
  - a module (or any object) with ``JOB = "optimizer"`` or ``JOB = "prompt"`` and a ``search``
    function with that registry's signature (tree_registry.py, prompt_registry.py), described by
    ``DESCRIPTION`` or the first line of its docstring.
``diffsearch.spaces``
  - a ``TrainingSpace`` (diffsearch/spaces/training.py) whose ``name`` is the entry point's name.

Only the entry points a command names are imported (plus all of them for ``diffsearch list``), so a
broken package breaks only the commands that ask for it: one line naming the entry point and its
package, exit 2. A built-in name always wins over an entry point of the same name (a warning, once).
Spawned workers (``--workers N``) look the name up again the same way: a package installed in the
environment, or put on PYTHONPATH, is found there too.
"""

from __future__ import annotations

import importlib.metadata
import sys
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

from diffsearch.errors import UsageError

SEARCHERS_GROUP = "diffsearch.searchers"
SPACES_GROUP = "diffsearch.spaces"
SEARCHER_JOBS = ("hparams", "optimizer", "prompt")

_warned: set[tuple[str, str]] = set()


@lru_cache(maxsize=None)
def entry_points(group: str) -> tuple[importlib.metadata.EntryPoint, ...]:
    """The group's entry points in every installed distribution (read once per process), duplicates of
    one distribution seen twice on sys.path dropped."""
    seen, found = set(), []
    for ep in importlib.metadata.entry_points(group=group):
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            found.append(ep)
    return tuple(found)


def package(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown package"


def describe(ep: importlib.metadata.EntryPoint) -> str:
    return f"entry point {ep.name!r} ({ep.group} = {ep.value}) of package {package(ep)}"


@lru_cache(maxsize=None)
def _load(ep: importlib.metadata.EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # the package is broken or half installed: say which, in one line
        message = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise UsageError(f"{describe(ep)} cannot be loaded ({type(exc).__name__}: {message})") from None


def _first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def searcher_of(ep: importlib.metadata.EntryPoint) -> tuple[str, Any]:
    """(job, SearcherEntry) for a ``diffsearch.searchers`` entry point, or a one-line UsageError."""
    import optuna

    from diffsearch.searchers.registry import SearcherEntry

    obj = _load(ep)
    suffix = f" (plugin: {package(ep)})"
    if isinstance(obj, SearcherEntry):
        return "hparams", obj._replace(description=obj.description + suffix)
    if isinstance(obj, type) and issubclass(obj, optuna.samplers.BaseSampler):
        text = _first_line(obj.__doc__) or f"Optuna sampler {obj.__name__}"
        return "hparams", SearcherEntry(lambda seed: obj(seed=seed), text + suffix)
    job, search = getattr(obj, "JOB", None), getattr(obj, "search", None)
    if job in ("optimizer", "prompt") and callable(search):
        text = getattr(obj, "DESCRIPTION", None) or _first_line(obj.__doc__) or f"{job} searcher {ep.name}"
        return job, SearcherEntry(search, text + suffix)
    raise UsageError(f"{describe(ep)} is a {type(obj).__name__}: a searcher entry point is a SearcherEntry, an "
                     "Optuna sampler class, or a module with search() and JOB = 'optimizer' or 'prompt'")


def space_of(ep: importlib.metadata.EntryPoint) -> Any:
    """The TrainingSpace of a ``diffsearch.spaces`` entry point, or a one-line UsageError."""
    from diffsearch.spaces.training import TrainingSpace

    obj = _load(ep)
    if not isinstance(obj, TrainingSpace):
        raise UsageError(f"{describe(ep)} is a {type(obj).__name__}, not a TrainingSpace")
    if obj.name != ep.name:
        raise UsageError(f"{describe(ep)} is the TrainingSpace {obj.name!r}: the names must match")
    return obj


def _named(group: str, name: str) -> list[importlib.metadata.EntryPoint]:
    return [ep for ep in entry_points(group) if ep.name == name]


def warn_shadowed(group: str, name: str, kind: str) -> None:
    """A built-in ``name`` was chosen: say once that an entry point of that name is not used."""
    for ep in _named(group, name):
        if (group, name) not in _warned:
            _warned.add((group, name))
            sys.stderr.write(f"diffsearch: warning: the built-in {kind} {name!r} is used, not the "
                             f"{describe(ep)}\n")


def find_searcher(job: str, name: str) -> Any | None:
    """The SearcherEntry that an entry point named ``name`` declares for ``job``; None when none is named so."""
    others = []
    for ep in _named(SEARCHERS_GROUP, name):
        declared, entry = searcher_of(ep)
        if declared == job:
            return entry
        others.append(f"{describe(ep)} is a {declared} searcher")
    if others:
        raise UsageError(f"{'; '.join(others)}: `diffsearch {job} --searcher` cannot use it")
    return None


def find_space(name: str) -> Any | None:
    named = _named(SPACES_GROUP, name)
    return space_of(named[0]) if named else None


def collect(group: str, builtins: Iterable[str], convert: Callable[[importlib.metadata.EntryPoint], Any],
            kind: str) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """Every entry point of ``group`` converted (for listings): ([(name, value)], [(name, error)]). Names of
    built-ins are left out (with the warning); one that cannot load is an error, not a crash."""
    builtins = set(builtins)
    values, errors = [], []
    for ep in entry_points(group):
        if ep.name in builtins:
            warn_shadowed(group, ep.name, kind)
            continue
        try:
            values.append((ep.name, convert(ep)))
        except UsageError as exc:
            errors.append((ep.name, str(exc)))
    return values, errors


def searchers(job: str, builtins: Mapping[str, Any]) -> dict[str, Any]:
    """The built-in searchers of ``job`` and those that entry points declare for it (the loadable ones)."""
    found, _ = collect(SEARCHERS_GROUP, builtins, searcher_of, f"{job} searcher")
    plugins = {}
    for name, (declared, entry) in found:
        if declared == job:
            plugins.setdefault(name, entry)
    return dict(builtins) | plugins


def spaces(builtins: Mapping[str, Any]) -> dict[str, Any]:
    """The built-in training spaces and those of entry points (the loadable ones)."""
    found, _ = collect(SPACES_GROUP, builtins, space_of, "space")
    plugins = {}
    for name, space in found:
        plugins.setdefault(name, space)
    return dict(builtins) | plugins


def broken(group: str) -> list[tuple[str, str]]:
    """Entry points of ``group`` that cannot be loaded or are not what the group takes: (name, error)."""
    convert = searcher_of if group == SEARCHERS_GROUP else space_of
    return collect(group, (), convert, "")[1]
