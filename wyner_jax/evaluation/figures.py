"""Figures: sample grids (paper §6.7 sample/reconstruction plots) and scatter plots for
vector data (the Gaussian toy problem). PNGs are encoded in memory and written whole
(``paths.write_atomic``: local or gs://), so a reader never sees half a file."""

from __future__ import annotations

import io
import os

import numpy as np

from wyner_jax import paths


def image_grid(images: np.ndarray, border_value: int = 255) -> np.ndarray:
    """Tile images [R, C, H, W, ch] with values in [-1, 1] into one uint8 HWC image.

    Rows and columns are separated (and surrounded) by 1-pixel borders of `border_value`,
    so the result has shape [R*(H+1)+1, C*(W+1)+1, ch]; ch 1 is grayscale, 3 is RGB.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 5 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"image_grid expects [rows, cols, H, W, ch] with ch 1 or 3, got shape {images.shape}; "
            "reshape a batch [N, H, W, ch] to [rows, N // rows, H, W, ch]."
        )
    r, c, h, w, ch = images.shape
    pixels = np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    grid = np.full((r * (h + 1) + 1, c * (w + 1) + 1, ch), border_value, np.uint8)
    for i in range(r):
        for j in range(c):
            top, left = 1 + i * (h + 1), 1 + j * (w + 1)
            grid[top : top + h, left : left + w] = pixels[i, j]
    return grid


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 image (HW, HW1 or HW3) as PNG; a reader never sees a half-written file."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(
            f"save_png expects uint8 pixels, got {array.dtype}; convert with image_grid."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]  # PIL writes 2-D arrays as grayscale
    png = io.BytesIO()
    Image.fromarray(array).save(png, format="PNG")
    paths.write_atomic(path, png.getvalue())


def save_figure(path: str | os.PathLike, fig, **savefig_kwargs) -> None:
    """Writes a matplotlib ``Figure`` as PNG to ``path`` (local or gs://), whole."""
    png = io.BytesIO()
    fig.savefig(png, format="png", **savefig_kwargs)
    paths.write_atomic(path, png.getvalue())


def scatter_plot(path: str | os.PathLike, x: np.ndarray, y: np.ndarray, title: str) -> None:
    """Scatter plot of y against x (first coordinate if vectors) saved as PNG.

    Uses matplotlib's object API with the Agg canvas, so it neither needs a display nor
    changes the global pyplot backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.asarray(x).reshape(len(x), -1)[:, 0]
    y = np.asarray(y).reshape(len(y), -1)[:, 0]
    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=2, alpha=0.3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(path, fig)
