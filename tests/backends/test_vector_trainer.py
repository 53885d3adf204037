import numpy as np
import pytest
import torch

from diffsearch.backends.mlp_denoiser import MLPDenoiser
from diffsearch.backends.vector_trainer import train_denoiser
from diffsearch.datasets import load_vector_data
from diffsearch.errors import TrialDiverged
from diffsearch.spaces.training import TOY2D


@pytest.fixture(scope="module")
def data():
    return load_vector_data("moons", n_points=4000, held_out=1000)


def test_denoiser_shape_matches_seed():
    model = MLPDenoiser(2)
    assert len(model.blocks) == 4
    linears = [m for m in model.blocks[0].net if isinstance(m, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(65, 65), (65, 64)]
    assert model(torch.zeros(5, 2), torch.zeros(5)).shape == (5, 2)


def test_training_lowers_loss_and_reports_checkpoints(data):
    config = TOY2D.complete({**TOY2D.baseline(), "batch_size": 1024})
    reports = []
    trained = train_denoiser(
        config,
        data.train,
        epochs=6,
        seed=0,
        report=lambda epoch, sample: reports.append((epoch, sample().shape)),
        report_epochs=(2, 4),
        sample_count=300,
    )
    assert trained.epoch_losses[-1] < trained.epoch_losses[0]
    assert reports == [(2, (300, 2)), (4, (300, 2))]


def test_same_seed_same_run(data):
    config = TOY2D.complete(TOY2D.baseline())
    a = train_denoiser(config, data.train, epochs=1, seed=3)
    b = train_denoiser(config, data.train, epochs=1, seed=3)
    assert a.epoch_losses == b.epoch_losses
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    np.testing.assert_array_equal(a.sample(50, g()), b.sample(50, g()))


@pytest.mark.parametrize("scheduler, warmup", [("cosine", 0.2), ("constant_with_warmup", 0.1), ("constant", 0.0)])
def test_lr_schedules_and_adamw(data, scheduler, warmup):
    config = TOY2D.complete(
        {
            "lr": 1e-3,
            "lr_scheduler": scheduler,
            "warmup_ratio": warmup,
            "batch_size": 4096,
            "optimizer": "adamw",
            "weight_decay": 1e-4,
            "num_train_timesteps": 20,
        }
    )
    if scheduler == "constant":
        config.pop("warmup_ratio")
    assert np.isfinite(train_denoiser(config, data.train, epochs=1, seed=0).epoch_losses).all()


def test_diverging_lr_raises(data):
    config = TOY2D.complete(TOY2D.baseline())
    config["lr"] = 1e30
    with pytest.raises(TrialDiverged):
        train_denoiser(config, data.train, epochs=3, seed=0)
