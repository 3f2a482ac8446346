"""Convolution and max pooling in the forms XLA:CPU runs fast, equal to ``nn.Conv`` and ``nn.max_pool``.

The conv models of the papers (the digits SmallCNN, LeNet-5, the Bayesian LeNet, Selective Amnesia's
classifier) are small: a few channels on maps of 4x4 to 32x32. XLA:CPU (jax 0.10.2) runs such
convolutions and their gradients several times slower than oneDNN does for PyTorch, up to ~20x on
zero-padded convolutions of small maps, and runs the gradient of ``lax.reduce_window`` max pooling
(a ``select_and_scatter``) as a slow generic loop. Three exact rewrites (``benchmarks/vs_pytorch.py
--conv-forms`` measures them):

* :func:`conv_general_dilated`, a drop-in for ``jax.lax.conv_general_dilated`` given to
  ``nn.Conv(conv_general_dilated=...)``: a stride-1 2-D convolution of a small map is one matrix
  product with its dense (doubly Toeplitz) matrix,
  ``out[n, (p, q, d)] = sum_(i, j, c) x[n, (i, j, c)] T[(i, j, c), (p, q, d)]`` with
  ``T[(i, j, c), (p, q, d)] = K[i - p + pad_top, j - q + pad_left, c, d]`` (0 outside the kernel).
  ``T`` is gathered from ``K`` (with one zero row and column appended) by constant indices, so its
  entries are exactly ``K``'s and the gradient reaches ``K`` by the gather's scatter-add; only the
  order of the sums differs from the direct convolution (float32 rounding). It is used where ``T`` is small
  (:data:`DENSE_MAX_ENTRIES`) and costs no more flops than the strip form below (5x5 kernels; with
  padding on a small map ``T`` skips the taps that meet only zeros: the digits SmallCNN's second
  layer, 4x4 maps, costs 0.64x the direct convolution) or, for smaller kernels, at most
  :data:`DENSE_MAX_FLOP_RATIO` times the direct convolution; everything else (strides, dilation,
  groups, large maps with small kernels) goes to ``lax.conv_general_dilated`` unchanged.
* :func:`strip_conv`, used by :func:`conv_general_dilated` where the dense form does not apply, for
  stride-1 convolutions with at least :data:`STRIP_MIN_TAPS` kernel taps (5x5): each output row is cut
  into strips of ``t`` positions (:func:`strip_width`), and a strip is one row of a matrix product of
  the strip's input window (``kh`` rows, ``t + kw - 1`` columns, all channels) with a banded matrix
  ``B`` gathered from the kernel (the dense form restricted to one strip), ``out[n, p, s t + q, d] =
  sum_(u, i, c) X[(n, p, s), (u, i, c)] B[(u, i, c), (q, d)]`` with ``X[(n, p, s), (u, i, c)] = x[n, p +
  i, s t + u, c]`` (``x`` zero-padded) and ``B[(u, i, c), (q, d)] = K[i, u - q, c, d]`` (0 outside the
  kernel). ``X`` is built from ``kh`` row slices of the input and ``ceil((t + kw - 1) / t)`` reshapes of
  them, and holds ``kh (t + kw - 1) / t`` copies of the input (im2col columns hold ``kh kw``: 2.5x more
  for 5x5 kernels and ``t = 4``); the product costs ``(t + kw - 1) / kw`` times the direct convolution's
  flops and its gradients are such products too. Measured (``benchmarks/vs_pytorch.py --conv-forms``: an
  SSD pass of 20 batches of 64 in :func:`jaxunlearn.loops.scan`, the library's forms against ``nn.Conv``
  and ``nn.max_pool``, and against im2col columns, 25 shifted slices, times the kernel; one run on a
  2-core CPU): SmallCNN(8 channels) at 32x32x3 206 against 349 and 382 ms, LeNet-5 at 32x32 149 against
  271 and 287 ms, the original SmallCNN (64 channels) at 32x32x3 1.38 against 3.69 and 2.29 s. The width
  was chosen on the layers of those models, 1 to 8 tried (4 and 2 were fastest); 3x3 kernels with 64 or
  more channels (ResNet-18's) were slower in strips (64 channels at 32x32: 244 against 210 ms for a
  kernel and input gradient) and keep ``lax.conv_general_dilated``.
* :func:`max_pool`: non-overlapping windows (window = stride, no padding) as a reshape and a
  ``max``; the forward value is that of ``nn.max_pool``. The gradient differs only where a window
  holds several equal maxima (it is split equally instead of going to one of them), which after a
  ReLU happens only for all-zero windows, whose gradient the ReLU zeroes anyway.

**Policy** (read when a model is traced, like :mod:`jaxunlearn.loops`): ``"auto"`` (default) uses
the rewrites on the CPU backend only (cuDNN and the TPU compiler run the plain operations well);
``"dense"`` on every backend; ``"lax"`` never. Choose with :func:`set_conv_policy` or
``with conv_policy("lax"): ...``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxunlearn._policy import Policy
from jaxunlearn._validation import check_positive_int

CONV_POLICIES = ("auto", "dense", "lax")
"""The convolution policies (module docstring)."""

DENSE_MAX_ENTRIES = 1 << 22
"""Largest dense matrix ``T`` (entries; 16 MiB in float32) :func:`conv_general_dilated` builds."""

DENSE_MAX_FLOP_RATIO = 4.0
"""For kernels below :data:`STRIP_MIN_TAPS`, the dense form is used while its flops are at most this multiple of
the direct convolution's (5x5 kernels compare it with the strip form)."""

