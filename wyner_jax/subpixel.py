"""Stride-2 transposed convolution computed phase by phase on the undilated input, then a
depth-to-space shuffle ("sub-pixel" convolution).

``lax.conv_transpose`` with stride 2 convolves a zero-dilated input: 3 of every 4 multiply-adds
are with zeros, and on CPU the gradient with respect to the kernel of such a dilated
convolution takes XLA's generic loop emitter instead of its fast convolution kernels (measured
on the dev machine: 1.9 s for the kernel gradient of one 8×8×128 → 16×16×64 k5 layer at batch
64, 20× the forward pass). Splitting the output by parity ("sub-pixel" convolution) gives the
same numbers from a stride-1 convolution over the undilated input with 4× the output channels:
no zeros, and every gradient is a plain convolution.

For output position o = 2r + p (p ∈ {0, 1} its parity) of a transposed convolution with kernel
k[0..K) and padding (lo, hi) on the dilated input,

    out[2r + p] = Σ_a k[a] · x[r + (p + a − lo)/2]   over a ≡ lo − p (mod 2),

so phase p is a correlation of x with the taps of k of one parity. ``conv_transpose_2x``
computes the four (row parity × column parity) phases either as one stride-1 conv with the
phase kernels side by side in a [T, T, C_in, 4·C_out] kernel ('phase_conv'), or as one matrix
product per kernel tap, (shifted x) @ k[a, b], summed per phase ('tap_matmul': exactly the K²
products, no zero taps), or as one matrix product of every input pixel with every tap and
the phases as sums of shifted slices of it ('col2im'); ``conv_transpose_2x`` has the measured
comparison and uses col2im on CPU. ``ConvTranspose2x``
keeps the usual [K, K, C_in, C_out] parameter, so parameters, initialisation and results are
those of ``flax.linen.ConvTranspose(strides=(2, 2), transpose_kernel=False)``.

The plain stride-2 convolution's input gradient is also a dilated convolution, but the same
rewrite (space-to-depth + stride-1) measured slower than XLA's own at batch 64, so it is left
to XLA.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def same_padding(kernel_size: int, stride: int = 2) -> tuple[int, int]:
    """The (lo, hi) padding of the dilated input that ``lax.conv_transpose`` uses for 'SAME'
    (output side stride·n)."""
    total = kernel_size + stride - 2
    lo = kernel_size - 1 if stride > kernel_size - 1 else -(-total // 2)
    return lo, total - lo


def phase_taps(kernel_size: int, lo: int, stride: int = 2) -> tuple[np.ndarray, np.ndarray, int]:
    """For window offset t and output phase p (position mod ``stride``): the kernel tap
    a[t, p] (valid where mask) and the offset of the window's first input row (``d_min``)."""
    s = stride
    offsets = [
        (p + a - lo) // s for p in range(s) for a in range(kernel_size) if (lo - p - a) % s == 0
    ]
    d_min, d_max = min(offsets), max(offsets)
    t = np.arange(d_max - d_min + 1)[:, None]
    p = np.arange(s)[None, :]
    a = s * (d_min + t) - p + lo
    return a, (a >= 0) & (a < kernel_size), d_min


