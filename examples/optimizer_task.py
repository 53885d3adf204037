"""A task of your own for optimizer discovery: train the UNet of examples/train_unet.py for a few steps.

    diffsearch optimizer --task examples.optimizer_task:make_task --budget 16 --lr-grid 1e-3,1e-2

(run it from the repository root: diffsearch imports ``examples.optimizer_task`` from the current folder).

``make_task()`` returns an object with the protocol of ``diffsearch.tasks.user_task.UserTask``: a ``name``,
the ``steps`` one training takes, and ``train(make_optimizer, seed)`` that builds the model from ``seed``,
its optimizer with ``make_optimizer(model.parameters())``, trains, and returns the final denoising loss
(lower is better), measured on a fixed held-out batch (fixed images, noise and timesteps) so that every
update rule is judged on the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from diffusers import DDPMScheduler

from examples.train_unet import build_unet, diffusion_loss, load_images, random_loss_inputs, to_model_input


@dataclass
class UNetDenoisingTask:
    """The example UNet on 8 x 8 scikit-learn digits: one training (30 steps) takes 1-2 s on a CPU core."""

    name: str = "unet-digits"
    steps: int = 30
    dataset: str = "digits"  # or mnist, fashion-mnist, a folder of images
    resolution: int = 8
    block_out_channels: tuple[int, ...] = (8, 16)
    batch_size: int = 32
    train_images: int = 512
    eval_images: int = 128
    timesteps: int = 1000
    _fixed: tuple[torch.Tensor, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        data = load_images(self.dataset, self.resolution, self.train_images)
        self.channels = data.channels
        self.images = to_model_input(data.train)
        self.scheduler = DDPMScheduler(num_train_timesteps=self.timesteps)
        held_out = to_model_input(data.eval[: self.eval_images])
        noise, timesteps = random_loss_inputs(held_out, self.timesteps, torch.Generator().manual_seed(12345))
        self._fixed = (held_out, noise, timesteps)

    def train(
        self, make_optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer], seed: int
    ) -> float:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same initial weights for every update rule
            model = build_unet(self.resolution, self.channels, self.block_out_channels)
        optimizer = make_optimizer(model.parameters())
        batches = torch.Generator().manual_seed(seed + 1)
        for _ in range(self.steps):
            clean = self.images[torch.randint(0, len(self.images), (self.batch_size,), generator=batches)]
            noise, timesteps = random_loss_inputs(clean, self.timesteps, batches)
            loss = diffusion_loss(model, self.scheduler, clean, noise, timesteps)
            if not torch.isfinite(loss):
                return math.inf  # this learning rate blew up
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return float(diffusion_loss(model, self.scheduler, *self._fixed))


def make_task() -> UNetDenoisingTask:
    return UNetDenoisingTask()
