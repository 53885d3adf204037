"""The optimizer job's training task: a rule trained on toy 2-D data over a grid of learning rates."""

import math

import pytest

from diffsearch.errors import UsageError
from diffsearch.spaces.update_rules import parse
from diffsearch.tasks.optimizer_tasks import make_task


def test_task_picks_lr_from_grid_and_stops_diverging_runs():
    task = make_task("toy2d-moons", scale=0.1)
    ev = task.evaluate(parse("g"), seed=0)
    assert ev.lr in task.lr_grid and math.isfinite(ev.score) and ev.score < task.initial_loss
    assert ev.grid[f"{ev.lr:g}"] == min(ev.grid.values())
    blown = task.train(parse("g * 2 ** 2 ** 2 ** 2"), lr=1.0, steps=30, seed=0)
    assert blown.score == math.inf and blown.diverged_at is not None and blown.diverged_at < 30


def test_lr_grid_presets_and_lists():
    from diffsearch.tasks.optimizer_tasks import LR_GRID, parse_lr_grid

    assert parse_lr_grid("decade") == LR_GRID == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    half = parse_lr_grid("half-decade")
    assert len(half) == 11 and set(LR_GRID) <= set(half) and half == tuple(sorted(half))
    assert parse_lr_grid("1e-2, 1e-3,1e-2") == (1e-3, 1e-2)
    for bad in ("", "0", "1e-3,nan", "fast"):
        with pytest.raises(UsageError):
            parse_lr_grid(bad)


def test_mnist_unet_task_trains_the_image_jobs_unet_on_mnist():
    task = make_task("mnist-unet", scale=0.005, lr_grid=(1e-3,))  # 6 steps of 64 at 16 px
    assert task.data.shape[1:] == (1, 16, 16) and len(task.data) == 50_000
    assert task.steps == 6 and task.noise_scheduler.config.num_train_timesteps == 1000
    adam = parse("m1h / sqrt(m2h)")
    run = task.train(adam, lr=1e-3, steps=task.steps, seed=0)
    assert math.isfinite(run.score) and run.score < task.initial_loss
    same = task.train(adam, lr=1e-3, steps=task.steps, seed=0)
    assert same.score == run.score  # seeded: a rule is judged on the same batches as its rivals


def test_fid_score_is_refused_where_there_are_no_images():
    for name in ("toy2d-moons", "digits"):
        with pytest.raises(UsageError, match="only mnist-unet"):
            make_task(name, score="fid")
