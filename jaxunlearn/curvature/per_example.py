"""Per-example gradients, ``g_i = grad_theta loss_fn(theta, {z_i})``.

Each example is presented to ``loss_fn`` as a batch of one (leading axis of
size 1), so the same ``loss_fn(params, batch) -> scalar`` serves batched and
per-example use. Vectorised with ``jax.vmap``; ``chunk_size`` bounds the peak
memory at ``chunk_size x num_params`` via ``jax.lax.map(..., batch_size=...)``.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxunlearn._validation import check_positive_int, num_examples
from jaxunlearn.curvature.products import LossFn


def _as_batch_of_one(example: Any) -> Any:
    return jax.tree.map(lambda a: a[None], example)


def per_example_grads(loss_fn: LossFn, params: Any, batch: Any, *, chunk_size: int | None = None) -> Any:
    """Stack of per-example gradients ``g_i`` (module doc).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: where the gradients are taken.
      batch: pytree of arrays with a leading example axis of size ``N``.
      chunk_size: ``None`` vectorises over all ``N`` examples at once; a positive
        integer computes that many at a time (raises ``ValueError`` otherwise).

    Returns:
      A pytree like ``params`` with a leading axis of size ``N``.
    """
    num_examples(batch, "batch")

    def one(example):
        return jax.grad(loss_fn)(params, _as_batch_of_one(example))

    if chunk_size is None:
        return jax.vmap(one)(batch)
    return jax.lax.map(one, batch, batch_size=check_positive_int(chunk_size, "chunk_size"))


def squared_grad_sum(loss_fn: LossFn, params: Any, batch: Any) -> Any:
    """``sum_i g_i^2`` (elementwise) over the examples of ``batch``, by ``vmap`` of ``grad``.

    The general path behind the empirical Fisher; see
    :mod:`jaxunlearn.curvature.layerwise` for the fast path of dense and conv layers.
    """
    grads = per_example_grads(loss_fn, params, batch)
    return jax.tree.map(lambda g: (g * g).sum(axis=0), grads)