STRIP_MIN_TAPS = 25
"""The strip form (:func:`strip_conv`) takes stride-1 convolutions with kernels of at least this many taps (5x5)."""

STRIP_NARROW_FEATURES = 16
"""Below this many output features a strip is 4 output positions wide, else 2 (:func:`strip_width`)."""


_POLICY = Policy("convolution policy", CONV_POLICIES)


def get_conv_policy() -> str:
    """The convolution policy in force (``"auto"`` unless set)."""
    return _POLICY.get()


def set_conv_policy(policy: str) -> str:
    """Set the convolution policy for the models traced from now on (module docstring); returns the previous one."""
    return _POLICY.set(policy)


def conv_policy(policy: str) -> contextlib.AbstractContextManager[None]:
    """``with conv_policy("lax"): ...``: the policy for the models traced inside the block."""
    return _POLICY.use(policy)


def _rewrite() -> bool:
    policy = _POLICY.get()
    return policy == "dense" or (policy == "auto" and jax.default_backend() == "cpu")


_NHWC = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))


def _taps(size: int, out: int, kernel: int, before: int) -> np.ndarray:
    """``[size, out]``: the kernel tap that input position ``i`` meets at output position ``p``, ``kernel``
    (the appended zero) where it meets none."""
    tap = np.arange(size)[:, None] - np.arange(out)[None, :] + before
    return np.where((tap >= 0) & (tap < kernel), tap, kernel)


def dense_conv(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]]) -> jax.Array:
    """The stride-1 convolution of NHWC ``x`` with HWIO ``kernel`` as one matrix product (module docstring).

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[kh, kw, C, D]``.
      padding: ``((top, bottom), (left, right))`` zero padding.

    Returns:
      ``[N, Ho, Wo, D]``, ``Ho = H + top + bottom - kh + 1`` (likewise ``Wo``): what
      ``lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))``
      gives, up to float rounding.
    """
    n, h, w, c = x.shape
    kh, kw, _, d = kernel.shape
    (top, bottom), (left, right) = padding
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    rows, cols = _taps(h, ho, kh, top), _taps(w, wo, kw, left)
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    matrix = padded[rows[:, None, :, None], cols[None, :, None, :]]  # [h, w, ho, wo, c, d]
    matrix = jnp.transpose(matrix, (0, 1, 4, 2, 3, 5)).reshape(h * w * c, ho * wo * d)
    return (x.reshape(n, h * w * c) @ matrix).reshape(n, ho, wo, d)


def strip_width(features: int) -> int:
    """The strip width :func:`conv_general_dilated` uses for a convolution with ``features`` output features:
    4 below :data:`STRIP_NARROW_FEATURES`, else 2 (a product ``t features`` wide; measured best on the layers of
    SmallCNN and LeNet-5, module docstring)."""
    return 4 if features < STRIP_NARROW_FEATURES else 2


