"""Objectives: pure scoring of generated samples against held-out data (no training here)."""

from diffsearch.objectives.prdc import PRDC_SCALAR_FORMULA, prdc, prdc_loss

OBJECTIVES = {
    "prdc": "PRDC loss on vectors: " + PRDC_SCALAR_FORMULA,
}

__all__ = ["OBJECTIVES", "PRDC_SCALAR_FORMULA", "prdc", "prdc_loss"]
