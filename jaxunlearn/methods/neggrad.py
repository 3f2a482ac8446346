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

from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, train_epochs
from jaxunlearn.train.loop import params_only, weighted_mean, with_key
from jaxunlearn.train.optim import torch_sgd


def _default_optimizer(optimizer):
    return torch_sgd(0.01, momentum=0.9, weight_decay=5e-4) if optimizer is None else optimizer


def neggrad(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_epochs: int = 1,
    batch_size: int = 64,
    num_classes: int | None = None,
) -> Unlearner:
    """Gradient ascent on the forget set, ``L_NG`` of the module docstring.

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean loss.
      optimizer: default ``torch_sgd(0.01, momentum=0.9, weight_decay=5e-4)``.
      num_epochs: passes over ``D_f`` (default 1). batch_size: minibatch size (64).
      num_classes: checks the labels given to ``init``.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, IterativeInfo)`` runs
      ``num_epochs`` shuffled epochs of ascent over the requested examples.
    """
    optimizer = _default_optimizer(optimizer)
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    ascent = params_only(lambda params, batch: -loss_fn(params, batch))

    def run(params, req, state, key):
        del state
        train_state, losses = train_epochs(ascent, optimizer, params, req.forget, key=key,
                                           batch_size=batch_size, num_epochs=num_epochs)
        return train_state.params, losses

    return iterative_unlearner(run, num_classes=num_classes, model_fn=loss_fn)


def neggrad_plus(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    beta: float = 0.99,
    num_epochs: int = 1,
    batch_size: int = 64,
    num_classes: int | None = None,
) -> Unlearner:
    """NegGrad+: ``beta`` x descent on ``D_r`` minus ``(1 - beta)`` x loss on ``D_f`` (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean loss.
      optimizer: default ``torch_sgd(0.01, momentum=0.9, weight_decay=5e-4)``.
      beta: retain weight in [0, 1] (1 is fine-tuning, 0 is NegGrad with retain-sized epochs).
      num_epochs: passes over ``D_r`` (default 1). batch_size: size of both batches (64).
      num_classes: checks the labels given to ``init``.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, IterativeInfo)`` trains
      ``num_epochs`` epochs over the examples alive after the request, each step also drawing a
      forget batch (uniform, with replacement) from the requested examples with that step's key.
    """
    beta = check_number(beta, "beta", low=0.0, high=1.0)
    optimizer = _default_optimizer(optimizer)
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    retain_loss = weighted_mean(loss_fn)

    def run(params, req, state, key):
        n_f = jax.tree.leaves(req.forget)[0].shape[0]

        def loss(p, retain_batch, step_key):
            idx = jax.random.randint(step_key, (batch_size,), 0, n_f)
            forget_batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), req.forget)
            return beta * retain_loss(p, retain_batch) - (1.0 - beta) * loss_fn(p, forget_batch)

        train_state, losses = train_epochs(with_key(loss), optimizer, params, state.store.data, key=key,
                                           batch_size=batch_size, num_epochs=num_epochs, mask=req.retain)
        return train_state.params, losses

    return iterative_unlearner(run, num_classes=num_classes, model_fn=loss_fn)
