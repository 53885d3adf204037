"""The UNet trainer for image diffusion on tiny settings (16 px digits, 1/8 width, CPU)."""

import numpy as np
import pytest
import torch

from diffsearch.backends import unet_trainer
from diffsearch.datasets import images as image_sets
from diffsearch.errors import UsageError
from diffsearch.spaces.training import get_space


def test_unet_baseline_shape_and_width():
    assert unet_trainer.unet_channels(1.0) == (64, 128, 128, 256)
    assert unet_trainer.unet_channels(0.25) == (16, 32, 32, 64)
    model = unet_trainer.make_unet(16, 1, 0.125)
    types = model.config.down_block_types
    assert types == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    assert model.config.up_block_types == ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    out = model(torch.zeros(2, 1, 16, 16), torch.tensor([0, 999])).sample
    assert out.shape == (2, 1, 16, 16)
    with pytest.raises(UsageError):
        unet_trainer.unet_channels(0)


@pytest.mark.parametrize("schedule, sampler", [("sigmoid", "ddim"), ("linear", "ddpm")])
def test_trainer_tiny_is_seeded_and_reports(schedule, sampler):
    space = get_space("images")
    config = space.complete({**space.baseline(), "batch_size": 32, "beta_schedule": schedule})
    images = image_sets.load_image_data("digits", resolution=16, train_images=32).train_tensor()
    reported = []
    a = unet_trainer.train_unet(
        config,
        images,
        2,
        seed=5,
        width=0.125,
        device="cpu",
        report=lambda epoch, trained: reported.append(epoch),
        report_epochs=(1,),
    )
    b = unet_trainer.train_unet(config, images, 2, seed=5, width=0.125, device="cpu")
    assert reported == [1] and a.epoch_losses == b.epoch_losses and len(a.epoch_losses) == 2
    samples = a.sample(3, torch.Generator().manual_seed(0), steps=2, sampler=sampler)
    assert samples.shape == (3, 16, 16, 1) and samples.dtype == np.uint8
    again = a.sample(3, torch.Generator().manual_seed(0), steps=2, sampler=sampler)
    assert np.array_equal(samples, again)
