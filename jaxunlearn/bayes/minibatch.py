"""Minibatches drawn from the *remaining* part of a fixed dataset, with static shapes.

Sequential removal changes which points a chain may see, but ``jit`` needs
fixed shapes; so the data stay whole and a boolean mask ``alive [N]`` (the
``alive`` of a :class:`jaxunlearn.methods.base.DataState`) marks the points
the posterior still conditions on. A minibatch is ``batch_size`` distinct
indices drawn uniformly from the alive points (Gumbel top-k, i.e.
``jax.random.choice(..., replace=False, p=alive / alive.sum())``). The
originals iterate a shuffled ``DataLoader`` of the remaining set; uniform
draws without replacement within a batch have the same marginal.

A drawn index is never a removed point: with fewer alive points than
``batch_size`` the draw raises ``ValueError`` (also under ``jit``, through
:func:`jaxunlearn._validation.raise_if`). Index batches supplied by a caller
(to replay a run) are checked the same way by :func:`check_batches`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn._validation import check_positive_int, num_examples, raise_if

__all__ = ["all_alive", "check_alive_count", "check_batches", "draw_batches", "draw_indices", "take"]


def all_alive(data: Any) -> jax.Array:
    """Mask ``[N]`` of ``True``: every point of ``data`` is in the posterior."""
    return jnp.ones((num_examples(data, "data"),), bool)


def _too_few(count, batch_size):
    return ValueError(
        f"only {int(count)} points are still in the posterior, fewer than batch_size={int(batch_size)}: a "
        "minibatch would have to contain removed points. Lower batch_size, or stop removing."
    )


def check_alive_count(alive: jax.Array, batch_size: int) -> None:
    """Raise ``ValueError`` (also under ``jit``) when fewer than ``batch_size`` points are ``alive``."""
    count = jnp.sum(alive)
    raise_if(count < batch_size, _too_few, count, jnp.asarray(batch_size))


def _top_k(key: jax.Array, alive: jax.Array, batch_size: int) -> jax.Array:
    scores = jnp.where(alive, jax.random.gumbel(key, alive.shape), -jnp.inf)
    return jax.lax.top_k(scores, batch_size)[1].astype(jnp.int32)


def _check_batch_size(alive: jax.Array, batch_size: int) -> int:
    batch_size = check_positive_int(batch_size, "batch_size")
    if batch_size > alive.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {alive.shape[0]} points of the data; lower batch_size.")
    return batch_size


def draw_indices(key: jax.Array, alive: jax.Array, batch_size: int) -> jax.Array:
    """``batch_size`` distinct indices into the data, uniform over the ``alive`` ones; int32 ``[batch_size]``.

    Raises ``ValueError`` when fewer than ``batch_size`` points are alive (also under ``jit``).
    """
    batch_size = _check_batch_size(alive, batch_size)
    check_alive_count(alive, batch_size)
    return _top_k(key, alive, batch_size)


def draw_batches(key: jax.Array, alive: jax.Array, num_batches: int, batch_size: int) -> jax.Array:
    """``num_batches`` independent minibatches, int32 ``[num_batches, batch_size]``.

    Row ``t`` is ``draw_indices(jax.random.split(key, num_batches)[t], alive, batch_size)``;
    the rows are drawn one after another (``lax.map``), so memory stays ``O(N)``.
    """
    batch_size = _check_batch_size(alive, batch_size)
    num_batches = check_positive_int(num_batches, "num_batches")
    check_alive_count(alive, batch_size)
    return jax.lax.map(lambda k: _top_k(k, alive, batch_size), jax.random.split(key, num_batches))


def _not_alive(name: str):
    def make(count, first):
        return ValueError(
            f"{name}: {int(count)} index(es) are out of range or name points no longer in the posterior (first: "
            f"{int(first)}); injected minibatches may only hold indices of points alive at this request."
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
    """The points ``idx`` of ``data``: every leaf indexed on its leading axis."""
    return jax.tree.map(lambda a: jnp.take(jnp.asarray(a), idx, axis=0), data)
