"""The evaluation classifier of Selective Amnesia's VAE experiments (Heng & Soh, NeurIPS 2023).

The original ``train_classifier.py`` (the classic PyTorch MNIST net with batch norm)::

    conv(1->10, 5x5) -> BN -> maxpool 2 -> relu
    conv(10->20, 5x5) -> BN -> Dropout2d(0.5) -> maxpool 2 -> relu
    flatten (320 at 28x28) -> fc 50 -> relu -> dropout(0.5) -> fc num_classes

(log-softmax outputs; trained with Adam 1e-4, batch 64, 20 epochs, StepLR(5, 0.1)).

Adapted to the input size: at 28x28 the convolutions are 5x5 ``VALID`` as in
the original (28 -> 24 -> 12 -> 8 -> 4, 20*4*4 = 320 features). Images smaller
than 16x16 (the 8x8 digits) would shrink to nothing, so there ``kernel_size``
defaults to 3x3 with ``SAME`` padding (8 -> 8 -> 4 -> 4 -> 2, 20*2*2 = 80
features); everything else (BN, channel dropout, widths 10/20/50) is kept.
``Dropout2d`` drops whole channels: ``nn.Dropout(broadcast_dims=(1, 2))``.

Shapes: ``x`` (B, H, W, 1) NHWC in [0, 1] -> logits (B, num_classes). Batch
norm keeps its statistics in ``batch_stats``; dropout uses the ``"dropout"``
rng stream; ``train=False`` is eval mode (running statistics, no dropout).
"""

from __future__ import annotations

import functools

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.models._common import check_images, check_spatial, flatten_chw, torch_kernel_init


class SAClassifier(nn.Module):
    """Conv net with BN and dropout judging generated samples: ``x`` (B, H, W, C) -> logits (B, num_classes).

    Attributes:
      num_classes: output width.
      kernel_size: ``None`` picks 5 (``VALID``, the original) for inputs of 16x16 or more, 3 (``SAME``) below.
      dropout_rate: rate of both dropouts (0.5 in the original).
    """

    num_classes: int = 10
    kernel_size: int | None = None
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_images(x, "SAClassifier")
        small = min(x.shape[1:3]) < 16
        k = self.kernel_size or (3 if small else 5)
        padding = "SAME" if small else "VALID"
        hint = "Use kernel_size=3 for images smaller than 16x16."
        bn = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
        x = nn.Conv(10, (k, k), padding=padding, kernel_init=torch_kernel_init, name="conv1")(x)
        x = nn.BatchNorm(**bn, name="bn1")(x)
        x = nn.relu(nn.max_pool(x, (2, 2), strides=(2, 2)))
        check_spatial(x, "SAClassifier", "after conv1", hint)
        x = nn.Conv(20, (k, k), padding=padding, kernel_init=torch_kernel_init, name="conv2")(x)
        x = nn.BatchNorm(**bn, name="bn2")(x)
        x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
        x = nn.relu(nn.max_pool(x, (2, 2), strides=(2, 2)))
        check_spatial(x, "SAClassifier", "after conv2", hint)
        x = flatten_chw(x)
        x = nn.relu(nn.Dense(50, kernel_init=torch_kernel_init, name="fc1")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=torch_kernel_init, name="fc2")(x)


def create_sa_classifier(key: jax.Array, *, input_shape: tuple[int, ...], num_classes: int = 10) -> tuple[SAClassifier, Any]:
    """``(module, variables)`` with ``params`` and ``batch_stats``; ``input_shape`` is (H, W, C)."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C), got {input_shape!r}.")
    module = SAClassifier(num_classes=num_classes)
    return module, dict(_init_variables(module, tuple(input_shape), key))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_variables(module: SAClassifier, input_shape: tuple[int, ...], key: jax.Array) -> Any:
    """``module.init`` compiled once per module and shape (op by op it takes seconds)."""
    return module.init(key, jnp.zeros((1, *input_shape)), train=False)


def sa_log_probs_fn(module: SAClassifier, variables: Any, image_shape: tuple[int, ...]):
    """``log_probs(x) -> (B, num_classes)`` in eval mode; ``x`` flat (B, D) or images, reshaped to ``image_shape``."""

    def log_probs(x):
        x = jnp.reshape(x, (jnp.shape(x)[0], *image_shape))
        return jax.nn.log_softmax(module.apply(variables, x, train=False), axis=-1)

    return log_probs
