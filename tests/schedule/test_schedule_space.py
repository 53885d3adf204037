"""The schedule space keeps its promise under every searcher: every proposed point decodes to a strictly
decreasing schedule inside the model's range; baselines are points of the space (encode / decode)."""

import math

import numpy as np
import optuna
import pytest

from diffsearch.errors import UsageError
from diffsearch.searchers.schedule import SCHEDULE_SEARCHERS
from diffsearch.spaces.schedules import ModelRange, Schedule, ScheduleSpace

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACES = [
    ScheduleSpace(4, "dpm++", ModelRange("epsilon", 1000)),
    ScheduleSpace(10, "ddim", ModelRange("epsilon", 12)),
    ScheduleSpace(1, "dpm++", ModelRange("v_prediction", 1000)),
    ScheduleSpace(6, "euler", ModelRange("flow", 1000)),
]


def assert_valid(space: ScheduleSpace, schedule: Schedule) -> None:
    values = schedule.sigmas if space.model_range.flow else schedule.timesteps
    assert len(values) == space.nfe
    assert all(b < a for a, b in zip(values, values[1:])), values
    if space.model_range.flow:
        assert all(0 < v <= 1 for v in values), values
    else:
        assert all(isinstance(v, int) for v in values)
        assert 0 <= min(values) and max(values) <= space.model_range.num_train_timesteps - 1, values
    space.check(schedule)


@pytest.mark.parametrize("searcher", SCHEDULE_SEARCHERS.names())
@pytest.mark.parametrize("space", SPACES, ids=lambda s: f"{s.solver}-{s.nfe}-{s.model_range.num_train_timesteps}")
def test_every_searcher_proposes_valid_schedules(searcher, space):
    """A searcher driven by an objective that pulls towards the box's edges (where a careless map would
    produce equal or out-of-range steps) only ever proposes valid schedules."""
    sampler = SCHEDULE_SEARCHERS.get(searcher).sampler(space, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial(space.centre())
    dists = space.distributions()

    def objective(trial):
        params = {
            name: (
                trial.suggest_float(name, d.low, d.high)
                if hasattr(d, "low")
                else trial.suggest_categorical(name, d.choices)
            )
            for name, d in dists.items()
        }
        schedule = space.decode(params)
        assert_valid(space, schedule)
        gaps = [params[n] for n in space.gap_names]
        return -sum(abs(g - 0.5) for g in gaps)  # best at the corners of the box

    study.optimize(objective, n_trials=14 if searcher != "gp" else 12)
    assert len(study.trials) >= 12 and all(t.state.name == "COMPLETE" for t in study.trials)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: f"{s.solver}-{s.nfe}")
def test_corners_and_random_points_are_valid_and_round_trip(space):
    rng = np.random.default_rng(0)
    points = [{n: v for n in space.gap_names} for v in (0.0, 1.0, 0.5)]
    points += [{n: float(rng.choice([0.0, 1.0, rng.random()])) for n in space.gap_names} for _ in range(300)]
    for point in points:
        if "order" in space.free:
            point["order"] = int(rng.choice([1, 2, 3]))
        schedule = space.decode(point)
        assert_valid(space, schedule)
        again = space.decode(space.encode(schedule))
        if space.model_range.flow:
            assert np.allclose(again.sigmas, schedule.sigmas, atol=1e-9)
        else:
            assert again == schedule  # integer timesteps: the exact inverse


def test_centre_is_evenly_spaced_and_trailing_is_a_point():
    space = ScheduleSpace(4, "dpm++", ModelRange("epsilon", 1000))
    t = space.decode(space.centre()).timesteps
    assert max(np.diff(t)) - min(np.diff(t)) <= 1 and t[0] < 999
    trailing = Schedule("dpm++", timesteps=(999, 749, 499, 249), order=2)
    assert space.decode(space.encode(trailing)) == trailing


def test_refusals_are_one_line():
    with pytest.raises(UsageError, match="--nfe must be between 1 and the model's 1000"):
        ScheduleSpace(1001, "dpm++", ModelRange("epsilon", 1000))
    with pytest.raises(UsageError, match="--nfe"):
        ScheduleSpace(0, "dpm++", ModelRange("epsilon", 1000))
    with pytest.raises(UsageError, match="use --solver euler"):
        ScheduleSpace(4, "dpm++", ModelRange("flow", 1000))
    space = ScheduleSpace(3, "ddim", ModelRange("epsilon", 1000))
    with pytest.raises(UsageError, match="not strictly decreasing"):
        space.check(Schedule("ddim", timesteps=(500, 500, 1)))
    assert not math.isnan(space.decode(space.centre()).timesteps[0])
