"""Minibatches over host numpy data, handed to the device as jax arrays.

* :func:`sequential_batches` cuts an index order into consecutive batches, the
  last one short (an unshuffled torch ``DataLoader``; with
  :attr:`ForgetSplit.full_train_idx` it reproduces SSD's importance batches).
* :func:`epoch_batches` / :func:`iterate_batches`: one epoch in a seeded
  shuffled order (``shuffle=True`` loaders). The order of epoch ``e`` depends
  only on ``(key, e)``, so any epoch can be reproduced on its own.
* The final short batch is kept (``final="keep"``, like ``drop_last=False``),
  dropped (``"drop"``) or padded to full size with a 0/1 mask (``"pad"``: one
  batch shape, so a jitted step compiles once).
* :func:`stack_batches` draws ``[num_batches, batch_size]`` index arrays with
  ``jax.random`` (jittable) for ``jax.lax.scan`` consumers such as
  :func:`jaxunlearn.curvature.lissa`, which take index batches plus ``data=``;
  its random draws are those of :mod:`jaxunlearn.data.minibatch` (device-side
  minibatches of the examples still alive, used by the methods).

``data`` is a :class:`~jaxunlearn.data.dataset.Dataset` (its ``(x, y)``
arrays are used) or any pytree of arrays with a shared leading example axis.
``key`` is a jax PRNG key or a non-negative int seed.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import _validation
from jaxunlearn.data.dataset import Dataset, _as_index_array
from jaxunlearn.data.minibatch import draw_unchecked

FINAL_MODES = ("keep", "drop", "pad")
STACK_MODES = ("epochs", "independent", "replacement")


def as_arrays(data: Any) -> Any:
    """The pytree of arrays behind ``data`` (``Dataset`` -> ``(x, y)``)."""
    return data.arrays if isinstance(data, Dataset) else data


def num_examples(data: Any, name: str = "data") -> int:
    """Shared leading-axis length of every array in ``data`` (a ``Dataset`` or a pytree); raises on empty or ragged data."""
    return _validation.num_examples(as_arrays(data), name)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    return int(batch_size)


def _check_final(final: str) -> str:
    if final not in FINAL_MODES:
        raise ValueError(f"final must be one of {FINAL_MODES}, got {final!r}.")
    return final


def num_batches(n: int, batch_size: int, *, final: str = "keep") -> int:
    """Number of batches an epoch of ``n`` examples gives (``ceil`` unless ``final == "drop"``)."""
    batch_size = _check_batch_size(batch_size)
    _check_final(final)
    return n // batch_size if final == "drop" else math.ceil(n / batch_size)


def host_rng(key: Any, epoch: int = 0) -> np.random.Generator:
    """A numpy generator determined by ``(key, epoch)``; ``key`` is a jax PRNG key or an int seed."""
    if isinstance(key, (bool, np.bool_)):
        raise TypeError("key must be a jax PRNG key or an int seed, got a bool.")
    if epoch < 0:
        raise ValueError(f"epoch must be non-negative, got {epoch}.")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"an int seed must be non-negative, got {key}.")
        words = [int(key)]
    else:
        if isinstance(key, jax.core.Tracer):
            raise TypeError("host-side shuffles need a concrete key, not a traced one (call outside jit).")
        arr = key
        if hasattr(arr, "dtype") and jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
            arr = jax.random.key_data(arr)
        arr = np.asarray(arr)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"key must be a jax PRNG key or an int seed, got {type(key).__name__} {arr.dtype}.")
        words = [int(w) for w in arr.astype(np.uint32).ravel()]
    return np.random.default_rng([*words, int(epoch)])


def sequential_batches(indices: Any, batch_size: int, *, final: str = "keep") -> list[np.ndarray]:
    """Consecutive batches of an index order, as an unshuffled ``DataLoader`` makes them.

    Args:
      indices: 1-D integer order (e.g. ``split.full_train_idx``), or an int ``n`` for ``range(n)``.
      batch_size: examples per batch.
      final: ``"keep"`` the short last batch, ``"drop"`` it, or ``"pad"`` it
        (padded by repeating its first index, so its real size is
        ``len(indices) % batch_size``; :func:`pad_batch` gives the mask).

    Returns:
      list of int64 index arrays.
    """
    batch_size = _check_batch_size(batch_size)
    _check_final(final)
    idx = np.arange(indices, dtype=np.int64) if isinstance(indices, (int, np.integer)) else np.asarray(indices)
    if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-D integer array, got shape {idx.shape} dtype {idx.dtype}.")
    if idx.size == 0:
        raise ValueError("indices is empty: there is nothing to batch.")
    idx = idx.astype(np.int64, copy=False)
    out = [idx[i:i + batch_size] for i in range(0, idx.size, batch_size)]
    if out[-1].size < batch_size:
        if final == "drop":
            out.pop()
        elif final == "pad":
            out[-1] = pad_batch(out[-1], batch_size)[0]
    if not out:
        raise ValueError(f"final='drop' leaves no batch: {idx.size} examples < batch_size {batch_size}.")
    return out


def pad_batch(indices: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a short index batch to ``batch_size`` by repeating its first index; return ``(indices, mask)``.

    ``mask`` is float32 ``[batch_size]``, 1 for real examples and 0 for padding;
    a masked mean ``sum(mask * loss_i) / sum(mask)`` equals the short batch's mean.
    """
    k = indices.size
    mask = np.zeros(batch_size, np.float32)
    mask[:k] = 1.0
    return np.concatenate([indices, np.full(batch_size - k, indices[0], dtype=indices.dtype)]), mask


