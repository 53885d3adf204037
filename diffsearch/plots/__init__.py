"""PNG plots; matplotlib's backend is set here, once, before pyplot is imported (no display needed).

- ``training``: scatter panels of generated points (hparams on vectors);
- ``images``: image grids (hparams on images) and captioned image rows (prompt).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

__all__ = ["plt"]
