"""Objectives: pure scoring of generated samples against held-out data (no training here)."""

from diffsearch.objectives.prdc import PRDC_SCALAR_FORMULA, prdc, prdc_loss
from diffsearch.registry import Registry

# What ``diffsearch hparams`` scores a trained model by; the data decide which (vectors: prdc, images: fid).
# The value is the kind of data the objective scores.
OBJECTIVES: Registry[str] = Registry("objective")
OBJECTIVES.register("prdc", "vectors", "PRDC loss on vectors: " + PRDC_SCALAR_FORMULA)
OBJECTIVES.register("fid", "images", "FID on images with the real Inception-v3 FID network (KID beside it)")

__all__ = ["OBJECTIVES", "PRDC_SCALAR_FORMULA", "prdc", "prdc_loss"]
