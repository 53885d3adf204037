"""Entry points of other installed packages (docs/plugins.md): read once, loaded when named, described in
one line. ``Registry`` (diffsearch/registry.py) is the only user: each registry that takes plugins names its
group and how a loaded object becomes an ``Entry``; this module knows nothing of searchers or spaces.

Groups: ``diffsearch.searchers`` (hparams, optimizer and prompt searchers; each object says which job it
serves: searchers/base.py), ``diffsearch.spaces`` (training spaces: spaces/training.py) and
``diffsearch.rewards`` (``function(images, prompt) -> scores``: objectives/rewards.py).

Only the entry points a command names are imported (plus all of them for ``diffsearch list``), so a broken
package breaks only the commands that ask for it: one line naming the entry point and its package, exit 2.
A built-in name always wins over an entry point of the same name (a warning, once). Spawned workers
(``--workers N``) look the name up again the same way: a package installed in the environment, or put on
PYTHONPATH, is found there too.
"""

from __future__ import annotations

import importlib.metadata
import sys
from functools import lru_cache
from typing import Any

from diffsearch.errors import UsageError

SEARCHERS_GROUP = "diffsearch.searchers"
SPACES_GROUP = "diffsearch.spaces"
REWARDS_GROUP = "diffsearch.rewards"

_warned: set[tuple[str, str]] = set()


@lru_cache(maxsize=None)
def entry_points(group: str) -> tuple[importlib.metadata.EntryPoint, ...]:
    """The group's entry points in every installed distribution (read once per process), duplicates of
    one distribution seen twice on sys.path dropped."""
    seen: set[tuple[str, str]] = set()
    found = []
    for ep in importlib.metadata.entry_points(group=group):
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            found.append(ep)
    return tuple(found)


def named(group: str, name: str) -> list[importlib.metadata.EntryPoint]:
    return [ep for ep in entry_points(group) if ep.name == name]


def package(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown package"


def describe(ep: importlib.metadata.EntryPoint) -> str:
    return f"entry point {ep.name!r} ({ep.group} = {ep.value}) of package {package(ep)}"


@lru_cache(maxsize=None)
def load(ep: importlib.metadata.EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # the package is broken or half installed: say which, in one line
        message = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise UsageError(f"{describe(ep)} cannot be loaded ({type(exc).__name__}: {message})") from None


_load = load  # the name tests clear the cache by


def first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def warn_shadowed(group: str, name: str, kind: str) -> None:
    """A built-in ``name`` was chosen: say once that an entry point of that name is not used."""
    for ep in named(group, name):
        if (group, name) not in _warned:
            _warned.add((group, name))
            sys.stderr.write(f"diffsearch: warning: the built-in {kind} {name!r} is used, not the {describe(ep)}\n")


def reset() -> None:
    """Forget what was read and loaded (tests that put a package on sys.path)."""
    entry_points.cache_clear()
    load.cache_clear()
    _warned.clear()
