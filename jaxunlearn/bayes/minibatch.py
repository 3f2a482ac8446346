"""Minibatches drawn from the *remaining* part of a fixed dataset, with static shapes.

Sequential removal changes which points a chain may see, but ``jit`` needs
fixed shapes; so the data stay whole and a boolean mask ``alive [N]`` marks
the points the posterior still conditions on. A minibatch is ``batch_size``
distinct indices drawn uniformly from the alive points (Gumbel top-k, i.e.
``jax.random.choice(..., replace=False, p=alive / alive.sum())``). The
originals iterate a shuffled ``DataLoader`` of the remaining set; uniform
draws without replacement within a batch have the same marginal.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn._validation import num_examples, raise_if

__all__ = ["draw_indices", "take", "all_alive", "remove"]


def all_alive(data: Any) -> jax.Array:
    """Mask ``[N]`` of ``True``: every point of ``data`` is in the posterior."""
    return jnp.ones((num_examples(data, "data"),), bool)


def draw_indices(key: jax.Array, alive: jax.Array, batch_size: int) -> jax.Array:
    """``batch_size`` distinct indices into the data, uniform over the ``alive`` ones; int32 ``[batch_size]``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if batch_size > alive.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {alive.shape[0]} points of the data; lower batch_size.")
    gumbel = jax.random.gumbel(key, alive.shape)
    scores = jnp.where(alive, gumbel, -jnp.inf)
    return jax.lax.top_k(scores, batch_size)[1].astype(jnp.int32)


def take(data: Any, idx: jax.Array) -> Any:
    """The points ``idx`` of ``data``: every leaf indexed on its leading axis."""
    return jax.tree.map(lambda a: jnp.asarray(a)[idx], data)


def _already_removed(count):
    return ValueError(
        f"{int(count)} of the indices to forget were already removed (or repeat): pass indices of points "
        "the posterior still conditions on, each once."
    )


def remove(alive: jax.Array, idx: jax.Array) -> jax.Array:
    """``alive`` with ``idx`` set to ``False``; raises when an index was already removed or repeats."""
    idx = jnp.asarray(idx)
    if not jnp.issubdtype(idx.dtype, jnp.integer) or idx.ndim != 1:
        raise TypeError(
            f"forget indices must be a 1-D integer array of positions in the data given to init; got "
            f"dtype {idx.dtype}, shape {idx.shape}."
        )
    hits = jnp.zeros(alive.shape, jnp.int32).at[idx].add(1)
    bad = jnp.sum(jnp.where(alive, jnp.maximum(hits - 1, 0), hits))
    raise_if(bad > 0, _already_removed, bad)
    return alive.at[idx].set(False)
