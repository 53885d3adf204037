"""The MLP denoiser for vector data of the thesis study of Optuna HPO for diffusion training: residual
blocks that see the timestep at every block."""

from __future__ import annotations

import torch
from torch import nn


class TimeBlock(nn.Module):
    """``Linear(n+1, n+1) -> LayerNorm -> ReLU -> Linear(n+1, n) -> LayerNorm -> ReLU``, residual."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width + 1, width + 1),
            nn.LayerNorm(width + 1),
            nn.ReLU(),
            nn.Linear(width + 1, width),
            nn.LayerNorm(width),
            nn.ReLU(),
        )

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return h + self.net(torch.cat([h, t], dim=1))


class MLPDenoiser(nn.Module):
    """Predicts the noise added to ``x`` at timestep ``t`` (t given as a fraction of the schedule)."""

    def __init__(self, dim: int, width: int = 64, blocks: int = 4):
        super().__init__()
        self.dim, self.width, self.n_blocks = dim, width, blocks
        self.inp = nn.Linear(dim + 1, width)
        self.blocks = nn.ModuleList(TimeBlock(width) for _ in range(blocks))
        self.out = nn.Linear(width + 1, dim)

    def forward(self, x: torch.Tensor, t_fraction: torch.Tensor) -> torch.Tensor:
        t = t_fraction.reshape(-1, 1).to(x.dtype)
        h = self.inp(torch.cat([x, t], dim=1))
        for block in self.blocks:
            h = block(h, t)
        return self.out(torch.cat([h, t], dim=1))