def epoch_order(indices: Any, key: Any, epoch: int = 0) -> np.ndarray:
    """A seeded shuffle of ``indices`` (or of ``range(n)`` for an int) for epoch ``epoch``."""
    idx = np.arange(indices, dtype=np.int64) if isinstance(indices, (int, np.integer)) else np.asarray(indices)
    return host_rng(key, epoch).permutation(idx).astype(np.int64)


def epoch_batches(
    indices: Any, batch_size: int, *, key: Any = None, epoch: int = 0, final: str = "keep",
) -> list[np.ndarray]:
    """Index batches of one epoch: shuffled by ``(key, epoch)``, or in order when ``key`` is ``None``."""
    order = indices if key is None else epoch_order(indices, key, epoch)
    return sequential_batches(order, batch_size, final=final)


def gather(data: Any, idx: np.ndarray, *, device: bool = True) -> Any:
    """The examples ``idx`` of ``data`` (``(x, y)`` for a Dataset), as jax arrays when ``device``."""
    arrays = as_arrays(data)
    picked = jax.tree.map(lambda a: np.asarray(a)[idx], arrays)
    return jax.device_put(picked) if device else picked


def iterate_batches(
    data: Any,
    batch_size: int,
    *,
    key: Any = None,
    epoch: int = 0,
    indices: Any = None,
    final: str = "keep",
    device: bool = True,
) -> Iterator[Any]:
    """Yield the minibatches of one epoch over ``data``.

    Args:
      data: a Dataset or a pytree of host arrays with a leading example axis.
      batch_size: examples per batch.
      key: shuffle with this jax key / int seed (epoch ``epoch``); ``None``
        keeps the order of ``indices``.
      epoch: epoch number mixed into the shuffle.
      indices: the examples to iterate (default: all, ``range(n)``), in this
        order when not shuffled; e.g. ``split.retain_train_idx``.
      final: ``"keep"`` the short final batch, ``"drop"`` it, or ``"pad"`` it;
        with ``"pad"`` every item is ``(batch, mask)`` (see :func:`pad_batch`).
      device: yield jax arrays (``jax.device_put``) rather than numpy.

    Yields:
      batches, pytrees like ``data``'s arrays with leading size ``batch_size``
      (the last one shorter with ``final="keep"``).
    """
    n = num_examples(data)
    batch_size = _check_batch_size(batch_size)
    _check_final(final)
    idx = np.arange(n, dtype=np.int64) if indices is None else _as_index_array(indices, n, "indices")
    if idx.size == 0:
        raise ValueError("indices is empty: there is nothing to batch.")
    order = idx if key is None else epoch_order(idx, key, epoch)
    for start in range(0, order.size, batch_size):
        b = order[start:start + batch_size]
        if b.size < batch_size:
            if final == "drop":
                if start == 0:
                    raise ValueError(f"final='drop' leaves no batch: {order.size} examples < batch_size {batch_size}.")
                return
            if final == "pad":
                b, mask = pad_batch(b, batch_size)
                yield gather(data, b, device=device), (jnp.asarray(mask) if device else mask)
                return
        batch = gather(data, b, device=device)
        if final == "pad":
            mask = np.ones(batch_size, np.float32)
            yield batch, (jnp.asarray(mask) if device else mask)
        else:
            yield batch


