"""LeNet-5 of the Bayesian forgetting papers (BIF and MCMC unlearning, Fashion-MNIST at 32x32).

``conv(6, 5x5) -> relu -> maxpool 2 -> conv(16, 5x5) -> relu -> maxpool 2 ->
fc 120 -> relu -> fc 84 -> relu -> fc num_classes`` (LeCun et al. 1998; the
``LeNet`` class of ``fshp971/mcmc-unlearning`` ``BNN/models/models.py`` and of
``fshp971/BIF``). Layer names ``conv1, conv2, fc1, fc2, fc3`` are those of the
original, so its ``state_dict`` imports by name. Any input size works: the
width of ``fc1`` follows from the input (400 at 32x32). ``padding`` pads both
convolutions (0 in the original; 2 keeps 28x28 MNIST or 8x8 digits large
enough). Features are flattened in PyTorch's (C, H, W) order.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxunlearn.models import conv_forms
from jaxunlearn.models._common import check_images, check_spatial, flatten_chw, torch_kernel_init


class LeNet(nn.Module):
    """LeNet-5: ``x`` ``[B, H, W, C]`` -> logits ``[B, num_classes]``; no batch norm, no dropout.

    Attributes:
      num_classes: output width.
      padding: symmetric zero padding of both 5x5 convolutions (PyTorch's ``padding``).
    """

    num_classes: int = 10
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_images(x, "LeNet")
        hint = "Resize to 32x32 as the original does, or use LeNet(padding=2)."
        for name, features in (("conv1", 6), ("conv2", 16)):
            x = nn.Conv(features, (5, 5), padding=self.padding, kernel_init=torch_kernel_init, name=name,
                        conv_general_dilated=conv_forms.conv_general_dilated)(x)
            check_spatial(x, "LeNet", f"after {name}", hint)
            x = conv_forms.max_pool(nn.relu(x), (2, 2))
            check_spatial(x, "LeNet", f"after pooling {name}", hint)
        x = flatten_chw(x)
        x = nn.relu(nn.Dense(120, kernel_init=torch_kernel_init, name="fc1")(x))
        x = nn.relu(nn.Dense(84, kernel_init=torch_kernel_init, name="fc2")(x))
        return nn.Dense(self.num_classes, kernel_init=torch_kernel_init, name="fc3")(x)
