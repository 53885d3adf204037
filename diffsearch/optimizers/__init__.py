"""Baselines that are not programs of the update-rule language: torch optimizers, trained by the optimizer job
beside the hand-designed rules (``diffsearch.optim.HAND_DESIGNED``) with their lr from the same grid.

Add one by adding a file with a class taking ``(params, lr, weight_decay, total_steps, seed)`` and a line here:
name -> (class, decoupled weight decay, one-line description).
"""

from __future__ import annotations

from diffsearch.optimizers.muon import MuonAdamW

TORCH_BASELINES = {
    "Muon": (MuonAdamW, 0.01, "torch.optim.Muon on hidden matrices (conv kernels as 2-D), AdamW on the rest"),
}

__all__ = ["TORCH_BASELINES", "MuonAdamW"]
