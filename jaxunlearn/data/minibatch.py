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

Each of these draws costs ``O(N)`` per batch (a Gumbel score for every example). Long
loops of small batches (SG-MCMC chains, Bayes by Backprop) use :func:`shuffled_batches`
instead: shuffled epochs over the alive examples, cut into batches, as the Bayesian
forgetting originals' ``DataSampler`` (a shuffled ``drop_last`` loader that starts a new
epoch when it runs out) draws them; ``O(batch_size)`` per batch plus one permutation per epoch.

A drawn index is never a removed example: without replacement, fewer alive
examples than ``batch_size`` raise ``ValueError`` (with replacement, none
alive does); also under ``jit``, through
:func:`jaxunlearn._validation.raise_if`. Index batches supplied by a caller
(to replay a run) are checked the same way by :func:`check_batches`. Training epochs
with a last short batch are :func:`jaxunlearn.train.loop.fit`'s job; host-side batches
of numpy data are :mod:`jaxunlearn.data.batching`'s.

Every public draw here is compiled once per shape and configuration (a second call with
the same shapes compiles nothing).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn._validation import check_key, check_positive_int, num_examples, raise_if

__all__ = ["alive_mask", "all_alive", "check_alive_count", "check_batch_size", "check_batches", "draw_batches", "draw_indices",
           "draw_unchecked", "shuffled_batches", "shuffled_unchecked", "take"]


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
    the rows are drawn one after another (``lax.map``), so memory stays ``O(N)``; each row costs ``O(N)``
    (:func:`shuffled_batches` costs ``O(batch_size)``). Compiled once per shape and configuration.
    """
    batch_size = check_batch_size(alive, batch_size, replace=replace)
    num_batches = check_positive_int(num_batches, "num_batches")
    check_alive_count(alive, 1 if replace else batch_size)
    return _draw_batches(key, alive, num_batches=num_batches, batch_size=batch_size, replace=replace)


@functools.partial(jax.jit, static_argnames=("num_batches", "batch_size", "replace"))
def _draw_batches(key, alive, *, num_batches, batch_size, replace):
    return jax.lax.map(lambda k: draw_unchecked(k, alive, batch_size, replace), jax.random.split(key, num_batches))


def shuffled_batches(key: jax.Array, alive: jax.Array, num_batches: int, batch_size: int) -> jax.Array:
    """``num_batches`` minibatches of shuffled epochs over the ``alive`` examples, int32 ``[num_batches, batch_size]``.

    With ``m = sum(alive)`` and ``B = batch_size``, epoch ``e`` is a uniformly random order
    of the ``m`` alive examples (``jax.random.permutation(fold_in(key, e), N)`` with the
    removed examples left out; a uniform permutation restricted to a subset is uniform on
    it), cut into ``S = floor(m / B)`` batches of ``B`` consecutive examples; the last
    ``m mod B`` examples of the order sit that epoch out. Row ``t`` is batch ``t mod S``
    of epoch ``floor(t / S)``. So within an epoch every alive example is drawn at most
    once (exactly once when ``B`` divides ``m``), a batch holds ``B`` distinct examples,
    and a removed example is never drawn: the originals' ``DataSampler`` of Bayesian
    forgetting (Fu et al. 2021; 2022), a ``shuffle=True, drop_last=True`` loader that
    restarts when it runs out.

    Cost: each row is an ``O(B)`` slice; an epoch's order (``O(N log N)``) is computed once,
    at its first row (a ``lax.cond`` inside the scan over rows). Under ``vmap`` with a
    batched ``alive``, the ``cond`` becomes a ``select`` and every row pays the order.

    Raises ``ValueError`` when ``batch_size`` exceeds ``N`` or fewer than ``batch_size``
    examples are alive (also under ``jit``). Compiled once per shape and configuration.
    """
    check_key(key)
    batch_size = check_batch_size(alive, batch_size)
    num_batches = check_positive_int(num_batches, "num_batches")
    check_alive_count(alive, batch_size)
    return _shuffled(key, alive, num_batches=num_batches, batch_size=batch_size)


def shuffled_unchecked(key: jax.Array, alive: jax.Array, num_batches: int, batch_size: int) -> jax.Array:
    """:func:`shuffled_batches` without its checks, for loops that check the alive count once
    (:func:`alive_mask`); ``num_batches`` may be 0."""
    return _shuffled(key, alive, num_batches=num_batches, batch_size=batch_size)


def _alive_order(key: jax.Array, alive: jax.Array) -> jax.Array:
    """A uniformly random order of the alive examples in its first ``sum(alive)`` entries (the rest: filler)."""
    perm = jax.random.permutation(key, alive.shape[0])
    (kept,) = jnp.nonzero(alive[perm], size=alive.shape[0], fill_value=0)
    return perm[kept].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_batches", "batch_size"))
def _shuffled(key, alive, *, num_batches, batch_size):
    per_epoch = jnp.maximum(jnp.sum(alive) // batch_size, 1)

    def row(order, t):
        epoch, j = t // per_epoch, t % per_epoch
        order = jax.lax.cond(j == 0, lambda: _alive_order(jax.random.fold_in(key, epoch), alive), lambda: order)
        return order, jax.lax.dynamic_slice(order, (j * batch_size,), (batch_size,))

    _, rows = jax.lax.scan(row, jnp.zeros(alive.shape, jnp.int32), jnp.arange(num_batches))
    return rows.reshape(num_batches, batch_size)


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
