"""Random minibatches of the *remaining* part of a fixed dataset, with static shapes: the library's one sampler
of random batches on the device.

Sequential removal changes which examples may be used, but ``jit`` needs
fixed shapes; so the data stay whole and a boolean mask ``alive [N]`` (the
``alive`` of a :class:`jaxunlearn.methods.base.DataState`; all ``True`` for a
plain dataset, :func:`all_alive`) marks the examples still in the model. A
minibatch is ``batch_size`` indices drawn uniformly from the alive examples:

* without replacement (default): distinct indices by Gumbel top-k, i.e.
  ``jax.random.choice(..., replace=False, p=alive / alive.sum())``. The
  Bayesian forgetting originals iterate a shuffled ``DataLoader`` of the
  remaining set; uniform draws without replacement within a batch have the same marginal;
* with replacement (``replace=True``): i.i.d. uniform draws over the alive examples
  (Selective Amnesia's training minibatches, the LiSSA ``"replacement"`` stacks).

A drawn index is never a removed example: without replacement, fewer alive
examples than ``batch_size`` raise ``ValueError`` (with replacement, none
alive does); also under ``jit``, through
:func:`jaxunlearn._validation.raise_if`. Index batches supplied by a caller
(to replay a run) are checked the same way by :func:`check_batches`. Epochs
over data (every example once per epoch) are :func:`jaxunlearn.train.loop.fit`'s
job; host-side batches of numpy data are :mod:`jaxunlearn.data.batching`'s.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn._validation import check_positive_int, num_examples, raise_if

__all__ = ["alive_mask", "all_alive", "check_alive_count", "check_batch_size", "check_batches", "draw_batches", "draw_indices",
           "draw_unchecked", "take"]


def all_alive(data: Any) -> jax.Array:
    """Mask ``[N]`` of ``True``: every example of ``data`` is still in the model."""
    return jnp.ones((num_examples(data, "data"),), bool)


def _too_few(count, batch_size):
    return ValueError(
        f"only {int(count)} examples are still in the model, fewer than batch_size={int(batch_size)}: a "
        "minibatch would have to contain removed examples. Lower batch_size, or stop removing."
    )


def alive_mask(data: Any, alive: Any, batch_size: int) -> tuple[jax.Array, int]:
    """``(alive, batch_size)`` checked for a loop that draws minibatches of ``data``: ``alive`` a bool ``[N]``
    mask (``None``: every example), ``batch_size`` positive, at most ``N`` and at most the alive count."""
    size = num_examples(data, "data")
    alive = all_alive(data) if alive is None else jnp.asarray(alive)
    if alive.shape != (size,) or alive.dtype != jnp.bool_:
        raise ValueError(f"alive must be a boolean mask of shape ({size},), got {alive.dtype} {alive.shape}.")
    batch_size = check_batch_size(alive, batch_size)
    check_alive_count(alive, batch_size)
    return alive, batch_size


def check_alive_count(alive: jax.Array, batch_size: int) -> None:
    """Raise ``ValueError`` (also under ``jit``) when fewer than ``batch_size`` examples are ``alive``."""
    count = jnp.sum(alive)
    raise_if(count < batch_size, _too_few, count, jnp.asarray(batch_size))


def draw_unchecked(key: jax.Array, alive: jax.Array, batch_size: int, replace: bool = False) -> jax.Array:
    """The draw of :func:`draw_indices` without its count check, for loops that check once
    (:func:`check_alive_count`) before drawing at every step (a check per step would cost a host callback)."""
    if replace:
        return jax.random.categorical(key, jnp.where(alive, 0.0, -jnp.inf), shape=(batch_size,)).astype(jnp.int32)
    scores = jnp.where(alive, jax.random.gumbel(key, alive.shape), -jnp.inf)
    return jax.lax.top_k(scores, batch_size)[1].astype(jnp.int32)


def check_batch_size(alive: jax.Array, batch_size: int, *, replace: bool = False) -> int:
    """``batch_size`` as an int; ``ValueError`` unless positive and (without replacement) at most ``N``."""
    batch_size = check_positive_int(batch_size, "batch_size")
    if not replace and batch_size > alive.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {alive.shape[0]} examples of the data; lower batch_size.")
    return batch_size


def draw_indices(key: jax.Array, alive: jax.Array, batch_size: int, *, replace: bool = False) -> jax.Array:
    """``batch_size`` indices into the data, uniform over the ``alive`` ones; int32 ``[batch_size]``.

    Distinct unless ``replace``. Raises ``ValueError`` when too few examples are alive (also under ``jit``).
    """
    batch_size = check_batch_size(alive, batch_size, replace=replace)
    check_alive_count(alive, 1 if replace else batch_size)
    return draw_unchecked(key, alive, batch_size, replace)


def draw_batches(key: jax.Array, alive: jax.Array, num_batches: int, batch_size: int, *,
                 replace: bool = False) -> jax.Array:
    """``num_batches`` independent minibatches, int32 ``[num_batches, batch_size]``.

    Row ``t`` is ``draw_indices(jax.random.split(key, num_batches)[t], alive, batch_size, replace=replace)``;
    the rows are drawn one after another (``lax.map``), so memory stays ``O(N)``.
    """
    batch_size = check_batch_size(alive, batch_size, replace=replace)
    num_batches = check_positive_int(num_batches, "num_batches")
    check_alive_count(alive, 1 if replace else batch_size)
    return jax.lax.map(lambda k: draw_unchecked(k, alive, batch_size, replace), jax.random.split(key, num_batches))


def _not_alive(name: str):
    def make(count, first):
        return ValueError(
            f"{name}: {int(count)} index(es) are out of range or name examples no longer in the model (first: "
            f"{int(first)}); injected minibatches may only hold indices of examples alive at this request."
        )

    return make


def check_batches(batches: Any, alive: jax.Array, shape: tuple[int, ...], name: str = "batches") -> jax.Array:
    """``batches`` as int32 of ``shape``, every index in range and ``alive``; raises otherwise (also under ``jit``).

    Shapes and dtypes are checked at trace time (``TypeError``/``ValueError``);
    out-of-range or removed indices raise ``ValueError`` through ``raise_if``.
    """
    idx = jnp.asarray(batches)
    if not jnp.issubdtype(idx.dtype, jnp.integer) or idx.shape != tuple(shape):
        raise TypeError(
            f"{name} must be an integer array of shape {tuple(shape)} (indices into the data given to init); "
            f"got dtype {idx.dtype}, shape {idx.shape}."
        )
    n = alive.shape[0]
    safe = jnp.clip(idx, 0, n - 1)
    bad = (idx < 0) | (idx >= n) | ~alive[safe]
    raise_if(jnp.any(bad), _not_alive(name), jnp.sum(bad), idx.ravel()[jnp.argmax(bad.ravel())])
    return safe.astype(jnp.int32)


def take(data: Any, idx: jax.Array) -> Any:
    """The examples ``idx`` of ``data``: every leaf indexed on its leading axis."""
    return jax.tree.map(lambda a: jnp.take(jnp.asarray(a), idx, axis=0), data)
