"""Image transforms of the original experiments, on host numpy arrays (NHWC).

* :func:`resize_uint8` is PIL's bilinear ``Image.resize`` on 8-bit images,
  reproduced bit for bit (same filter taps, the same 22-bit fixed-point
  arithmetic and rounding, horizontal pass first, rounding to uint8 after each
  pass). torchvision's ``Resize(32)`` applied to the PIL image, as the Bayesian
  forgetting code does before ``ToTensor``, is this function.
* :func:`resize_float` is the same separable bilinear filter in floating point
  (no rounding); for upsampling it equals ``torch.nn.functional.interpolate(
  mode='bilinear', align_corners=False)``, which torchvision uses on tensors
  (SSD's ``Resize(224)`` for ViT, applied after normalisation).
* :func:`normalize` applies one of the named normalisations to uint8 pixels.
"""

from __future__ import annotations

import numpy as np

from jaxunlearn.data.cifar import CIFAR_MEAN, CIFAR_STD

_PRECISION_BITS = 32 - 8 - 2  # PIL's fixed-point precision for 8-bit resampling

#: name -> (description). "cifar": (x/255 - mean)/std of SSD/JiT; "center": x/255 - 0.5
#: (Normalize((0.5,), (1.,)) of the Bayesian seeds); "unit": x/255 (ToTensor only, Selective Amnesia).
NORMALIZATIONS = ("cifar", "center", "unit")


def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """PIL's bilinear resampling weights, ``[out_size, in_size]``, rows summing to one.

    Output pixel ``i`` has centre ``c = (i + 0.5) * in/out`` in input pixel units;
    input pixel ``j`` gets weight ``max(0, 1 - |(j + 0.5 - c) / f|)`` with
    ``f = max(in/out, 1)`` (the filter widens when downsampling: antialiasing),
    restricted to PIL's window and normalised over it (edges renormalise).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got in_size={in_size}, out_size={out_size}.")
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        js = np.arange(xmin, xmax)
        t = np.abs((js - center + 0.5) / filterscale)
        k = np.where(t < 1.0, 1.0 - t, 0.0)
        total = k.sum()
        if total != 0.0:
            k = k / total
        w[i, xmin:xmax] = k
    return w


def _fixed_point(w: np.ndarray) -> np.ndarray:
    """PIL's ``normalize_coeffs_8bpc``: weights to ints with ``_PRECISION_BITS`` fractional bits."""
    scaled = w * (1 << _PRECISION_BITS)
    return np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int64)


def _pass_uint8(img: np.ndarray, w_int: np.ndarray, axis: int) -> np.ndarray:
    acc = np.tensordot(img.astype(np.int64), w_int, axes=([axis], [1]))  # resized axis moves last
    acc = np.moveaxis(acc, -1, axis)
    out = (acc + (1 << (_PRECISION_BITS - 1))) >> _PRECISION_BITS
    return np.clip(out, 0, 255).astype(np.uint8)


def _check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{name} must be NHWC [N, H, W, C], got shape {images.shape}.")
    return images


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def resize_uint8(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of uint8 NHWC images to ``size`` exactly as PIL does (see module doc).

    Args:
      images: uint8 ``[N, H, W, C]``.
      size: output ``(height, width)``, or one int for a square output.

    Returns:
      uint8 ``[N, size_h, size_w, C]``.
    """
    images = _check_images(images)
    if images.dtype != np.uint8:
        raise TypeError(f"resize_uint8 takes uint8 images, got {images.dtype}; use resize_float for floats.")
    out_h, out_w = _size_pair(size)
    n, h, w, c = images.shape
    out = images
    if out_w != w:  # PIL: horizontal pass first, into an 8-bit intermediate image
        out = _pass_uint8(out, _fixed_point(bilinear_weights(w, out_w)), axis=2)
    if out_h != h:
        out = _pass_uint8(out, _fixed_point(bilinear_weights(h, out_h)), axis=1)
    return out


def resize_float(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Separable bilinear resize in floating point (the filter of :func:`bilinear_weights`).

    Args:
      images: float ``[N, H, W, C]``.
      size: output ``(height, width)`` or one int.

    Returns:
      float32 ``[N, size_h, size_w, C]``.
    """
    images = _check_images(images).astype(np.float32, copy=False)
    out_h, out_w = _size_pair(size)
    _, h, w, _ = images.shape
    wh = bilinear_weights(h, out_h).astype(np.float32)
    ww = bilinear_weights(w, out_w).astype(np.float32)
    return np.einsum("ih,nhwc,jw->nijc", wh, images, ww, optimize=True).astype(np.float32)


def normalize(images: np.ndarray, normalization: str) -> np.ndarray:
    """uint8 pixels to float32 inputs.

    ``"unit"``: ``x / 255`` in [0, 1] (ToTensor; Selective Amnesia's VAE).
    ``"center"``: ``x / 255 - 0.5`` (``Normalize((0.5,), (1.,))``; BIF / MCMC
    unlearning LeNet, SmallCNN).
    ``"cifar"``: ``(x / 255 - CIFAR_MEAN) / CIFAR_STD`` per channel (SSD, JiT).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"normalize takes uint8 pixels, got {images.dtype}.")
    x = images.astype(np.float32) / np.float32(255.0)
    if normalization == "unit":
        return x
    if normalization == "center":
        return x - np.float32(0.5)
    if normalization == "cifar":
        if x.shape[-1] != 3:
            raise ValueError(f"the 'cifar' normalisation needs 3 channels (NHWC), got shape {x.shape}.")
        mean = np.asarray(CIFAR_MEAN, dtype=np.float32)
        std = np.asarray(CIFAR_STD, dtype=np.float32)
        return (x - mean) / std
    raise ValueError(f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}.")
