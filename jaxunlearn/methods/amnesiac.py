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

from jaxunlearn.methods.base import RetainState, Unlearner, init_retain_state
from jaxunlearn.train.inputs import (
    check_positive_int,
    forget_request,
    num_classes_of,
    request_key,
)
from jaxunlearn.train.loop import fit, init_train_state, params_only


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
    num_classes: int | None = None,
    num_epochs: int = 3,
    batch_size: int = 128,
    progress: bool = False,
) -> Unlearner:
    """Random-label unlearning (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean loss (cross-entropy for classifiers).
      optimizer: default ``optax.adam(1e-4)`` (PyTorch Adam defaults).
      num_classes: ``C``; when ``None`` it is read from ``forget_data.num_classes`` of a ``Dataset``.
      num_epochs: passes over ``D'`` (3). batch_size: 128.

    Returns:
      ``Unlearner``: ``init(params, retain_data, *, key=None) -> RetainState`` stores the
      full retain set (``Dataset`` or ``(x, y)``) and the key; ``update(params, forget_data,
      state, *, key=None) -> (params, state)`` relabels the forget set with one key, builds
      ``D'`` and trains on it (shuffled) from ``params`` with a fresh optimizer state.
    """
    optimizer = optax.adam(1e-4) if optimizer is None else optimizer
    train_loss = params_only(loss_fn)  # built once: repeated requests reuse the compiled epoch
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")

    def update(params: Any, forget_data: Any, state: RetainState, *, key: Any = None) -> tuple[Any, RetainState]:
        classes = num_classes_of(forget_data, num_classes, "forget_data")
        x_f, y_f = forget_request(params, forget_data, state.retain[0])
        run_key, next_key = request_key(state.key, key)
        label_key, train_key = jax.random.split(run_key)
        x_r, y_r = state.retain
        data = (
            jnp.concatenate([x_f, x_r.astype(x_f.dtype)]),
            jnp.concatenate([random_other_labels(label_key, y_f, classes), y_r.astype(jnp.int32)]),
        )
        train_state, _ = fit(
            train_loss, optimizer, init_train_state(params, optimizer), data,
            batch_size=batch_size, num_epochs=num_epochs, key=train_key, progress=progress, desc="amnesiac",
        )
        return train_state.params, state._replace(key=next_key)

    return Unlearner(init_retain_state, update)
