"""What a schedule searcher is: something that proposes points of a ``ScheduleSpace`` to the one trial loop.

Every searcher here is an Optuna sampler over the space's distributions (``space.distributions()``), so
every evaluation is a trial of the study's ledger: ``--workers`` and ``diffsearch worker`` share a search,
a rerun resumes it, and ``diffsearch report`` explains it. A searcher proposes from the study's finished
trials alone (no hidden state), so a resumed or shared search goes on where it was.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import optuna

from diffsearch.spaces.schedules import ScheduleSpace


@runtime_checkable
class ScheduleSearcher(Protocol):
    def sampler(self, space: ScheduleSpace, seed: int) -> optuna.samplers.BaseSampler:
        """The Optuna sampler that proposes this searcher's points in ``space``."""