def strip_conv(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]], width: int) -> jax.Array:
    """The stride-1 convolution of NHWC ``x`` with HWIO ``kernel`` as a product of input strips with a banded
    matrix (module docstring).

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[kh, kw, C, D]``.
      padding: ``((top, bottom), (left, right))`` zero padding.
      width: ``t``, output positions per strip (a positive integer); the last strip of a row may reach past
        the output, whose extra positions are computed on zeros and dropped.

    Returns:
      ``[N, Ho, Wo, D]``, as :func:`dense_conv`: what ``lax.conv_general_dilated`` gives, up to float rounding.
    """
    width = check_positive_int(width, "width")
    n, h, w, c = x.shape
    kh, kw, _, d = kernel.shape
    (top, bottom), (left, right) = padding
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    strips, span = -(-wo // width), width + kw - 1
    shifts = -(-span // width)  # reshapes of the rows, each shifted by one strip, that cover a strip's window
    extra = max(0, (strips + shifts - 1) * width - (w + left + right))
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right + extra), (0, 0)))
    rows = jnp.stack([padded[:, i:i + ho] for i in range(kh)], axis=3).reshape(n, ho, -1, kh * c)
    windows = jnp.concatenate([rows[:, :, s * width:(s + strips) * width].reshape(n, ho, strips, width, kh * c)
                               for s in range(shifts)], axis=3)[:, :, :, :span]
    band = jnp.pad(kernel, ((0, 0), (0, 1), (0, 0), (0, 0)))[:, _taps(span, width, kw, 0)]  # [kh, span, t, c, d]
    band = jnp.transpose(band, (1, 0, 3, 2, 4)).reshape(span * kh * c, width * d)
    out = windows.reshape(n * ho * strips, span * kh * c) @ band
    return out.reshape(n, ho, strips * width, d)[:, :, :wo]


def _form(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
          feature_group_count, batch_group_count) -> tuple[Callable | None, Sequence[tuple[int, int]] | None]:
    """``(form, explicit padding)``: :func:`dense_conv` or :func:`strip_conv` (its width bound) where one applies
    to this convolution (module docstring), else ``(None, None)``."""
    if lhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1:
        return None, None
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _NHWC:
        return None, None
    if any(s != 1 for s in window_strides) or any(d != 1 for d in (lhs_dilation or ())) \
            or any(d != 1 for d in (rhs_dilation or ())):
        return None, None
    pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding) \
        if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    if any(p < 0 for pair in pads for p in pair):
        return None, None
    (_, h, w, c), (kh, kw, _, d) = lhs.shape, rhs.shape
    ho, wo = h + sum(pads[0]) - kh + 1, w + sum(pads[1]) - kw + 1
    if ho < 1 or wo < 1:
        return None, None
    entries = h * w * c * ho * wo * d
    direct = ho * wo * kh * kw * c * d
    width = strip_width(d)
    strips = kh * kw >= STRIP_MIN_TAPS
    dense_limit = direct * ((width + kw - 1) / kw if strips else DENSE_MAX_FLOP_RATIO)
    if entries <= DENSE_MAX_ENTRIES and entries <= dense_limit:
        return dense_conv, pads
    return (functools.partial(strip_conv, width=width), pads) if strips else (None, None)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None) -> jax.Array:
    """``jax.lax.conv_general_dilated`` (same arguments), computed by :func:`dense_conv` or :func:`strip_conv`
    where the policy and the shapes call for it (module docstring)."""
    form, pads = None, None
    if _rewrite() and precision is None and preferred_element_type is None:
        form, pads = _form(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                           feature_group_count, batch_group_count)
    if form is None:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)
    return form(lhs, rhs, pads)


def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int] | None = None) -> jax.Array:
    """``nn.max_pool(x, window, strides)`` (``VALID``) for NHWC ``x``; non-overlapping windows as a reshape and
    a ``max`` where the policy calls for it (module docstring)."""
    strides = tuple(strides or window)
    if not _rewrite() or tuple(window) != strides or x.ndim != 4:
        return nn.max_pool(x, tuple(window), strides=strides)
    (n, h, w, c), (a, b) = x.shape, window
    x = x[:, : h // a * a, : w // b * b]
    return jnp.max(x.reshape(n, h // a, a, w // b, b, c), axis=(2, 4))


__all__ = ["CONV_POLICIES", "DENSE_MAX_ENTRIES", "DENSE_MAX_FLOP_RATIO", "STRIP_MIN_TAPS", "STRIP_NARROW_FEATURES",
           "conv_general_dilated", "conv_policy", "dense_conv", "get_conv_policy", "max_pool", "set_conv_policy",
           "strip_conv", "strip_width"]
