"""Optimizers you can train with: an update rule compiled to a ``torch.optim.Optimizer`` (``from_expr``,
``RuleOptimizer``, the hand-designed rules; rules.py) and the torch baselines that are not rules
(``TORCH_BASELINES``; baselines.py, muon.py).

    import diffsearch.optimizers
    opt = diffsearch.optimizers.from_expr("exp(ld * sg * sm1) * g", model.parameters(), lr=1e-3, total_steps=10_000)
"""

from __future__ import annotations

from diffsearch.optimizers.baselines import TORCH_BASELINES
from diffsearch.optimizers.muon import MuonAdamW
from diffsearch.optimizers.rules import HAND_DESIGNED, RuleOptimizer, from_expr

__all__ = ["HAND_DESIGNED", "TORCH_BASELINES", "MuonAdamW", "RuleOptimizer", "from_expr"]
