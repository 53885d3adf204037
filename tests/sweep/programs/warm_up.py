"""A module beside a program, preloaded by ``preload: ["warm_up:compute"]``: it computes with torch before the
fork, as a warm-up that loads a network would."""

import torch


def compute() -> None:
    x = torch.randn(256, 256)
    for _ in range(4):
        x = torch.tanh(x @ x / 16)
