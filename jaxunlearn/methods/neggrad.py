"""Gradient ascent on the forget set (NegGrad) and its retain-regularised form (NegGrad+).

NegGrad (e.g. Golatkar et al., CVPR 2020; Thudi et al. 2022) *maximises* the
training loss on the forget set ``D_f``: minibatch steps on

    L_NG(theta) = -(1/|B_f|) sum_{z in B_f} l(theta; z),          B_f ~ D_f.

Ascent is unbounded, so it is run for a fixed number of epochs over ``D_f``.
NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS
2023) adds descent on the retained data ``D_r``:

    L_NG+(theta) = beta * L(theta; B_r) - (1 - beta) * L(theta; B_f),

here with epochs over ``D_r`` (batch ``B_r``) and, at every step, a forget
batch ``B_f`` of the same size drawn uniformly with replacement from ``D_f``
with that step's key. Neither method is in the SSD/JiT reference code; the
default optimizer (``torch_sgd(0.01, momentum=0.9, weight_decay=5e-4)``) is
our choice, matching the SGD family of those baselines.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxunlearn.methods.base import RetainState, Unlearner, init_retain_state
from jaxunlearn.train.inputs import check_positive_int, forget_request, request_key
from jaxunlearn.train.loop import fit, init_train_state, params_only, with_key
from jaxunlearn.train.optim import torch_sgd


def _default_optimizer(optimizer):
    return torch_sgd(0.01, momentum=0.9, weight_decay=5e-4) if optimizer is None else optimizer


def neggrad(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_epochs: int = 1,
    batch_size: int = 64,
    progress: bool = False,
) -> Unlearner:
    """Gradient ascent on the forget set, ``L_NG`` of the module docstring.

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean loss.
      optimizer: default ``torch_sgd(0.01, momentum=0.9, weight_decay=5e-4)``.
      num_epochs: passes over ``D_f`` (default 1). batch_size: minibatch size (64).

    Returns:
      ``Unlearner``: ``init(params, retain_data, *, key=None) -> RetainState`` stores the
      retain set (only used to check the forget set's shape) and the key;
      ``update(params, forget_data, state, *, key=None) -> (params, state)`` runs
      ``num_epochs`` epochs of ascent over ``forget_data`` (``Dataset`` or ``(x, y)``).
    """
    optimizer = _default_optimizer(optimizer)
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")

    def ascent_loss(params, batch):
        return -loss_fn(params, batch)

    train_loss = params_only(ascent_loss)  # built once: repeated requests reuse the compiled epoch

    def update(params: Any, forget_data: Any, state: RetainState, *, key: Any = None) -> tuple[Any, RetainState]:
        forget = forget_request(params, forget_data, state.retain[0])
        run_key, next_key = request_key(state.key, key)
        train_state, _ = fit(
            train_loss, optimizer, init_train_state(params, optimizer), forget,
            batch_size=batch_size, num_epochs=num_epochs, key=run_key, progress=progress, desc="neggrad",
        )
        return train_state.params, state._replace(key=next_key)

    return Unlearner(init_retain_state, update)


def neggrad_plus(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    beta: float = 0.99,
    num_epochs: int = 1,
    batch_size: int = 64,
    progress: bool = False,
) -> Unlearner:
    """NegGrad+: ``beta`` x descent on ``D_r`` minus ``(1 - beta)`` x loss on ``D_f`` (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean loss.
      optimizer: default ``torch_sgd(0.01, momentum=0.9, weight_decay=5e-4)``.
      beta: retain weight in [0, 1] (1 is fine-tuning, 0 is NegGrad with retain-sized epochs).
      num_epochs: passes over ``D_r`` (default 1). batch_size: size of both batches (64).

    Returns:
      ``Unlearner``: ``init(params, retain_data, *, key=None) -> RetainState`` stores the
      retain set and the key; ``update(params, forget_data, state, *, key=None)`` trains
      ``num_epochs`` epochs over the retain set, each step also drawing a forget batch.
    """
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must lie in [0, 1]; got {beta}.")
    optimizer = _default_optimizer(optimizer)
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")

    def update(params: Any, forget_data: Any, state: RetainState, *, key: Any = None) -> tuple[Any, RetainState]:
        forget = forget_request(params, forget_data, state.retain[0])
        n_f = forget[0].shape[0]
        run_key, next_key = request_key(state.key, key)

        def loss(p, retain_batch, step_key):
            idx = jax.random.randint(step_key, (batch_size,), 0, n_f)
            forget_batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), forget)
            return beta * loss_fn(p, retain_batch) - (1.0 - beta) * loss_fn(p, forget_batch)

        train_state, _ = fit(
            with_key(loss), optimizer, init_train_state(params, optimizer), state.retain,
            batch_size=batch_size, num_epochs=num_epochs, key=run_key, progress=progress, desc="neggrad+",
        )
        return train_state.params, state._replace(key=next_key)

    return Unlearner(init_retain_state, update)
