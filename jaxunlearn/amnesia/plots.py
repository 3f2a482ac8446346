"""Pictures for Selective Amnesia: sample grids before/after and a latent-space map with class centroids.

Every figure is written atomically (:func:`jaxunlearn.io.atomic_write_bytes`),
so a reader never sees a half-written PNG.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxunlearn.io import atomic_write_bytes, figure_bytes, save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sample_grids(
    grids: Sequence[np.ndarray], titles: Sequence[str], image_shape: tuple[int, int], path: str
) -> str:
    """:func:`sample_grids_png` written to ``path`` (atomically); returns ``path``."""
    return atomic_write_bytes(path, sample_grids_png(grids, titles, image_shape))


def sample_grids_png(grids: Sequence[np.ndarray], titles: Sequence[str], image_shape: tuple[int, int]) -> bytes:
    """PNG bytes of one panel per grid; grid ``g`` (C, K, D): row ``c`` holds ``K`` samples of class ``c``, each
    ``D = H*W`` pixels.

    Every image pixel is drawn as a square of the same size in every panel (the figure is sized from the
    tile counts, at most 4 inches along a panel's longer side), so images keep their aspect ratio whatever
    ``C`` and ``K``; panels wider than tall (strips of samples) are stacked in a column, others side by side.
    """
    plt = _pyplot()
    h, w = image_shape
    tiles = []
    for g in grids:
        g = np.asarray(g)
        c, k, _ = g.shape
        tiles.append(g.reshape(c, k, h, w).transpose(0, 2, 1, 3).reshape(c * h, k * w))
    scale = min(0.05, 4.0 / max(max(t.shape) for t in tiles))  # inches per image pixel
    stacked = all(t.shape[1] > t.shape[0] for t in tiles)
    heights, widths = [t.shape[0] for t in tiles], [t.shape[1] for t in tiles]
    if stacked:
        fig, axes = plt.subplots(len(tiles), 1, squeeze=False, gridspec_kw={"height_ratios": heights},
                                 figsize=(max(widths) * scale + 0.6, sum(px * scale + 0.45 for px in heights)))
        panels = axes[:, 0]
    else:
        fig, axes = plt.subplots(1, len(tiles), squeeze=False, gridspec_kw={"width_ratios": widths},
                                 figsize=(sum(px * scale + 0.6 for px in widths), max(heights) * scale + 0.45))
        panels = axes[0]
    for ax, tile, title in zip(panels, tiles, titles):
        ax.imshow(tile, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
        ax.set_title(title, fontsize=9)
        rows = tile.shape[0] // h
        ax.set_yticks((np.arange(rows) + 0.5) * h, [str(i) for i in range(rows)])
        ax.set_xticks([])
    try:
        return figure_bytes(fig)
    finally:
        plt.close(fig)


def image_strip(images: np.ndarray, image_shape: tuple[int, int], path: str, title: str = "") -> str:
    """A row of images ``(T, H*W)`` (for latent walks and attack results)."""
    return sample_grids([np.asarray(images)[None]], [title], image_shape, path)


def latent_map(
    latents: dict[str, np.ndarray], labels: np.ndarray, path: str, *, highlight: Sequence[int] = ()
) -> str:
    """Scatter of encoder means ``{name: (N, z)}`` projected to 2-D by one shared PCA (fit on all of them),
    coloured by class, with each class centroid marked and labelled; ``highlight`` classes are ringed."""
    plt = _pyplot()
    stacked = np.concatenate(list(latents.values()))
    mean = stacked.mean(0)
    _, _, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    basis = vt[:2].T
    labels = np.asarray(labels)
    fig, axes = plt.subplots(1, len(latents), figsize=(4.5 * len(latents), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (name, z) in zip(axes[0], latents.items()):
        p = (np.asarray(z) - mean) @ basis
        for k in np.unique(labels):
            sel = labels == k
            ax.scatter(p[sel, 0], p[sel, 1], s=6, alpha=0.4, color=cmap(int(k) % 10))
            cx, cy = p[sel].mean(0)
            ring = dict(edgecolors="red", linewidths=2.0) if int(k) in highlight else dict(edgecolors="black")
            ax.scatter([cx], [cy], s=140, color=cmap(int(k) % 10), marker="o", **ring)
            ax.annotate(str(int(k)), (cx, cy), ha="center", va="center", fontsize=8, color="white", weight="bold")
        ax.set_title(f"{name}: encoder means (PCA), centroids", fontsize=9)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
