"""Objectives: pure scoring of generated samples against held-out data (no training here)."""

from diffsearch.objectives.prdc import PRDC_SCALAR_FORMULA, prdc, prdc_loss

OBJECTIVES = {
    "prdc": "PRDC loss on vectors: " + PRDC_SCALAR_FORMULA,
    "fid": "FID on images with the real Inception-v3 FID network (KID beside it)",
}

__all__ = ["OBJECTIVES", "PRDC_SCALAR_FORMULA", "prdc", "prdc_loss"]
