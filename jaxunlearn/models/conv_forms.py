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
  (:data:`DENSE_MAX_ENTRIES`) and costs at most :data:`DENSE_MAX_FLOP_RATIO` times the flops of the
  direct convolution; everything else (strides, dilation, groups, large maps) goes to
  ``lax.conv_general_dilated`` unchanged.
* :func:`columns_conv`, used by :func:`conv_general_dilated` where the dense form does not apply, for
  stride-1 convolutions with at least :data:`COLUMNS_MIN_TAPS` kernel taps that are either the first
  layer of an image model (at most :data:`COLUMNS_MAX_CHANNELS` input channels, output maps of at
  least :data:`COLUMNS_MIN_MAP` a side) or a narrow later layer (patches of at most
  :data:`COLUMNS_MAX_PATCH` entries, at least :data:`COLUMNS_MIN_FEATURES` output features): the
  kernel's transpose times the columns of shifted channel-first slices of the input,
  ``out^T [D, N Ho Wo] = K^T [D, kh kw C] X [kh kw C, N Ho Wo]`` with
  ``X[(i, j, c), (n, p, q)] = x[n, p + i, q + j, c]`` (``x`` zero-padded). The product's long axis is
  the one GEMM kernels stream over; its gradients are such products too. Measured in the loops that
  use them (``benchmarks/vs_pytorch.py --conv-forms``: an SSD pass of 20 batches of 64 in
  :func:`jaxunlearn.loops.scan`, the library's forms against ``nn.Conv`` and ``nn.max_pool``): LeNet-5
  at 32x32 92 against 177 ms, SmallCNN(8 channels) at 32x32x3 161 against 272 ms. Variants of that
  pass chose the rule: the form loses on 3x3 kernels (ResNet's stem), on 8x8 output maps and on
  SmallCNN(8)'s second layer (8 features), which keep ``lax.conv_general_dilated``.
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
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxunlearn._policy import Policy

CONV_POLICIES = ("auto", "dense", "lax")
"""The convolution policies (module docstring)."""

DENSE_MAX_ENTRIES = 1 << 22
"""Largest dense matrix ``T`` (entries; 16 MiB in float32) :func:`conv_general_dilated` builds."""

DENSE_MAX_FLOP_RATIO = 4.0
"""The dense form is used while its flops are at most this multiple of the direct convolution's."""

COLUMNS_MAX_CHANNELS = 3
"""The columns form (:func:`columns_conv`) takes convolutions of at most this many input channels (images),"""

COLUMNS_MIN_TAPS = 25
"""with kernels of at least this many taps (5x5),"""

COLUMNS_MIN_MAP = 16
"""and output maps of at least this size a side; or (a later layer, more input channels) with"""

COLUMNS_MAX_PATCH = 256
"""patches of at most this many entries (``kh kw C``) and"""

COLUMNS_MIN_FEATURES = 16
"""at least this many output features (LeNet-5's second layer)."""

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


def columns_conv(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]]) -> jax.Array:
    """The stride-1 convolution of NHWC ``x`` with HWIO ``kernel`` as the kernel's transpose times columns
    of shifted channel-first slices (module docstring).

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[kh, kw, C, D]``.
      padding: ``((top, bottom), (left, right))`` zero padding.

    Returns:
      ``[N, Ho, Wo, D]``, as :func:`dense_conv`: what ``lax.conv_general_dilated`` gives, up to float rounding.
    """
    kh, kw, c, d = kernel.shape
    planes = jnp.transpose(jnp.pad(x, ((0, 0), *padding, (0, 0))), (3, 0, 1, 2))  # [C, N, H', W']
    n, ho, wo = x.shape[0], planes.shape[2] - kh + 1, planes.shape[3] - kw + 1
    columns = jnp.stack([planes[:, :, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)])
    out = kernel.reshape(kh * kw * c, d).T @ columns.reshape(kh * kw * c, n * ho * wo)
    return jnp.transpose(out.reshape(d, n, ho, wo), (1, 2, 3, 0))


def _form(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
          feature_group_count, batch_group_count) -> tuple[Callable | None, Sequence[tuple[int, int]] | None]:
    """``(form, explicit padding)``: :func:`dense_conv` or :func:`columns_conv` where one applies to this
    convolution (module docstring), else ``(None, None)``."""
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
    if entries <= DENSE_MAX_ENTRIES and entries <= DENSE_MAX_FLOP_RATIO * direct:
        return dense_conv, pads
    if kh * kw < COLUMNS_MIN_TAPS:
        return None, None
    if c <= COLUMNS_MAX_CHANNELS:  # the first layer of an image model
        fits = min(ho, wo) >= COLUMNS_MIN_MAP
    else:  # a narrow later layer
        fits = kh * kw * c <= COLUMNS_MAX_PATCH and d >= COLUMNS_MIN_FEATURES
    return (columns_conv, pads) if fits else (None, None)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None) -> jax.Array:
    """``jax.lax.conv_general_dilated`` (same arguments), computed by :func:`dense_conv` or :func:`columns_conv`
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


__all__ = ["COLUMNS_MAX_CHANNELS", "COLUMNS_MAX_PATCH", "COLUMNS_MIN_FEATURES", "COLUMNS_MIN_MAP", "COLUMNS_MIN_TAPS",
           "CONV_POLICIES", "DENSE_MAX_ENTRIES", "DENSE_MAX_FLOP_RATIO", "columns_conv", "conv_general_dilated",
           "conv_policy", "dense_conv", "get_conv_policy", "max_pool", "set_conv_policy"]
