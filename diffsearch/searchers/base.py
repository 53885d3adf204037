"""What a searcher of each kind is, and how an installed package's object becomes a registry entry.

Three search problems, three shapes (each registry holds ``Entry`` values of one of them):

- ``HparamsSearcher`` (searchers/hparams/registry.py, ``diffsearch hparams`` and ``diffsearch sweep``): a factory
  ``make(seed) -> optuna.samplers.BaseSampler``; Optuna's own ``BaseSampler`` ABC is the real contract;
- ``TreeSearcher`` (searchers/tree/registry.py, ``diffsearch optimizer``): ``search(space, evaluate, budget,
  seed, settings) -> (TreeBudget, extras)`` over update-rule programs, ``evaluate`` a ``TreeEvaluator``;
  both protocols live beside ``TreeBudget`` in searchers/tree/budget.py;
- ``PromptSearcher`` (searchers/prompt/registry.py, ``diffsearch prompt``): ``search(task, space, seed,
  settings) -> PromptSearchResult``, ``task`` a ``PromptTask`` (tasks/prompt_sd.py implements it); both
  protocols live in searchers/prompt/result.py.

This module is light (Optuna, no torch: ``diffsearch sweep`` imports it) and imports no searcher.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, Callable, Protocol, cast

import optuna

from diffsearch import plugins
from diffsearch.errors import UsageError
from diffsearch.registry import Entry, ForeignEntry

JOBS = ("hparams", "optimizer", "prompt")  # the jobs a ``diffsearch.searchers`` entry point may serve


# ---------------------------------------------------------------------------------------- hparams
class HparamsSearcher(Protocol):
    """``make(seed)``: a fresh Optuna sampler; the same seed proposes the same trials on the same study."""

    def __call__(self, seed: int) -> optuna.samplers.BaseSampler: ...


# ------------------------------------------------------------------------------ installed packages
def SearcherEntry(factory: Callable[..., Any], description: str, **capabilities: Any) -> Entry[Any]:
    """An hparams searcher of an installed package: ``factory(seed) -> BaseSampler`` (the entry point's name
    names it). For an optimizer or prompt searcher give ``job="optimizer"`` or ``job="prompt"``."""
    return Entry("", factory, description, capabilities)


def searcher_adapter(job: str) -> Callable[[importlib.metadata.EntryPoint, Any], Entry[Any]]:
    """How a ``diffsearch.searchers`` entry point becomes an entry of ``job``'s registry: an ``Entry``
    (``SearcherEntry``; its ``job`` capability says which job, hparams by default), an Optuna sampler class
    (hparams, built as ``cls(seed=seed)``), or a module/object with ``JOB`` and ``search``."""

    def adapt(ep: importlib.metadata.EntryPoint, obj: Any) -> Entry[Any]:
        entry: Entry[Any]
        if isinstance(obj, Entry):
            declared, entry = obj.capabilities.get("job", "hparams"), obj
        elif isinstance(obj, type) and issubclass(obj, optuna.samplers.BaseSampler):
            text = plugins.first_line(obj.__doc__) or f"Optuna sampler {obj.__name__}"
            sampler_class = cast(Any, obj)  # a BaseSampler subclass that takes seed=
            declared, entry = "hparams", Entry(ep.name, lambda seed: sampler_class(seed=seed), text)
        elif getattr(obj, "JOB", None) in ("optimizer", "prompt") and callable(getattr(obj, "search", None)):
            declared = obj.JOB
            text = getattr(obj, "DESCRIPTION", None) or plugins.first_line(obj.__doc__) or f"{declared} searcher"
            capabilities = {"needs_gradient": bool(getattr(obj, "NEEDS_GRADIENT", False))}
            entry = Entry(ep.name, obj.search, text, capabilities)
        else:
            raise UsageError(
                f"{plugins.describe(ep)} is a {type(obj).__name__}: a searcher entry point is a "
                "SearcherEntry, an Optuna sampler class, or a module with search() and "
                "JOB = 'optimizer' or 'prompt'"
            )
        if declared != job:
            raise ForeignEntry(
                f"{plugins.describe(ep)} is a {declared} searcher: `diffsearch {job} --searcher` cannot use it"
            )
        return entry

    return adapt
