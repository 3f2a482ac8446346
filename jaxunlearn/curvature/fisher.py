"""Diagonal Fisher information estimators.

Three estimators of ``diag F`` for a loss ``loss_fn(params, batch)`` that is
a mean of per-example losses ``l(theta, z_i)``:

* ``"empirical"`` (default): ``F = (1/N) sum_i (grad l(theta, z_i))^2``, the
  mean of squared per-example gradients at the observed targets.
* ``"batch_squared"``: ``F = (1/M) sum_j (grad L(theta, B_j))^2`` where
  ``B_1..B_M`` are consecutive batches of ``batch_size`` examples in data
  order (the last one possibly short, weighted like the others) and ``L`` is
  the batch-mean loss. This is exactly what the Selective Synaptic Dampening
  reference computes (Foster et al., AAAI 2024); it depends on the batch
  composition, so pass the data in the order the reference uses.
* ``"true"``: as ``"empirical"`` but at targets drawn from the model,
  ``y~_i ~ p(y | x_i, theta)``, via ``sample_fn(params, batch, key)`` (see
  :func:`sample_categorical_labels`). Its expectation is the Fisher
  information proper.

The per-example estimators run in chunks of ``batch_size`` examples
(:func:`jaxunlearn.curvature.chunks.chunked_sum`), so memory is bounded by the
chunk whatever the dataset size. When ``loss_fn`` is a
:class:`jaxunlearn.curvature.layerwise.LayerwiseLoss`, per-example squared
gradients of dense and conv layers come from the fast per-layer formula
instead of ``vmap(grad)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import optax.tree_utils as otu

from jaxunlearn._validation import check_finite, check_positive_int, num_examples
from jaxunlearn.curvature.chunks import chunked_sum, num_chunks
from jaxunlearn.curvature.layerwise import LayerwiseLoss
from jaxunlearn.curvature.per_example import squared_grad_sum
from jaxunlearn.curvature.products import LossFn

ESTIMATORS = ("empirical", "batch_squared", "true")
SampleFn = Callable[[Any, Any, jax.Array], Any]


@dataclasses.dataclass(frozen=True)
class sample_categorical_labels:  # noqa: N801 -- used like a function: sample_fn=sample_categorical_labels(f)
    """A ``sample_fn`` for classifiers: replaces ``y`` in ``(x, y, ...)`` by draws from ``softmax(logits_fn(params, x))``.

    A frozen dataclass rather than a closure: equal ``logits_fn`` give equal samplers.
    """

    logits_fn: Callable[[Any, Any], jax.Array]

    def __call__(self, params: Any, batch: Any, key: jax.Array) -> Any:
        x, *_ = batch
        logits = jax.lax.stop_gradient(self.logits_fn(params, x))
        return (x, jax.random.categorical(key, logits, axis=-1), *batch[2:])


def _squared_sum_fn(loss_fn: LossFn) -> Callable[[Any, Any], Any]:
    if isinstance(loss_fn, LayerwiseLoss):
        return loss_fn.squared_grad_sum
    return lambda params, batch: squared_grad_sum(loss_fn, params, batch)


def fisher_diagonal(
    loss_fn: LossFn,
    params: Any,
    data: Any,
    *,
    estimator: str = "empirical",
    batch_size: int = 256,
    key: jax.Array | None = None,
    sample_fn: SampleFn | None = None,
) -> Any:
    """Diagonal Fisher of ``loss_fn`` at ``params`` over ``data``; a pytree like ``params``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, the mean of per-example
        losses over the batch, or a ``LayerwiseLoss`` for the fast path.
      data: pytree of arrays with a leading example axis (``(x, y)`` for a classifier).
      estimator: ``"empirical"``, ``"batch_squared"`` or ``"true"`` (module doc).
      batch_size: the batch of ``"batch_squared"``; the chunk of the per-example estimators
        (a positive integer, else ``ValueError``).
      key, sample_fn: required by ``"true"``: targets are drawn with
        ``sample_fn(params, chunk, fold_in(key, chunk_index))``.

    Returns:
      ``diag F`` of the chosen estimator, a pytree like ``params``.

    A pure, traceable function (a ``jax.lax.scan`` over chunks): jit it, or the function that
    calls it, once (``jax.jit(lambda p, d: fisher_diagonal(loss_fn, p, d))``); it is never
    compiled with ``loss_fn`` as a static argument.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}.")
    num_examples(data)
    check_positive_int(batch_size, "batch_size")
    check_finite(params)
    if estimator == "true" and (key is None or sample_fn is None):
        raise ValueError(
            'estimator="true" draws targets from the model: pass key=jax.random.key(...) and a sample_fn, '
            "for a classifier sample_fn=curvature.sample_categorical_labels(logits_fn)."
        )
    return _fisher(loss_fn, params, data, estimator, batch_size, key, sample_fn)


def _fisher(loss_fn, params, data, estimator, batch_size, key, sample_fn):
    n = num_examples(data)
    if estimator == "batch_squared":
        total = chunked_sum(
            lambda b, _: jax.tree.map(lambda g: g * g, jax.grad(loss_fn)(params, b)), data, batch_size
        )
        return otu.tree_scale(1.0 / num_chunks(n, min(batch_size, n)), total)
    sq_sum = _squared_sum_fn(loss_fn)
    if estimator == "true":
        total = chunked_sum(
            lambda b, i: sq_sum(params, sample_fn(params, b, jax.random.fold_in(key, i))), data, batch_size
        )
    else:
        total = chunked_sum(lambda b, _: sq_sum(params, b), data, batch_size)
    return otu.tree_scale(1.0 / n, total)
