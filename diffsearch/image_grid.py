"""A PNG of image rows with captions (before / after pictures of the prompt job)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffsearch.run_files import save_figure  # noqa: E402


def image_grid(rows: list[tuple[str, np.ndarray]], path: Path, title: str = "") -> None:
    """One row per (caption, images N x H x W x 3 in [0, 1])."""
    cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 3.6 * len(rows)), squeeze=False)
    for (caption, images), row in zip(rows, axes):
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(images):
                ax.imshow(np.clip(images[j], 0, 1), interpolation="nearest")
        row[0].set_title(caption, fontsize=8, loc="left", wrap=True)
    fig.suptitle(textwrap.fill(title, width=45 * cols), fontsize=9)  # wrapped: one column is narrow
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
