"""Scatter plots of generated points (PNG): people would rather look at them than read a score."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffsearch.plots import plt

from diffsearch.run_files import save_figure


def scatter_panels(
    panels: list[tuple[str, np.ndarray, float | None]], path: Path, title: str = "", max_points: int = 5000
) -> None:
    """One scatter panel per (label, points, score); the same axes for all, first two dimensions."""
    rng = np.random.default_rng(0)
    lim = np.percentile(np.abs(panels[0][1][:, :2]), 99.5) * 1.3
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), squeeze=False)
    for ax, (label, points, score) in zip(axes[0], panels):
        shown = points[rng.permutation(len(points))[:max_points]]
        y = shown[:, 1] if shown.shape[1] > 1 else rng.normal(scale=0.05, size=len(shown))
        ax.scatter(shown[:, 0], y, s=1.5, alpha=0.5)
        ax.set_title(label if score is None else f"{label}\nPRDC loss {score:.4f}", fontsize=10)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
