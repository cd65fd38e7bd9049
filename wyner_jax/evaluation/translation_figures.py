"""Cross-domain translation with borrowed exclusive codes (iiae.md §5.4 ``outputsY_fromX``,
``im_swapped_*``): x's shared content decoded with the exclusive code of another y.

`style_grid` lays out, for content inputs x_1..x_R and style sources y_{s1}..y_{sK}:

    row 0:  [ blank, blank, y_{s1},        ..., y_{sK}        ]
    row i:  [ x_i,   y_i,   T(x_i, y_{s1}), ..., T(x_i, y_{sK}) ]

where y_i is x_i's own partner (the target) and T(x, y_s) = Dec_y(shared code of x, exclusive
code of y_s). When the style sources are the first content rows' partners, the diagonal
cells T(x_i, y_i) reproduce the partner's exclusive factor: a disentangled model gives y_i
there and, along a row, x_i's content in every column's style.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

BLANK = 1.0  # white in [-1, 1] images


def style_grid(
    translate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    content: np.ndarray,
    partners: np.ndarray,
    styles: np.ndarray,
) -> np.ndarray:
    """[R + 1, K + 2, H, W, C] cells of the grid above (values in [−1, 1]).

    Args:
      translate: (content batch [R, ...], style batch [R, ...]) → translations [R, H, W, C],
        row by row (e.g. the model's ``translate_x2y_style``).
      content: [R, ...] inputs of the source domain.
      partners: [R, H, W, C] their partners in the target domain.
      styles: [K, H, W, C] style sources in the target domain.
    """
    content, partners, styles = (np.asarray(a, np.float32) for a in (content, partners, styles))
    r, k = len(content), len(styles)
    cell = partners.shape[1:]
    if content.shape[1:] != cell or styles.shape[1:] != cell:
        raise ValueError(
            f"style_grid needs images of one shape, got content {content.shape[1:]}, partners "
            f"{cell}, styles {styles.shape[1:]}."
        )
    grid = np.full((r + 1, k + 2) + cell, BLANK, np.float32)
    grid[0, 2:] = styles
    grid[1:, 0] = content
    grid[1:, 1] = partners
    for j in range(k):
        grid[1:, 2 + j] = translate(content, np.repeat(styles[j : j + 1], r, axis=0))
    return grid
