"""Reductions over a dataset in fixed-size chunks, inside one ``lax.scan``.

Peak memory is set by the chunk, not by the dataset: full chunks are scanned,
and a final short chunk (when ``chunk_size`` does not divide the number of
examples) is processed once on its own, with its true size, so no padding or
masking ever changes a result. The scan follows the library's loop policy
(:mod:`jaxunlearn.loops`: on CPU, the convolutions of a chunk's gradient run in
the layout XLA:CPU is fast at); ``unroll=`` is passed to ``lax.scan``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxunlearn import loops
from jaxunlearn._validation import num_examples


def num_chunks(n: int, chunk_size: int) -> int:
    """Number of chunks (the last possibly short) that ``n`` examples split into."""
    return -(-n // chunk_size)


def split_chunks(data: Any, chunk_size: int) -> tuple[Any, Any]:
    """``(head, tail)``: the full chunks stacked ``[num_full, chunk_size, ...]`` and the short rest
    (``None`` when ``chunk_size`` divides the number of examples). ``chunk_size`` is capped at ``n``."""
    n = num_examples(data)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    chunk_size = min(chunk_size, n)
    full, rest = divmod(n, chunk_size)
    head = jax.tree.map(lambda a: a[: full * chunk_size].reshape((full, chunk_size) + a.shape[1:]), data)
    tail = jax.tree.map(lambda a: a[full * chunk_size :], data) if rest else None
    return head, tail


def chunked_map(fn: Callable[[Any], Any], data: Any, chunk_size: int, *, unroll: int | bool = 1) -> Any:
    """``fn`` applied chunk by chunk, outputs concatenated on the leading axis: ``fn(data)`` in bounded memory.

    Full chunks run in one :func:`jaxunlearn.loops.scan` (``unroll`` as for ``lax.scan``); the
    short rest is one more call with its true size. Called outside ``jit`` (concrete ``data``), the
    whole map is one compiled program (:func:`jaxunlearn.loops.compiled_when_eager`).
    """
    return loops.compiled_when_eager(lambda d: _chunked_map(fn, d, chunk_size, unroll), data)


def _chunked_map(fn, data, chunk_size, unroll):
    head, tail = split_chunks(data, chunk_size)
    _, mapped = loops.scan(lambda carry, chunk: (carry, fn(chunk)), None, head, unroll=unroll)
    out = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), mapped)
    if tail is not None:
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, fn(tail))
    return out


def chunked_sum(fn: Callable[[Any, jax.Array], Any], data: Any, chunk_size: int, *, unroll: int | bool = 1) -> Any:
    """``sum_c fn(chunk_c, c)`` over consecutive chunks of ``data``, in data order.

    ``fn(chunk, index)`` maps one chunk (a pytree like ``data`` with leading
    size ``<= chunk_size``) and its integer index to a pytree of arrays. The full
    chunks run in one :func:`jaxunlearn.loops.scan` (``unroll`` as for ``lax.scan``). Called outside
    ``jit`` (concrete ``data``), the whole sum is one compiled program (:func:`jaxunlearn.loops.compiled_when_eager`).
    """
    return loops.compiled_when_eager(lambda d: _chunked_sum(fn, d, chunk_size, unroll), data)


def _chunked_sum(fn, data, chunk_size, unroll):
    head, tail = split_chunks(data, chunk_size)
    full = jax.tree.leaves(head)[0].shape[0]
    first = jax.tree.map(lambda a: a[0], head)
    init = otu.tree_zeros_like(jax.eval_shape(fn, first, jnp.asarray(0)))

    def body(acc, xs):
        chunk, index = xs
        return otu.tree_add(acc, fn(chunk, index)), None

    total, _ = loops.scan(body, init, (head, jnp.arange(full)), unroll=unroll)
    if tail is not None:
        total = otu.tree_add(total, fn(tail, jnp.asarray(full)))
    return total
