"""The CIFAR ResNet-18 of the SSD experiments (weiaicunzai/pytorch-cifar100 variant).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, adapted
to 32x32 inputs as in ``weiaicunzai/pytorch-cifar100`` ``models/resnet.py``
(copied as ``resnet.py`` into ``if-loops/selective-synaptic-dampening`` and
``jwf40/Information-Theoretic-Unlearning``):

- stem ``conv1``: 3x3 conv, 64 channels, stride 1, padding 1, no bias ->
  batch norm -> relu; **no max-pool**;
- stages ``conv2_x .. conv5_x``: two ``BasicBlock`` s each, widths 64, 128,
  256, 512, first-block strides 1, 2, 2, 2;
- ``BasicBlock``: ``relu(residual_function(x) + shortcut(x))`` with
  ``residual_function = conv3x3(stride) -> BN -> relu -> conv3x3 -> BN`` and a
  ``1x1 conv(stride) -> BN`` shortcut when the shape changes (identity otherwise);
- global average pool -> ``fc``.

Batch norm: running statistics in the ``"batch_stats"`` collection; ``train=True``
normalises with batch statistics and updates the running ones (PyTorch
momentum 0.1 = flax momentum 0.9, eps 1e-5), ``train=False`` uses the running
ones. Unlike PyTorch, flax updates the running variance with the biased batch
variance (a factor ``m/(m-1)`` apart, ``m`` = values per channel); imported
running statistics are used as they are.

Submodules are named after the PyTorch modules with ``.`` written ``_``
(``conv1_0`` = ``conv1.0``, ``conv2_x_0/residual_function_3`` =
``conv2_x.0.residual_function.3``), so the original ``state_dict`` imports by
name (:mod:`jaxunlearn.models.torch_import`). 11.2 M parameters for 100 classes.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.models._common import check_images, torch_kernel_init


def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
    """``relu(BN(conv3x3(relu(BN(conv3x3_stride(x))))) + shortcut(x))``: ``[B, H, W, C] -> [B, H/s, W/s, features]``."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = functools.partial(nn.Conv, use_bias=False, kernel_init=torch_kernel_init)
        r = conv(self.features, (3, 3), strides=self.strides, padding=1, name="residual_function_0")(x)
        r = nn.relu(_batch_norm(train, "residual_function_1")(r))
        r = conv(self.features, (3, 3), strides=1, padding=1, name="residual_function_3")(r)
        r = _batch_norm(train, "residual_function_4")(r)
        if self.strides != 1 or x.shape[-1] != self.features:
            s = conv(self.features, (1, 1), strides=self.strides, padding=0, name="shortcut_0")(x)
            s = _batch_norm(train, "shortcut_1")(s)
        else:
            s = x
        return nn.relu(r + s)


class ResNet18(nn.Module):
    """CIFAR ResNet-18: ``x`` ``[B, H, W, C]`` -> logits ``[B, num_classes]``.

    Attributes:
      num_classes: output width (100 for CIFAR-100, 20 for CIFAR-20 in SSD).
      stage_widths: channels of ``conv2_x .. conv5_x`` (64, 128, 256, 512); smaller widths give a cheap test model.
      blocks: ``BasicBlock`` s per stage ((2, 2, 2, 2) is ResNet-18, (3, 4, 6, 3) ResNet-34).
    """

    num_classes: int = 100
    stage_widths: Sequence[int] = (64, 128, 256, 512)
    blocks: Sequence[int] = (2, 2, 2, 2)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_images(x, "ResNet18")
        if len(self.stage_widths) != 4 or len(self.blocks) != 4:
            raise ValueError(
                f"ResNet18 needs four stages; got stage_widths={tuple(self.stage_widths)}, blocks={tuple(self.blocks)}."
            )
        x = nn.Conv(self.stage_widths[0], (3, 3), padding=1, use_bias=False, kernel_init=torch_kernel_init,
                    name="conv1_0")(x)
        x = nn.relu(_batch_norm(train, "conv1_1")(x))
        for stage, (width, n, stride) in enumerate(zip(self.stage_widths, self.blocks, (1, 2, 2, 2))):
            for b in range(n):
                x = BasicBlock(width, stride if b == 0 else 1, name=f"conv{stage + 2}_x_{b}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=torch_kernel_init, name="fc")(x)
