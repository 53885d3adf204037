"""Image grids (PNG): baseline vs best config vs real images side by side (hparams), image rows with captions
(before / after pictures of the prompt job)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from diffsearch.plots import plt

from diffsearch.run_files import save_figure


def tile(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 N x H x W x C -> one uint8 grid image with a 1-pixel gap."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = image
    return grid


def image_grid_panels(panels: list[tuple[str, np.ndarray, float | None]], path: Path, title: str = "") -> None:
    """One grid per (label, uint8 images, FID or None)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4), squeeze=False)
    for ax, (label, images, score) in zip(axes[0], panels):
        grid = tile(images, columns=min(8, len(images)))
        ax.imshow(
            grid[..., 0] if grid.shape[2] == 1 else grid,
            cmap="gray" if grid.shape[2] == 1 else None,
            vmin=0,
            vmax=255,
            interpolation="nearest",
        )
        ax.set_title(label if score is None else f"{label}\nFID {score:.1f}", fontsize=10)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))  # leave room for the suptitle
    save_figure(fig, path, dpi=110)
    plt.close(fig)


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
