"""Searchers of sampling schedules (``diffsearch schedule``): base.py (the protocol), registry.py (by name)."""

from diffsearch.searchers.schedule.base import ScheduleSearcher
from diffsearch.searchers.schedule.registry import SCHEDULE_SEARCHERS, get_schedule_searcher

__all__ = ["SCHEDULE_SEARCHERS", "ScheduleSearcher", "get_schedule_searcher"]
