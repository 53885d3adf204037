"""Backends: models and training loops. Scoring lives in objectives/."""
