"""Baselines that are not programs of the update-rule language: torch optimizers, trained by the optimizer job
beside the hand-designed rules (``rules.HAND_DESIGNED``) with their lr from the same grid.

Add one by adding a file with a class taking ``(params, lr, weight_decay, total_steps, seed)`` and a ``register``
line here: its class, its decoupled weight decay (``weight_decay``) and one line of description.
"""

from __future__ import annotations

from typing import Any

from diffsearch.optimizers.muon import MuonAdamW
from diffsearch.registry import Registry

TORCH_BASELINES: Registry[Any] = Registry("torch optimizer")
TORCH_BASELINES.register(
    "Muon", MuonAdamW, "torch.optim.Muon on hidden matrices (conv kernels as 2-D), AdamW on the rest", weight_decay=0.01
)
