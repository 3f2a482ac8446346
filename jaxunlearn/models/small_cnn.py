"""The SmallCNN of MCMC unlearning (Fu, He & Tao, ICLR 2022: its CIFAR-10 Bayesian network).

``conv(64, 5x5) -> relu -> maxpool 2 -> conv(64, 5x5) -> relu -> maxpool 2 ->
fc 384 -> relu -> fc num_classes``, no batch norm (``SmallCNN`` in
``fshp971/mcmc-unlearning`` ``BNN/models/models.py``). Layer names
``conv1, conv2, fc1, fc2`` follow the original. ``fc1`` has 1600 inputs at
32x32; other input sizes work, ``padding`` pads both convolutions (0 in the
original). Features are flattened in PyTorch's (C, H, W) order.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxunlearn.models import conv_forms
from jaxunlearn.models._common import check_images, check_spatial, flatten_chw, torch_kernel_init


class SmallCNN(nn.Module):
    """SmallCNN: ``x`` ``[B, H, W, C]`` -> logits ``[B, num_classes]``.

    Attributes:
      num_classes: output width.
      channels: width of both convolutions (64 in the original).
      hidden: width of ``fc1`` (384 in the original).
      padding: symmetric zero padding of both 5x5 convolutions.
    """

    num_classes: int = 10
    channels: int = 64
    hidden: int = 384
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_images(x, "SmallCNN")
        hint = "Use 32x32 inputs as the original does, or SmallCNN(padding=2)."
        for name in ("conv1", "conv2"):
            x = nn.Conv(self.channels, (5, 5), padding=self.padding, kernel_init=torch_kernel_init, name=name,
                        conv_general_dilated=conv_forms.conv_general_dilated)(x)
            check_spatial(x, "SmallCNN", f"after {name}", hint)
            x = conv_forms.max_pool(nn.relu(x), (2, 2))
            check_spatial(x, "SmallCNN", f"after pooling {name}", hint)
        x = flatten_chw(x)
        x = nn.relu(nn.Dense(self.hidden, kernel_init=torch_kernel_init, name="fc1")(x))
        return nn.Dense(self.num_classes, kernel_init=torch_kernel_init, name="fc2")(x)
