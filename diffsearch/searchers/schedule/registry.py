"""Schedule searchers by name (``diffsearch schedule --searcher``): a ``Registry[ScheduleSearcher]``.

Capabilities (data, read by the job and ``diffsearch list``): ``model_based`` (fits a model of the
objective to the history), ``population`` (keeps a population of schedules), ``gradient`` (differentiates
the teacher-matching loss through the sampling chain: the job hands it the model, and it runs each point
it visits as a trial), ``sequential`` (workers that join have nothing to run). Installed packages add
searchers through the entry-point group ``diffsearch.schedule_searchers`` (an ``Entry`` whose value has
``sampler(space, seed)``).
"""

from __future__ import annotations

from diffsearch.registry import Registry
from diffsearch.searchers.schedule.base import ScheduleSearcher
from diffsearch.searchers.schedule.evolution import EvolutionSearcher
from diffsearch.searchers.schedule.gradient import GradientSearcher
from diffsearch.searchers.schedule.optuna_samplers import OptunaSearcher, gp, random, tpe

SCHEDULE_SEARCHERS: Registry[ScheduleSearcher] = Registry("schedule searcher", "diffsearch.schedule_searchers")
SCHEDULE_SEARCHERS.register(
    "evolution",
    EvolutionSearcher(),
    "evolutionary search over timesteps (AutoDiffusion, Li et al., ICCV 2023): top-k parents, crossover, mutation",
    population=True,
)
SCHEDULE_SEARCHERS.register(
    "tpe", OptunaSearcher(tpe), "TPE on the gaps and solver order (Optuna TPESampler)", model_based=True
)
SCHEDULE_SEARCHERS.register(
    "gp", OptunaSearcher(gp), "Gaussian-process BO on the gaps (Optuna GPSampler)", model_based=True
)
SCHEDULE_SEARCHERS.register(
    "gradient",
    GradientSearcher(),
    "Adam on the timesteps through the teacher-matching loss, DDIM in continuous time (as LD3, Tong et al., "
    "ICLR 2025); epsilon models, --objective teacher",
    gradient=True,
    sequential=True,
)
SCHEDULE_SEARCHERS.register("random", OptunaSearcher(random), "random points of the box (Optuna RandomSampler)")


def get_schedule_searcher(name: str) -> ScheduleSearcher:
    return SCHEDULE_SEARCHERS.lookup(name, "--searcher").value
