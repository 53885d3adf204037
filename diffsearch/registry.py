"""One registry shape for every way in: ``Registry[T]``, a mapping from names to ``Entry[T]``.

Modelled on nevergrad's ``Registry`` (a second entry under a name is refused) with Optuna-style one-line
errors: ``lookup`` of an unknown name raises ``UsageError("unknown searcher 'x'; known: a, b")``. What a
job needs to know about an entry to decide what to do with it (needs a gradient, acts through a negative
prompt, families served ...) is data on the entry (``capabilities``), never an ``if name in (...)`` in the
job, so a plugin can say it too.

Installed packages add entries through an entry-point group (``entry_point_group``, diffsearch/plugins.py);
they are merged in when a name is not built in, or when the whole registry is listed. A built-in name
always wins (with a warning, once). ``adapt`` turns a loaded object into an ``Entry[T]``; it raises
``ForeignEntry`` for an object that belongs to another registry of the same group (a prompt searcher asked
for as an hparams searcher), ``UsageError`` for one that is not what the group takes.

This module is a leaf: it imports nothing from diffsearch but ``errors`` and ``plugins``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from diffsearch import plugins
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

    @property
    def factory(self) -> T:
        """The value, under the name searcher entries had before ``Registry`` (callers written then)."""
        return self.value

    def can(self, capability: str) -> Any:
        """The capability's value (``False`` when the entry does not declare it)."""
        return self.capabilities.get(capability, False)


class ForeignEntry(UsageError):
    """An entry point of the group that another registry takes (its message says which)."""


Adapter = Callable[[importlib.metadata.EntryPoint, Any], Entry[T]]


class Registry(Generic[T]):
    """Names to ``Entry[T]``; collisions refused; unknown names refused in one line.

    ``kind`` names what the registry holds in messages ("hparams searcher", "reward", ...);
    ``entry_point_group`` (optional) is the group installed packages declare entries in; ``adapt`` turns a
    loaded entry point object into an ``Entry[T]`` (or raises ``UsageError``), so that each registry keeps
    its own rule for what a plugin may be. Without ``adapt`` a plugin must be an ``Entry`` itself.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, adapt: Adapter[T] | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._adapt = adapt
        self._entries: dict[str, Entry[T]] = {}

    # -- built-in entries ------------------------------------------------------------------------
    def register(self, name: str, value: T, description: str, **capabilities: Any) -> T:
        """Add an entry; a second entry under the same name is a programming error (ValueError)."""
        self.add(Entry(name, value, description, dict(capabilities)))
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

    def __getitem__(self, name: str) -> Entry[T]:
        return self._entries[name]

    def items(self) -> list[tuple[str, Entry[T]]]:
        """The built-in entries (``all()`` adds the installed packages')."""
        return list(self._entries.items())

    def names(self) -> list[str]:
        return list(self._entries)

    def builtin(self) -> dict[str, Entry[T]]:
        return dict(self._entries)

    def descriptions(self) -> dict[str, str]:
        """Name -> one line, built-in and installed (for ``--help`` and ``diffsearch list``)."""
        return {name: entry.description for name, entry in self.all().items()}

    def lookup(self, name: str, flag: str | None = None) -> Entry[T]:
        """The entry (built in, else from an installed package), or a one-line ``UsageError`` listing
        the known names. ``flag`` names the option in the message (``--searcher``)."""
        if name in self._entries:
            if self.entry_point_group is not None:
                plugins.warn_shadowed(self.entry_point_group, name, self.kind)
            return self._entries[name]
        found = self._plugin(name)
        if found is not None:
            return found
        known = ", ".join(self.all())
        raise UsageError(f"unknown {flag or self.kind} {name!r}; known: {known}")

    def get(self, name: str) -> T:
        return self.lookup(name).value

    def all(self) -> dict[str, Entry[T]]:
        """Built-in entries, then every installed package's that loads (a built-in name wins)."""
        merged = dict(self._entries)
        for ep in self._entry_points():
            if ep.name in merged:
                continue
            try:
                found = self._plugin(ep.name)
            except UsageError:  # another registry's, or broken: ``broken()`` lists the latter
                continue
            if found is not None:
                merged[ep.name] = found
        return merged

    def broken(self) -> list[tuple[str, str]]:
        """(name, one-line reason) of the group's entry points that cannot be loaded or are not what the
        group takes (another registry's entries are not broken)."""
        found = []
        for ep in self._entry_points():
            if ep.name in self._entries:
                continue
            try:
                self._adapted(ep)
            except ForeignEntry:
                continue
            except UsageError as exc:
                found.append((ep.name, str(exc)))
        return found

    def with_capability(self, capability: str) -> list[str]:
        return [name for name, entry in self.all().items() if entry.can(capability)]

    # -- installed packages ----------------------------------------------------------------------
    def entry_points(self) -> tuple[importlib.metadata.EntryPoint, ...]:
        """The group's entry points (none without a group)."""
        return self._entry_points()

    def _entry_points(self) -> tuple[importlib.metadata.EntryPoint, ...]:
        if self.entry_point_group is None:
            return ()
        return plugins.entry_points(self.entry_point_group)

    def _plugin(self, name: str) -> Entry[T] | None:
        """The entry of the entry point called ``name`` (None when there is none); only it is imported."""
        foreign = []
        for ep in self._entry_points():
            if ep.name == name:
                try:
                    return self._adapted(ep)
                except ForeignEntry as exc:
                    foreign.append(str(exc))
        if foreign:
            raise UsageError("; ".join(foreign))
        return None

    def _adapted(self, ep: importlib.metadata.EntryPoint) -> Entry[T]:
        loaded = plugins.load(ep)
        if self._adapt is not None:
            entry = self._adapt(ep, loaded)
        elif isinstance(loaded, Entry):
            entry = loaded
        else:
            raise UsageError(f"{plugins.describe(ep)} is a {type(loaded).__name__}, not a diffsearch Entry")
        # the entry point's name is the entry's name; the listing says which package it comes from
        return dataclasses.replace(
            entry, name=ep.name, description=f"{entry.description} (plugin: {plugins.package(ep)})"
        )
