import optuna
import pytest

from diffsearch.errors import UsageError
from diffsearch.spaces.training import IMAGES, SPACES, TOY2D


@pytest.mark.parametrize("space", [e.value for e in SPACES.builtin().values()], ids=list(SPACES))
def test_conditionals_hold_for_sampled_points(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_schedulers, seen_optimizers = set(), set()
    for _ in range(200):
        trial = study.ask()
        params = space.suggest(trial)
        space.validate(params)
        assert ("warmup_ratio" in params) == (params["lr_scheduler"] != "constant")
        assert ("weight_decay" in params) == (params["optimizer"] == "adamw")
        seen_schedulers.add(params["lr_scheduler"])
        seen_optimizers.add(params["optimizer"])
        study.tell(trial, 0.0)
    assert len(seen_schedulers) == 4 and seen_optimizers == {"adam", "adamw"}


def test_table_ranges():
    assert TOY2D.lr_range == (1e-5, 1e-2) and TOY2D.batch_sizes == (1024, 2048, 4096)
    assert TOY2D.timesteps == (20, 40, 60, 80, 100) and TOY2D.noise_schedules is None
    assert IMAGES.lr_range == (1e-5, 1e-3) and IMAGES.batch_sizes == (32, 64, 128)
    assert set(IMAGES.noise_schedules) == {"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"}


def test_baselines_are_table3_and_valid():
    toy = TOY2D.complete(TOY2D.baseline())
    assert toy == {
        "lr": 1e-3,
        "lr_scheduler": "linear",
        "warmup_ratio": 0.0,
        "batch_size": 2048,
        "optimizer": "adam",
        "weight_decay": 0.0,
        "num_train_timesteps": 40,
        "beta_schedule": "squaredcos_cap_v2",
    }
    images = IMAGES.complete(IMAGES.baseline())
    assert images["lr"] == 4e-4 and images["weight_decay"] == 0.01 and images["batch_size"] == 64
    assert images["beta_schedule"] == "squaredcos_cap_v2" and images["lr_scheduler"] == "constant"


@pytest.mark.parametrize(
    "change",
    [
        {"lr": 1.0},
        {"batch_size": 100},
        {"optimizer": "sgd"},
        {"lr_scheduler": "constant", "warmup_ratio": 0.1},
        {"weight_decay": 0.01},
    ],
)
def test_validate_rejects_points_outside(change):
    with pytest.raises(UsageError):
        TOY2D.validate({**TOY2D.baseline(), **change})