def stack_batches(
    data: Any,
    batch_size: int,
    num_batches: int,
    key: Any,
    *,
    indices: Any = None,
    mode: str = "epochs",
    num_repeats: int | None = None,
) -> jax.Array:
    """Random minibatch index arrays ``[num_batches, batch_size]`` for ``jax.lax.scan`` consumers.

    Jittable (``batch_size``, ``num_batches``, ``mode``, ``num_repeats`` static).
    Use as ``curvature.lissa(loss_fn, params, v, stack_batches(data, 64, 32, key), data=data)``.

    Args:
      data: a Dataset, a pytree of arrays (only the leading size ``n`` is
        used), or an int ``n``.
      batch_size: examples per batch (at most the number of candidates).
      num_batches: batches (steps).
      key: jax PRNG key or int seed.
      indices: candidate indices into ``data`` (e.g. ``split.retain_train_idx``);
        default all ``range(n)``. The result indexes ``data`` either way.
      mode: ``"epochs"`` (default): successive shuffled epochs, each cut into
        ``n // batch_size`` full batches (the Bayesian forgetting papers' ``DataSampler``:
        a shuffled ``drop_last`` loader restarted when exhausted);
        ``"independent"``: each batch an independent draw without replacement;
        ``"replacement"``: i.i.d. uniform indices.
      num_repeats: add a leading axis of that many independent stacks
        (``[num_repeats, num_batches, batch_size]``, for ``lissa(num_repeats=...)``).

    Returns:
      int32 jax array ``[num_batches, batch_size]`` (or with the repeat axis).
    """
    batch_size = _check_batch_size(batch_size)
    if isinstance(num_batches, bool) or not isinstance(num_batches, (int, np.integer)) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive int, got {num_batches!r}.")
    if mode not in STACK_MODES:
        raise ValueError(f"mode must be one of {STACK_MODES}, got {mode!r}.")
    n_data = int(data) if isinstance(data, (int, np.integer)) else num_examples(data)
    if indices is None:
        cand = None
        n = n_data
    else:
        if isinstance(indices, jax.core.Tracer):
            cand = indices
        else:
            cand = jnp.asarray(_as_index_array(np.asarray(indices), n_data, "indices"), dtype=jnp.int32)
        n = int(cand.shape[0])
    if n < 1:
        raise ValueError("there are no candidate examples to draw batches from.")
    if batch_size > n and mode != "replacement":
        raise ValueError(
            f"batch_size {batch_size} exceeds the {n} candidate examples; lower it or use mode='replacement'."
        )
    if num_repeats is not None and (
            isinstance(num_repeats, bool) or not isinstance(num_repeats, (int, np.integer)) or num_repeats < 1):
        raise ValueError(f"num_repeats must be a positive int or None, got {num_repeats!r}.")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    return _stack(key, cand, n=n, batch_size=batch_size, num_batches=int(num_batches), mode=mode,
                  num_repeats=None if num_repeats is None else int(num_repeats))


@functools.partial(jax.jit, static_argnames=("n", "batch_size", "num_batches", "mode", "num_repeats"))
def _stack(key, cand, *, n, batch_size, num_batches, mode, num_repeats):
    """One compiled program per configuration (eager random ops compile one by one, slowly)."""

    def one(k):
        if mode == "epochs":
            per = n // batch_size
            epochs = -(-num_batches // per)
            perms = jax.vmap(lambda kk: jax.random.permutation(kk, n))(jax.random.split(k, epochs))
            b = perms[:, : per * batch_size].reshape(epochs * per, batch_size)[:num_batches]
        else:  # the library's one random-minibatch draw, over all n candidates
            everyone = jnp.ones((n,), bool)
            b = jax.lax.map(lambda kk: draw_unchecked(kk, everyone, batch_size, replace=mode == "replacement"),
                            jax.random.split(k, num_batches))
        b = b.astype(jnp.int32)
        return b if cand is None else cand[b]

    if num_repeats is None:
        return one(key)
    return jax.vmap(one)(jax.random.split(key, num_repeats))
