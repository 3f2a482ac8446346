"""Small pieces shared by the classifier architectures.

- :data:`torch_kernel_init`: PyTorch's default ``nn.Linear``/``nn.Conv2d``
  weight initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (kaiming
  uniform with ``a = sqrt(5)``), so a freshly created model (a retrain from
  scratch, the random "incompetent teacher" of Bad Teacher / ZRF) starts from
  the same distribution as in the original PyTorch code. Biases start at zero.
- :func:`flatten_chw`: flatten image features in channel-major ``(C, H, W)``
  order, the order of PyTorch's ``x.view(len(x), -1)`` on NCHW tensors, so the
  first linear layer after a conv stack takes a PyTorch weight matrix as is,
  whatever the input size.
- :func:`adaptive_avg_pool`: ``torch.nn.AdaptiveAvgPool2d`` on NHWC arrays.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def check_images(x: jax.Array, model: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of NHWC images ``[B, H, W, C]``."""
    if jnp.ndim(x) != 4:
        raise ValueError(
            f"{model} expects a batch of images x of shape [B, H, W, C] (NHWC); got shape {jnp.shape(x)}. "
            "Add the channel axis for grey-scale images (x[..., None]) and a batch axis for one image (x[None])."
        )


def check_spatial(x: jax.Array, model: str, where: str, hint: str) -> None:
    """Raise ``ValueError`` when the feature map ``x`` ([B, H, W, C]) has shrunk to nothing."""
    if min(x.shape[1:3]) < 1:
        raise ValueError(
            f"{model}: the input is too small, the feature map {where} has spatial size {x.shape[1:3]}. {hint}"
        )


def flatten_chw(x: jax.Array) -> jax.Array:
    """``[B, H, W, C] -> [B, C*H*W]`` in PyTorch's NCHW flatten order; other ranks flatten as they are."""
    if x.ndim == 4:
        x = jnp.transpose(x, (0, 3, 1, 2))
    return x.reshape(x.shape[0], -1)


def _adaptive_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``[out, in]`` averaging weights of torch's adaptive pooling: bin i covers [floor(i n/m), ceil((i+1) n/m))."""
    m = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, output_size: Sequence[int]) -> jax.Array:
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` for NHWC ``x``: ``[B, H, W, C] -> [B, oh, ow, C]``.

    With an input smaller than the output (a 1x1 map pooled to 7x7, as in
    torchvision's VGG at 32x32 inputs) the values are replicated.
    """
    oh, ow = output_size
    mh = jnp.asarray(_adaptive_matrix(x.shape[1], oh), x.dtype)
    mw = jnp.asarray(_adaptive_matrix(x.shape[2], ow), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", mh, x, mw)
