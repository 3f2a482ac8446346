"""Selective Synaptic Dampening (SSD) and its label-free variant (LFSSD).

Foster, Schoepf & Brintrup, "Fast Machine Unlearning Without Retraining
Through Selective Synaptic Dampening", AAAI 2024 (reference code
``if-loops/selective-synaptic-dampening``, ``src/ssd.py``); LFSSD: Foster et
al., "Loss-Free Machine Unlearning", ICLR 2024 Tiny Paper.

For every parameter position ``p`` (all trainable parameters: kernels, biases,
batch-norm scale and bias, embeddings), with importances ``I_D`` over the full
training data and ``I_f`` over the forget data:

    selected_p = I_f[p] > alpha * I_D[p]                        (strict)
    theta_p   <- min(lambda * I_D[p] / I_f[p], 1) * theta_p     where selected_p
    theta_p   <- theta_p                                        elsewhere

A selected position has ``I_f > 0`` so the ratio is finite; ``I_D = 0`` there
zeroes the parameter. Names: ``lambda_`` is the code's ``dampening_constant``,
``alpha`` its ``selection_weighting``. Defaults are the original's full-class
ResNet-18 setting, ``lambda = 1``, ``alpha = 10``, batch 64 (ViT: alpha 5
full-class, 25 sub-class; random forgetting uses batch 128).

Importances (``estimator``):

* ``"batch_squared"`` (default, the original):
  ``I_L = (1/M) sum_j (grad meanCE(B_j))^2`` over consecutive batches
  ``B_1..B_M`` of ``batch_size`` in data order, a short last batch weighted like
  the others. It depends on batch composition: to match the reference, pass
  ``init`` the full training data in the order of its unshuffled loader,
  ``ConcatDataset(retain_train, forget_train)`` with ``retain_train``
  class-sorted (``jaxunlearn.data.ForgetSplit.retain_idx`` order), and the
  forget data unshuffled.
* ``"empirical"``: the per-example Fisher ``(1/N) sum_i (grad l_i)^2``.
* ``"true"``: per-example, at labels drawn from the model with ``sample_fn``
  and the call's ``key`` (the only use of the key).

All three come from :func:`jaxunlearn.curvature.fisher_diagonal`. ``loss_fn``
should be evaluated in eval mode (batch norm with running statistics, no
dropout), as the original calls ``model.eval()``; running statistics are not
parameters and are never touched.

LFSSD (:func:`lfssd`): the loss is the label-free ``mean_i ||f(x_i)||_2^2``
(squared L2 norm of the logits) and ``|grad|`` replaces ``grad^2``:
``I_L = (1/M) sum_j |grad L(B_j)|`` (or the per-example mean of ``|grad l_i|``
with ``estimator="empirical"``).

Two simpler pruning rules are options (``rule=``); both zero the selected
parameters instead of dampening them:

* ``"prune"``: select ``I_f > I_D``;
* ``"binary"``: select ``I_f > lambda * I_D``.

Contract (:mod:`jaxunlearn.methods.base`): ``init(params, data, *, key)``
computes ``I_D`` once over all of ``data``, the training data the model was
trained on, which is SSD's ``D``; every ``update(params, request, state, *,
key)`` computes ``I_f`` on the requested examples and dampens. Sequential
requests reuse that ``I_D``: the model was trained on all of ``D``, including
the examples forgotten since (SSD defines ``D`` as the training data, not the
data still alive). Shapes: importances are pytrees like ``params``; data are
pytrees of arrays ``[N, ...]`` (``(x, y)`` for a classifier, ``x`` alone or
``(x, y)`` for LFSSD).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxunlearn._validation import (
    check_finite, check_fits_model, check_number, check_positive_int, check_same_structure, num_examples,
)
from jaxunlearn.curvature import chunked_sum, fisher_diagonal, per_example_grads
from jaxunlearn.curvature.chunks import num_chunks
from jaxunlearn.curvature.fisher import SampleFn
from jaxunlearn.curvature.products import LossFn
from jaxunlearn.methods.base import DataState, Unlearner, init_data_state, make_unlearner, open_request

RULES = ("dampen", "prune", "binary")
SQUARED_ESTIMATORS = ("batch_squared", "empirical", "true")
ABSOLUTE_ESTIMATORS = ("batch_squared", "empirical")


class SSDState(NamedTuple):
    """State of :func:`ssd` / :func:`lfssd`.

    ``store``: the training data and the ``alive`` mask (:class:`~jaxunlearn.methods.base.DataState`);
    ``full_importance``: ``I_D`` over all of the training data, a pytree like params (computed once by ``init``).
    """

    store: DataState
    full_importance: Any


class SSDInfo(NamedTuple):
    """Diagnostics of one request: ``num_selected`` (int32) positions selected, ``selected_fraction``
    that number over the total number of parameters, ``forget_importance`` ``I_f`` (a pytree like params)."""

    num_selected: jax.Array
    selected_fraction: jax.Array
    forget_importance: Any


def _check_hyper(alpha: float, lambda_: float, rule: str, batch_size: int) -> None:
    """``alpha > 0`` (``alpha = 0`` would select every parameter with any forget importance), ``lambda_ >= 0``."""
    check_number(alpha, "alpha", low=0.0, low_inclusive=False)
    check_number(lambda_, "lambda_", low=0.0)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}.")
    check_positive_int(batch_size, "batch_size")


def absolute_gradient_importance(
    loss_fn: LossFn, params: Any, data: Any, *, estimator: str = "batch_squared", batch_size: int = 64
) -> Any:
    """LFSSD importance: ``(1/M) sum_j |grad L(B_j)|`` (``"batch_squared"``) or ``(1/N) sum_i |grad l_i|``
    (``"empirical"``); a pytree like ``params``."""
    if estimator not in ABSOLUTE_ESTIMATORS:
        raise ValueError(f"the label-free importance supports estimator in {ABSOLUTE_ESTIMATORS}, got {estimator!r}.")
    n = num_examples(data)
    check_finite(params)
    if estimator == "batch_squared":
        total = chunked_sum(lambda b, _: jax.tree.map(jnp.abs, jax.grad(loss_fn)(params, b)), data, batch_size)
        return otu.tree_scale(1.0 / num_chunks(n, min(batch_size, n)), total)
    total = chunked_sum(
        lambda b, _: jax.tree.map(lambda g: jnp.sum(jnp.abs(g), axis=0), per_example_grads(loss_fn, params, b)),
        data,
        batch_size,
    )
    return otu.tree_scale(1.0 / n, total)


def label_free_loss(logits_fn: Callable[[Any, Any], jax.Array]) -> LossFn:
    """The LFSSD loss ``L(params, batch) = (1/B) sum_i ||logits_fn(params, x_i)||_2^2``.

    ``batch`` is ``(x, ...)`` (labels, if any, are ignored) or the inputs ``x`` alone.
    """

    def loss(params, batch):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = logits_fn(params, x)
        return jnp.mean(jnp.sum(jnp.reshape(logits, (logits.shape[0], -1)) ** 2, axis=-1))

    return loss


def dampen(
    params: Any,
    forget_importance: Any,
    full_importance: Any,
    *,
    alpha: float = 10.0,
    lambda_: float = 1.0,
    rule: str = "dampen",
) -> tuple[Any, Any]:
    """Apply an SSD rule (module doc) elementwise; returns ``(new_params, mask)``, ``mask`` a boolean pytree.

    ``rule="dampen"``: ``theta <- min(lambda I_D / I_f, 1) theta`` where ``I_f > alpha I_D``;
    ``"prune"``: ``theta <- 0`` where ``I_f > I_D``; ``"binary"``: ``theta <- 0`` where ``I_f > lambda I_D``.
    Unselected positions are returned bit-for-bit unchanged. Jittable.
    """
    _check_hyper(alpha, lambda_, rule, 1)
    check_same_structure(params, forget_importance, "params", "forget_importance")
    check_same_structure(params, full_importance, "params", "full_importance")

    def one(theta, i_f, i_d):
        if rule == "dampen":
            mask = i_f > alpha * i_d
            factor = jnp.minimum(lambda_ * i_d / jnp.where(mask, i_f, 1.0), 1.0)
        else:
            mask = i_f > (i_d if rule == "prune" else lambda_ * i_d)
            factor = jnp.zeros_like(theta)
        return jnp.where(mask, (factor * theta).astype(theta.dtype), theta), mask

    pairs = jax.tree.map(one, params, forget_importance, full_importance)
    outer = jax.tree.structure(params)
    new_params, mask = jax.tree.transpose(outer, jax.tree.structure((0, 0)), pairs)
    return new_params, mask


def _ssd_unlearner(
    importance_fn: Callable[[Any, Any, jax.Array], Any], fit_loss: LossFn, *, alpha: float, lambda_: float, rule: str,
    num_classes: int | None,
) -> Unlearner:
    """``init``/``update`` around ``importance_fn(params, data, key)``; ``fit_loss`` checks that the data fit."""
    importance = jax.jit(importance_fn)

    def request_step(params, request, state, key):
        """Dampen ``params`` for the examples ``request`` (indices into ``init``'s data)."""
        req = open_request(state.store, request)
        forget = importance_fn(params, req.forget, key)
        new_params, mask = dampen(params, forget, state.full_importance, alpha=alpha, lambda_=lambda_, rule=rule)
        selected = sum(jnp.sum(m, dtype=jnp.int32) for m in jax.tree.leaves(mask))
        total = sum(jnp.size(p) for p in jax.tree.leaves(params))
        info = SSDInfo(selected, selected.astype(jnp.float32) / total, forget)
        return new_params, SSDState(state.store._replace(alive=req.retain), state.full_importance), info

    def init(params: Any, data: Any, *, key: jax.Array) -> SSDState:
        """``SSDState`` with ``I_D`` over all of ``data`` (the training data, in the order given)."""
        store = init_data_state(data, "data", num_classes=num_classes)
        check_fits_model(fit_loss, params, store.data, "data")
        return SSDState(store, importance(params, store.data, key))

    def same_structure(params, state):
        check_same_structure(params, state.full_importance, "params", "state.full_importance")

    return make_unlearner(init, request_step, SSDState, check_state=same_structure)


def ssd(
    loss_fn: LossFn,
    *,
    alpha: float = 10.0,
    lambda_: float = 1.0,
    estimator: str = "batch_squared",
    batch_size: int = 64,
    rule: str = "dampen",
    sample_fn: SampleFn | None = None,
    num_classes: int | None = None,
) -> Unlearner:
    """Selective Synaptic Dampening (module doc) as an :class:`Unlearner`.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, the mean cross-entropy over the
        batch in eval mode (``jaxunlearn.models.classifier_loss`` gives the
        per-layer fast path for ``"empirical"``/``"true"``).
      alpha: selection weighting (``I_f > alpha I_D``).
      lambda_: dampening constant.
      estimator: ``"batch_squared"`` (original), ``"empirical"`` or ``"true"``.
      batch_size: the batches of ``"batch_squared"`` (the chunk of the others).
      rule: ``"dampen"`` (SSD), ``"prune"`` or ``"binary"`` (module doc).
      sample_fn: for ``"true"``: ``jaxunlearn.curvature.sample_categorical_labels(logits_fn)``.
      num_classes: checks the labels given to ``init`` against ``0..num_classes-1`` (a
        ``Dataset`` brings its own; without either only negative labels are caught).

    Returns:
      ``Unlearner(init, update)`` with ``init(params, data, *, key) -> SSDState`` (``I_D`` over
      all of ``data``, the training data) and
      ``update(params, request, state, *, key) -> (params, SSDState, SSDInfo)``;
      the key is used only by ``estimator="true"`` (labels drawn from the model).
    """
    _check_hyper(alpha, lambda_, rule, batch_size)
    if estimator not in SQUARED_ESTIMATORS:
        raise ValueError(f"estimator must be one of {SQUARED_ESTIMATORS}, got {estimator!r}.")
    if estimator == "true" and sample_fn is None:
        raise ValueError(
            'estimator="true" draws labels from the model: pass '
            "sample_fn=jaxunlearn.curvature.sample_categorical_labels(logits_fn)."
        )

    def importance(params, data, key):
        return fisher_diagonal(
            loss_fn, params, data, estimator=estimator, batch_size=batch_size, key=key, sample_fn=sample_fn
        )

    return _ssd_unlearner(importance, loss_fn, alpha=alpha, lambda_=lambda_, rule=rule, num_classes=num_classes)


def lfssd(
    logits_fn: Callable[[Any, Any], jax.Array],
    *,
    alpha: float = 10.0,
    lambda_: float = 1.0,
    estimator: str = "batch_squared",
    batch_size: int = 64,
    rule: str = "dampen",
    num_classes: int | None = None,
) -> Unlearner:
    """Label-free SSD (module doc): importances ``|grad|`` of ``mean_i ||logits_fn(params, x_i)||^2``.

    ``logits_fn(params, x[B, ...]) -> [B, C]`` in eval mode. The training data
    given to ``init`` may be ``(x, y)`` (labels ignored) or ``x``. Same
    ``init``/``update``/:class:`SSDState`/:class:`SSDInfo` and ``num_classes`` as :func:`ssd`; the key is unused.
    """
    _check_hyper(alpha, lambda_, rule, batch_size)
    if estimator not in ABSOLUTE_ESTIMATORS:
        raise ValueError(f"estimator must be one of {ABSOLUTE_ESTIMATORS}, got {estimator!r}.")
    loss = label_free_loss(logits_fn)

    def importance(params, data, key):
        del key
        return absolute_gradient_importance(loss, params, data, estimator=estimator, batch_size=batch_size)

    return _ssd_unlearner(importance, loss, alpha=alpha, lambda_=lambda_, rule=rule, num_classes=num_classes)
