"""Amnesiac unlearning by random relabelling (Graves, Nagisetty & Ganesh, AAAI 2021).

Every forget sample ``(x_i, y_i)`` gets a random wrong label

    y~_i ~ Uniform({0, ..., C-1} minus {y_i}),

drawn once per request, and the model is trained on the union of the
relabelled forget set and the *full* retain set,

    D' = {(x_i, y~_i) : i in D_f}  union  D_r,

so the forget samples' true labels are actively un-learned while the rest is
rehearsed. Defaults of the SSD reference code (strategy ``amnesiac``): 3
epochs, Adam lr 1e-4, batch 128. In full-class forgetting "not the forget
class" and "not the sample's own label" are the same rule; in random
forgetting the reference uses the sample's own label, as here.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_positive_int
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, train_epochs
from jaxunlearn.train.loop import params_only, weighted_mean


def random_other_labels(key: Any, labels: jax.Array, num_classes: int) -> jax.Array:
    """Labels drawn uniformly from the ``num_classes - 1`` classes other than each ``labels[i]``; [N] int32.

    ``r ~ U{0..C-2}``, then ``r + [r >= y]`` skips the true class: exactly uniform, never equal.
    """
    labels = jnp.asarray(labels)
    r = jax.random.randint(key, labels.shape, 0, num_classes - 1)
    return (r + (r >= labels)).astype(jnp.int32)


def amnesiac(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_classes: int,
    num_epochs: int = 3,
    batch_size: int = 128,
) -> Unlearner:
    """Random-label unlearning (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean loss (cross-entropy for classifiers).
      optimizer: default ``optax.adam(1e-4)`` (PyTorch Adam defaults).
      num_classes: ``C``, the classes the random labels are drawn from (labels are checked against it).
      num_epochs: passes over ``D'`` (3). batch_size: 128.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, IterativeInfo)`` relabels the
      requested examples with ``label_key`` (``key`` splits into ``label_key, train_key``), and
      trains on ``D'`` = relabelled forget examples plus the examples alive after the request,
      shuffled, from ``params`` with a fresh optimizer state.
    """
    optimizer = optax.adam(1e-4) if optimizer is None else optimizer
    num_classes = check_positive_int(num_classes, "num_classes")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    train_loss = params_only(weighted_mean(loss_fn))

    def run(params, req, state, key):
        label_key, train_key = jax.random.split(key)
        (x_f, y_f), (x, y) = req.forget, state.store.data
        data = (jnp.concatenate([x_f, x]),
                jnp.concatenate([random_other_labels(label_key, y_f, num_classes), y.astype(jnp.int32)]))
        mask = jnp.concatenate([jnp.ones(y_f.shape, bool), req.retain])
        train_state, losses = train_epochs(train_loss, optimizer, params, data, key=train_key,
                                           batch_size=batch_size, num_epochs=num_epochs, mask=mask)
        return train_state.params, losses

    return iterative_unlearner(run, num_classes=num_classes, model_fn=loss_fn)
