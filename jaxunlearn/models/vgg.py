"""The JiT experiments' "VGG16": torchvision ``vgg11()`` (no batch norm) plus a ``Linear(1000 -> C)`` head.

``VGG16`` in ``jwf40/Information-Theoretic-Unlearning`` ``src/models.py`` is
``self.model = torchvision.models.vgg11(); self.fc = nn.Linear(1000, C)`` with
``forward(x) = fc(model(x))`` (the README says "VGG16 in the code is actually a
VGG11"). torchvision's VGG-11 (Simonyan & Zisserman, ICLR 2015, configuration
"A"):

- ``features``: 3x3 convs (padding 1, with bias) + relu, widths
  64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M (M = 2x2 max-pool, stride 2);
- ``avgpool``: adaptive average pool to 7x7 (at 32x32 CIFAR inputs the 1x1
  map is replicated 49 times, exactly as torchvision does);
- ``classifier``: Linear(512*7*7, 4096), relu, Dropout(0.5), Linear(4096, 4096),
  relu, Dropout(0.5), Linear(4096, 1000);
- then ``fc``: Linear(1000, C), with no non-linearity in between.

Dropout is active only with ``train=True`` (rng stream ``"dropout"``): the
original JiT runs its forwards in train mode, so dropout is on there.
Submodules are named ``features_<i>``, ``classifier_<i>`` (the torchvision
indices) and ``fc``; the state_dict keys are ``model.features.<i>.weight``,
``model.classifier.<i>.weight`` and ``fc.weight`` (see
:mod:`jaxunlearn.models.torch_import`). The flatten before ``classifier_0`` is
in PyTorch's (C, H, W) order. 132.9 M parameters (+ 1001 C); smaller ``cfg``,
``classifier_width`` and ``pool_size`` give a cheap test model.
"""

from __future__ import annotations

from typing import Sequence, Union

import flax.linen as nn
import jax

from jaxunlearn.models._common import adaptive_avg_pool, check_images, check_spatial, flatten_chw, torch_kernel_init

VGG11_CFG: tuple = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """torchvision-style VGG without batch norm plus a head: ``x`` ``[B, H, W, C]`` -> logits ``[B, num_classes]``.

    Attributes:
      num_classes: width of the JiT head ``fc``.
      cfg: conv widths and ``"M"`` (max-pool) markers; :data:`VGG11_CFG` by default.
      pool_size: output size of the adaptive average pool ((7, 7) in torchvision).
      classifier_width: width of the two hidden classifier layers (4096).
      backbone_classes: width of torchvision's last classifier layer (1000, the ImageNet classes).
      dropout_rate: dropout in the classifier (0.5).
    """

    num_classes: int = 10
    cfg: Sequence[Union[int, str]] = VGG11_CFG
    pool_size: Sequence[int] = (7, 7)
    classifier_width: int = 4096
    backbone_classes: int = 1000
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_images(x, "VGG")
        index = 0
        for v in self.cfg:
            if v == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                check_spatial(x, "VGG", f"after features.{index}",
                              "torchvision's VGG needs inputs of at least 32x32 (5 max-pools); resize the images.")
                index += 1
            else:
                x = nn.Conv(int(v), (3, 3), padding=1, kernel_init=torch_kernel_init, name=f"features_{index}")(x)
                x = nn.relu(x)
                index += 2
        x = flatten_chw(adaptive_avg_pool(x, tuple(self.pool_size)))
        for i in (0, 3):
            x = nn.relu(nn.Dense(self.classifier_width, kernel_init=torch_kernel_init, name=f"classifier_{i}")(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.backbone_classes, kernel_init=torch_kernel_init, name="classifier_6")(x)
        return nn.Dense(self.num_classes, kernel_init=torch_kernel_init, name="fc")(x)