def _phase_geometry(x_shape, kernel_shape, padding, strides):
    """Per spatial axis: (taps a[t, p], valid[t, p], rows, out_len), and the (lo, hi) padding
    of x that makes window offset t of output row r read input row r + t. An axis's number of
    phases is its stride (a.shape[1])."""
    axes, pads = [], []
    for size, k, (lo, hi), s in zip(x_shape[1:3], kernel_shape[:2], padding, strides):
        a, valid, d_min = phase_taps(k, lo, s)
        out_len = max(0, s * (size - 1) + 1 + lo + hi - k + 1)  # lax's: empty, not negative
        rows = -(-out_len // s)
        pads.append((-d_min, rows - 1 + d_min + a.shape[0] - 1 - (size - 1)))
        axes.append((a, valid, rows, out_len))
    return axes, pads


def _pad(x, pads):
    zero = jnp.zeros((), x.dtype)
    return lax.pad(x, zero, [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])


def _interleave(phases, n, axes, c_out):
    """[n, rows_h, rows_w, s_h (row phase), s_w (column phase), C] → the [n, H, W, C] output."""
    (a_h, _, rows_h, len_h), (a_w, _, rows_w, len_w) = axes
    s_h, s_w = a_h.shape[1], a_w.shape[1]
    y = phases.transpose(0, 1, 3, 2, 4, 5).reshape(n, s_h * rows_h, s_w * rows_w, c_out)
    return y[:, :len_h, :len_w]


def _phase_conv(x, kernel, axes, precision):
    """All phases as one stride-1 conv with a [T, T, C_in, s_h·s_w·C_out] kernel (zeros where
    a phase has no tap)."""
    phase_kernel = kernel
    for axis, (a, valid, _, _) in enumerate(axes):
        k = kernel.shape[axis]
        # Gather the taps of this axis: [.., K, ..] -> [.., T, s, ..], zero where no tap.
        taps = jnp.take(phase_kernel, np.clip(a, 0, k - 1).reshape(-1), axis=2 * axis)
        shape = list(phase_kernel.shape)
        shape[2 * axis : 2 * axis + 1] = list(a.shape)
        mask_shape = [1] * len(shape)
        mask_shape[2 * axis : 2 * axis + 2] = list(a.shape)
        phase_kernel = taps.reshape(shape) * valid.reshape(mask_shape).astype(kernel.dtype)
    # phase_kernel: [T_h, s_h, T_w, s_w, C_in, C_out] -> [T_h, T_w, C_in, s_h·s_w·C_out]
    t_h, s_h, t_w, s_w, c_in, c_out = phase_kernel.shape
    phase_kernel = phase_kernel.transpose(0, 2, 4, 1, 3, 5).reshape(
        t_h, t_w, c_in, s_h * s_w * c_out
    )
    y = lax.conv_general_dilated(
        x,
        phase_kernel,
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )
    return y.reshape(y.shape[:3] + (s_h, s_w, c_out))


def _sum_over_taps(axes, term, shape):
    """[n, rows_h, rows_w, s_h, s_w, C]: phase (p_h, p_w) is Σ term(window slices, a, b) over
    its taps, where the slices select rows t_h.. and columns t_w.. of the padded input's grid
    and (a, b) is the kernel tap they meet; zeros for a phase without taps (kernel < stride)."""
    (a_h, v_h, rows_h, _), (a_w, v_w, rows_w, _) = axes
    s_h, s_w = a_h.shape[1], a_w.shape[1]
    phases = []
    for p_h in range(s_h):
        for p_w in range(s_w):
            y = None
            for t_h in np.flatnonzero(v_h[:, p_h]):
                for t_w in np.flatnonzero(v_w[:, p_w]):
                    window = (slice(None), slice(t_h, t_h + rows_h), slice(t_w, t_w + rows_w))
                    t = term(window, a_h[t_h, p_h], a_w[t_w, p_w])
                    y = t if y is None else y + t
            phases.append(y)
    template = next(y for y in phases if y is not None)
    phases = [jnp.zeros_like(template) if y is None else y for y in phases]
    return jnp.stack(phases, axis=3).reshape(shape[0], rows_h, rows_w, s_h, s_w, shape[-1])


def _split_taps(t, k_w: int, axis: int):
    """``t`` split into its K_h·K_w taps along ``axis`` (taps ordered (a, b) there), as
    ``taps[a][b]``, by one ``lax.split``: its gradient is one concatenation. Static slices
    ``t[a, b]`` would make the gradient a K²-way sum of zero-padded copies, which XLA:CPU
    fused into, and recomputed inside, every consumer (each of Adam's elementwise updates:
    several seconds per step in the MNIST–SVHN profile)."""
    n_taps = t.shape[axis]
    parts = lax.split(t, [1] * n_taps, axis=axis)
    parts = [jnp.squeeze(p, axis) for p in parts]
    return [parts[a * k_w : (a + 1) * k_w] for a in range(n_taps // k_w)]


def _tap_matmuls(x, kernel, axes, precision):
    """Each phase as a sum over its taps of (shifted input) @ kernel[a, b]: the K² products
    of the transposed convolution and nothing else (no zero taps, no kernel rearranged)."""
    k_h, k_w = kernel.shape[:2]
    taps = _split_taps(kernel.reshape(k_h * k_w, *kernel.shape[2:]), k_w, axis=0)

    def term(window, a, b):
        return jnp.einsum("nhwc,cd->nhwd", x[window], taps[a][b], precision=precision)

    return _sum_over_taps(axes, term, (x.shape[0], kernel.shape[-1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul_weight_rows(x, w, precision):
    """``x @ w`` ([P, C] @ [C, M]) whose weight gradient is computed as ``x^T @ g`` ([C, M]).

    Left to JAX's transpose rule, XLA:CPU computed the weight gradient of the col2im product
    as ``g^T @ x`` ([M, C]): a copy of the large ``g`` (P × M, 13 M floats for the decoders'
    8×8×256 → 16×16×128 layer at batch 64) before the product, and the swap back to
    [C, M] recomputed, strided, inside every Adam fusion of the kernel (measured: ~100 ms per
    fusion for one 5×5×512×256 kernel at batch 64)."""
    return jnp.dot(x, w, precision=precision)


def _matmul_weight_rows_fwd(x, w, precision):
    return jnp.dot(x, w, precision=precision), (x, w)


def _matmul_weight_rows_bwd(precision, residuals, g):
    x, w = residuals
    return jnp.dot(g, w.T, precision=precision), jnp.dot(x.T, g, precision=precision)


_matmul_weight_rows.defvjp(_matmul_weight_rows_fwd, _matmul_weight_rows_bwd)


def _col2im(x, kernel, axes, pads, precision):
    """One matrix product of every input pixel with every tap, z[n, h, w, (a, b)] = x[n, h, w]
    @ kernel[a, b], then each phase the sum of its taps' shifted slices of z (GEMM + col2im).
    The product runs on the unpadded input (a zero pixel's products are zeros, so z is
    padded instead): exactly the K² products per pixel, in one GEMM whose kernel gradient
    (x^T @ dz) and input gradient (dz @ kernel^T) are single GEMMs too; the kernel enters as
    (c_in, a, b, c_out), so its gradient reaches the HWIO parameter by a copy with
    c_out-long contiguous runs."""
    n, h, w, c_in = x.shape
    k_h, k_w, _, c_out = kernel.shape
    w2d = kernel.transpose(2, 0, 1, 3).reshape(c_in, k_h * k_w * c_out)
    z = _matmul_weight_rows(x.reshape(n * h * w, c_in), w2d, precision)
    taps = _split_taps(z.reshape(n, h, w, k_h * k_w, c_out), k_w, axis=3)
    return _sum_over_taps(
        axes, lambda window, a, b: _pad(taps[a][b], pads)[window], (x.shape[0], kernel.shape[-1])
    )


def conv_transpose_2x(
    x,
    kernel,
    padding: Sequence[tuple[int, int]],
    precision=None,
    form: str = "auto",
    strides: tuple[int, int] = (2, 2),
):
    """``lax.conv_transpose(x, kernel, strides, padding)`` (NHWC, HWIO, kernel not flipped),
    computed phase by phase on the undilated input. ``strides``: (2, 2), or 1 on one axis
    (the caption decoder's (1, 2) layers: a stride-1 axis has one phase).

    ``form``: 'phase_conv' (one stride-1 conv with the four phase kernels side by side),
    'tap_matmul' (one matrix product per kernel tap, summed per phase), 'col2im' (one matrix
    product with every tap, then the phases as sums of shifted slices) or 'auto': 'col2im' on
    CPU, 'phase_conv' on accelerators (not measured there). Measured on the dev CPU (2 cores,
    tcmalloc, 2026-12-02), forward + kernel and input gradients + an AMSGrad update of the
    kernel, ms at batch 8 / 64 (k5 pads (2, 3) as the Wyner decoders, k4 'SAME'):

    ============================  ===========  ===========
    layer                         tap_matmul   col2im
    ============================  ===========  ===========
    k5 4×4×512 → 256               19 / 82      14 / 64
    k5 8×8×256 → 128               13 / 94       9 / 59
    k5 16×16×128 → 3               10 / 84       1 / 6
    k4 1×1×512 → 512               11 / 14      10 / 16
    k4 2×2×512 → 256                7 / 18       5 / 13
    k4 8×8×128 → 64                 3 / 22       2 / 10
    k4 16×16×64 → 3                 4 / 29       1 / 3
    ============================  ===========  ===========

    col2im's kernel gradient is x^T @ dz (``_matmul_weight_rows``); before that VJP the
    per-tap products won on small inputs and 'auto' chose them up to 256 input pixels.
    'phase_conv' (XLA:CPU's convolution) measured far slower on tiny images with many channels
    (2026-11-22: k4 2×2×512 → 256 took 1,006 / 7,886 ms against 13 / 41 ms per tap).
    """
    if any(s not in (1, 2) for s in strides) or len(strides) != 2:
        raise ValueError(f"strides must be two of 1 or 2, got {strides!r}.")
    axes, pads = _phase_geometry(x.shape, kernel.shape, padding, strides)
    if form == "auto":  # tuned on XLA:CPU; not measured elsewhere
        form = "col2im" if jax.default_backend() == "cpu" else "phase_conv"
    forms = {"phase_conv": _phase_conv, "tap_matmul": _tap_matmuls, "col2im": _col2im}
    if form not in forms:
        raise ValueError(f"form must be 'auto' or one of {sorted(forms)}, got {form!r}.")
    if form == "col2im":
        phases = _col2im(x, kernel, axes, pads, precision)
    else:
        phases = forms[form](_pad(x, pads), kernel, axes, precision)
    return _interleave(phases, x.shape[0], axes, kernel.shape[-1])


class ConvTranspose2x(nn.Module):
    """``nn.ConvTranspose(features, kernel_size, strides, padding)`` with strides (2, 2) (or 1
    on one axis), computed by ``conv_transpose_2x`` (same parameters and results, no
    multiplications by zeros)."""

    features: int
    kernel_size: tuple[int, int]
    padding: Any = "SAME"  # 'SAME' or ((lo, hi), (lo, hi)) on the dilated input
    strides: tuple[int, int] = (2, 2)
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        k_h, k_w = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k_h, k_w, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
        s_h, s_w = self.strides
        padding = self.padding
        if padding == "SAME":
            padding = (same_padding(k_h, s_h), same_padding(k_w, s_w))
        dtype = self.dtype or jnp.result_type(x, kernel)
        y = conv_transpose_2x(
            x.astype(dtype), kernel.astype(dtype), padding, strides=tuple(self.strides)
        )
        if bias is not None:
            y = y + bias.astype(dtype)
        return y
