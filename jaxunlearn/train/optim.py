"""Optimizers matching the PyTorch ones the reference implementations use.

``torch.optim.SGD(lr, momentum=mu, weight_decay=wd)`` (dampening 0) is

    g_t = grad_t + wd * theta_t,   b_t = mu * b_{t-1} + g_t  (b_1 = g_1),   theta_{t+1} = theta_t - lr * b_t

i.e. *coupled* L2 weight decay added to the gradient before momentum, which is
``optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=mu))``
(optax's trace starts at zero, so ``b_1 = g_1`` as in PyTorch).
``torch.nn.utils.clip_grad_norm_(params, c)`` before the step clips the raw
loss gradient (before weight decay) to global norm ``c``.
``torch.optim.Adam(lr)`` with default arguments is ``optax.adam(lr)``.
"""

from __future__ import annotations

from typing import Any

import optax


def torch_sgd(
    learning_rate: Any,
    *,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """PyTorch-style SGD (module docstring); ``learning_rate`` may be an optax schedule."""
    parts = []
    if clip_norm is not None:
        if clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive; got {clip_norm}.")
        parts.append(optax.clip_by_global_norm(clip_norm))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov))
    return optax.chain(*parts)
