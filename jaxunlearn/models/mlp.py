"""Multi-layer perceptron on flattened inputs.

``logits = W_L relu(... relu(W_1 flatten(x) + b_1) ...) + b_L``. The default
``hidden=(256, 256)`` gives the 64-256-256-10 network used on 8x8 digits; the
MCMC-unlearning seed's MLP (``mcmcMLP`` in ``fshp971/mcmc-unlearning``) is
``MLP(hidden=(512, 512))`` on 32x32 inputs. Layers are named ``linear1``,
``linear2``, ... as in that code, so its ``state_dict`` imports by name
(:mod:`jaxunlearn.models.torch_import`). Images are flattened in PyTorch's
channel-major order (:func:`~jaxunlearn.models._common.flatten_chw`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxunlearn.models._common import flatten_chw, torch_kernel_init


class MLP(nn.Module):
    """ReLU MLP: ``x`` of shape ``[B, ...]`` (any per-example shape) -> logits ``[B, num_classes]``.

    Attributes:
      num_classes: output width.
      hidden: widths of the hidden layers.
      dropout_rate: dropout after each hidden activation, active only when
        ``train=True`` (uses the ``"dropout"`` rng stream); 0 disables it.
    """

    num_classes: int = 10
    hidden: Sequence[int] = (256, 256)
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(
                f"MLP expects a batch x of shape [B, ...]; got shape {x.shape}. Use x[None] for one example."
            )
        x = flatten_chw(x)
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, kernel_init=torch_kernel_init, name=f"linear{i + 1}")(x))
            if self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=torch_kernel_init, name=f"linear{len(self.hidden) + 1}")(x)
