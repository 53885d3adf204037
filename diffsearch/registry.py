"""One registry shape for every way in: ``Registry[T]``, a mapping from names to ``Entry[T]``.

Modelled on nevergrad's ``Registry`` (a second entry under a name is refused) with Optuna-style one-line
errors: ``lookup`` of an unknown name raises ``UsageError("unknown searcher 'x'; known: a, b")``. What a
job needs to know about an entry to decide what to do with it (needs a gradient, acts through a negative
prompt, families served ...) is data on the entry (``capabilities``), never an ``if name in (...)`` in the
job, so a plugin can say it too.

Installed packages add entries through an entry-point group (``entry_point_group``); they are merged in
when a name is not built in, or when the whole registry is listed. A built-in name always wins.

This module is a leaf: it imports nothing from diffsearch but ``errors``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from diffsearch.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: the object the job calls (a factory, a class, a search function), one line
    for ``--help`` and ``diffsearch list``, and the capabilities that decide behaviour."""

    name: str
    value: T
    description: str
    capabilities: Mapping[str, Any] = field(default_factory=dict)

    def can(self, capability: str) -> Any:
        """The capability's value (``False`` when the entry does not declare it)."""
        return self.capabilities.get(capability, False)


class Registry(Generic[T]):
    """Names to ``Entry[T]``; collisions refused; unknown names refused in one line.

    ``kind`` names what the registry holds in messages ("searcher", "reward", ...); ``entry_point_group``
    (optional) is the group installed packages declare entries in; ``adapt`` turns a loaded entry point
    object into an ``Entry[T]`` (or raises ``UsageError``) so that each registry keeps its own rule for what
    a plugin may be.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None,
                 adapt: Callable[[str, Any], Entry[T]] | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._adapt = adapt
        self._entries: dict[str, Entry[T]] = {}
        self._plugins: dict[str, Entry[T]] = {}

    # -- built-in entries ------------------------------------------------------------------------
    def register(self, name: str, value: T, description: str, **capabilities: Any) -> T:
        """Add an entry; a second entry under the same name is a programming error (ValueError)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, value, description, dict(capabilities))
        return value

    def add(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry

    # -- reading ---------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def builtin(self) -> dict[str, Entry[T]]:
        return dict(self._entries)

    def lookup(self, name: str, flag: str | None = None) -> Entry[T]:
        """The entry (built in, else from an installed package), or a one-line ``UsageError`` listing
        the known names. ``flag`` names the option in the message (``--searcher``)."""
        if name in self._entries:
            return self._entries[name]
        found = self._plugin(name)
        if found is not None:
            return found
        known = ", ".join(self.all())
        raise UsageError(f"unknown {flag or self.kind} {name!r}; known: {known}")

    def get(self, name: str) -> T:
        return self.lookup(name).value

    def all(self) -> dict[str, Entry[T]]:
        """Built-in entries, then every installed package's (a built-in name wins)."""
        merged = dict(self._entries)
        for ep in self._entry_points():
            if ep.name not in merged:
                found = self._plugin(ep.name)
                if found is not None:
                    merged[ep.name] = found
        return merged

    def with_capability(self, capability: str) -> list[str]:
        return [name for name, entry in self.all().items() if entry.can(capability)]

    # -- installed packages ----------------------------------------------------------------------
    def _entry_points(self) -> tuple[importlib.metadata.EntryPoint, ...]:
        if self.entry_point_group is None:
            return ()
        return tuple(importlib.metadata.entry_points(group=self.entry_point_group))

    def _plugin(self, name: str) -> Entry[T] | None:
        if name in self._plugins:
            return self._plugins[name]
        for ep in self._entry_points():
            if ep.name != name:
                continue
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken package breaks only the command that names it
                first = str(exc).splitlines()[0][:160] if str(exc) else ""
                raise UsageError(f"{self.kind} {name!r} from entry point {ep.value} cannot be loaded "
                                 f"({type(exc).__name__}: {first})") from None
            if isinstance(loaded, Entry):
                entry = loaded
            elif self._adapt is not None:
                entry = self._adapt(name, loaded)
            else:
                raise UsageError(f"entry point {name!r} ({ep.value}) is not a diffsearch Entry")
            self._plugins[name] = entry
            return entry
        return None
