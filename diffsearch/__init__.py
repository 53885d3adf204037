"""diffsearch: a search engine for the decisions around diffusion models.

``diffsearch.search(objective, space, ...)`` tunes a Python function (see ``diffsearch.jobs.python_api``);
``diffsearch.report(step=..., **metrics)`` prints the line a program tuned by ``diffsearch sweep`` reports.
Both are imported on first use, so ``import diffsearch`` (and ``diffsearch --help``) stays light.
"""

__version__ = "0.1.0"

__all__ = ["search", "report", "__version__"]

_LAZY = {"search": "diffsearch.jobs.python_api", "report": "diffsearch.reporter"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diffsearch' has no attribute {name!r}")
