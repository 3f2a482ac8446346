"""Influence-function (Newton) removal: one second-order step towards the model retrained without the forget data.

Koh & Liang, "Understanding Black-box Predictions via Influence Functions",
ICML 2017; the removal form of Guo et al., "Certified Data Removal from
Machine Learning Models", ICML 2020. It is the deterministic-network
counterpart of the Bayesian seeds' update (BIF / MCMC unlearning, which apply
the same inverse-Hessian step to a sampled energy).

Derivation. ``loss_fn(theta, batch)`` is the *mean* loss over the batch
(plus any regulariser ``R(theta)``, counted once per batch). Over the training
set ``D = D_r + D_f`` (``n = n_r + n_f`` examples) the objective is
``L(theta) = (n_r L_r(theta) + n_f L_f(theta)) / n`` with
``L_r = loss_fn(., D_r)`` and ``L_f = loss_fn(., D_f)`` (the regulariser
weights ``n_r/n + n_f/n`` sum to one). At the trained optimum ``theta*``,
``grad L(theta*) = 0``, so ``grad L_r(theta*) = -(n_f / n_r) grad L_f(theta*)``.
One Newton step on the retained objective ``L_r`` from ``theta*`` gives

    theta_new = theta* - H_r^{-1} grad L_r(theta*) = theta* + (n_f / n_r) H_r^{-1} grad L_f(theta*)
              = theta* + (1 / n_r) H_r^{-1} sum_{z in D_f} grad l(theta*, z)      (when R = 0)

with ``H_r`` the Hessian of ``L_r`` at ``theta*``. For a quadratic ``L_r``
this is the retrained optimum exactly; for a strongly convex one (L2-regularised
logistic regression) it is second-order accurate. ``gradient="forget"``
(default) uses the right-hand form (needs only the forget gradient);
``gradient="retain"`` uses ``-H_r^{-1} grad L_r`` directly, which does not
assume that ``theta`` is a stationary point (useful after an early-stopped
training run).

The inverse-HVP solves ``(H_r + damping I) x = v``:

* ``solver="cg"`` (default): conjugate gradients with exact HVPs on the retain
  data (:func:`jaxunlearn.curvature.cg`); the HVP runs over the whole retain set,
  ``hessian_batch_size`` examples at a time (rematerialised, so memory is set by
  the chunk).
* ``solver="lissa"``: the stochastic Neumann series
  (:func:`jaxunlearn.curvature.lissa`) on ``lissa_depth`` random retain
  minibatches of ``lissa_batch_size``, drawn from the call's ``key``. Its damping
  ``d`` is set to ``damping * scale`` so that both solvers invert the same matrix.

Non-convex networks have indefinite Hessians: use damping, or
``gauss_newton=(apply_fn, loss_on_outputs)`` to replace ``H_r`` by the
generalised Gauss-Newton matrix ``J^T H_L J`` of
``loss_on_outputs(apply_fn(theta, batch), batch)`` (positive semi-definite for
cross-entropy). The Gauss-Newton curvature covers the output loss only: add
the Hessian of an L2 penalty ``(c/2)||theta||^2`` (``c I``) to ``damping``.

Contract (:mod:`jaxunlearn.methods.base`): ``init(params, data, *, key)``
keeps the training data ``D`` with an ``alive`` mask; ``update(params, request,
state, *, key)`` takes ``D_f`` = the requested examples and ``D_r`` = the
examples alive after the request. ``D_r`` keeps the static shape ``[N, ...]``
of the data: ``L_r`` is the weighted mean ``sum_i w_i l_i / n_r`` with
``w_i = 1`` on the alive examples (``n_r = sum_i w_i``, a traced count), each
example presented to ``loss_fn`` as a batch of one
(:func:`jaxunlearn.train.loop.weighted_mean`). So a sequence of requests
inverts the Hessian of the shrinking retain set, and one compiled ``update``
serves every request of the same size.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxunlearn._validation import check_fits_model, check_same_structure, raise_if
from jaxunlearn.data.minibatch import draw_indices
from jaxunlearn.curvature import cg, chunked_sum, estimate_scale, lissa
from jaxunlearn.curvature.products import LossFn
from jaxunlearn.methods.base import DataState, Unlearner, init_data_state, make_unlearner, open_request
from jaxunlearn.train.loop import Weighted, weighted_mean

SOLVERS = ("cg", "lissa")
GRADIENTS = ("forget", "retain")


class InfluenceState(NamedTuple):
    """State of :func:`influence`: ``store``, the training data and the ``alive`` mask."""

    store: DataState


class InfluenceInfo(NamedTuple):
    """Diagnostics of one request.

    ``residual``: relative residual ``||(H + d I) x - v|| / ||v||`` of the CG solve
    (NaN for LiSSA); ``step_norm``: ``||theta_new - theta||``.
    """

    residual: jax.Array
    step_norm: jax.Array


def gauss_newton_loss(
    apply_fn: Callable[[Any, Any], Any], loss_on_outputs: Callable[[Any, Any], jax.Array], params0: Any
) -> LossFn:
    """A loss whose Hessian (at any point) is the Gauss-Newton matrix ``J^T H_L J`` of the model at ``params0``.

    ``L(p, batch) = loss_on_outputs(f(params0) + J (p - params0), batch)``, the
    loss of the model linearised in its parameters at ``params0``; its Hessian
    at ``params0`` equals :func:`jaxunlearn.curvature.ggn_vp`'s matrix, so any
    HVP-based solver (CG, LiSSA) inverts the Gauss-Newton matrix through it.
    """

    def loss(p, batch):
        out0, jv = jax.jvp(lambda q: apply_fn(q, batch), (params0,), (otu.tree_sub(p, params0),))
        return loss_on_outputs(jax.tree.map(jnp.add, out0, jv), batch)

    return loss


def weighted_retain_loss(loss_fn: LossFn, chunk_size: int | None = None) -> LossFn:
    """``L(p, Weighted(data, w)) = sum_i w_i loss_fn(p, z_i) / max(sum_i w_i, 1)``: the mean loss over the
    examples of weight 1, each presented as a batch of one (:func:`jaxunlearn.train.loop.weighted_mean`).

    With ``chunk_size`` the sum runs over chunks of that many examples, each rematerialised
    (``jax.checkpoint``), so gradients and HVPs keep one chunk's activations.
    """
    mean = weighted_mean(loss_fn)
    if chunk_size is None:
        return mean

    def loss(p, weighted):
        def chunk_sum(chunk):  # sum_i w_i l_i over the chunk (weighted_mean times the chunk's weight)
            return mean(p, chunk) * jnp.sum(chunk.weights)

        total = chunked_sum(lambda chunk, _: jax.checkpoint(chunk_sum)(Weighted(*chunk)), tuple(weighted), chunk_size)
        return total / jnp.maximum(jnp.sum(weighted.weights), 1.0)

    return loss


def influence(
    loss_fn: LossFn,
    *,
    solver: str = "cg",
    damping: float = 1e-3,
    gradient: str = "forget",
    gauss_newton: tuple[Callable, Callable] | None = None,
    hessian_batch_size: int | None = None,
    cg_tol: float = 1e-6,
    cg_maxiter: int | None = None,
    cg_max_residual: float = 1e-2,
    lissa_depth: int = 100,
    lissa_batch_size: int = 64,
    lissa_repeats: int = 1,
    lissa_scale: float | None = None,
    num_classes: int | None = None,
) -> Unlearner:
    """Newton / influence-function removal (module doc) as an :class:`Unlearner`.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, mean loss (plus regulariser).
      solver: ``"cg"`` or ``"lissa"``.
      damping: ``lambda`` in ``(H_r + lambda I)^{-1}``; ``0`` for the exact Newton step.
      gradient: ``"forget"`` (``+(n_f/n_r) H^{-1} grad L_f``) or ``"retain"`` (``-H^{-1} grad L_r``).
      gauss_newton: ``(apply_fn(params, batch) -> outputs, loss_on_outputs(outputs, batch) -> scalar)``
        to use the Gauss-Newton matrix instead of the Hessian.
      hessian_batch_size: CG: HVP chunk over the retain data (``None``: one batch).
      cg_tol, cg_maxiter, cg_max_residual: passed to :func:`jaxunlearn.curvature.cg`.
      lissa_depth, lissa_batch_size, lissa_repeats, lissa_scale: LiSSA steps, minibatch,
        independent recursions, and scale (``None``: estimated by power iteration).
      num_classes: checks the labels of the data given to ``init`` against ``0..num_classes-1``.

    Returns:
      ``Unlearner(init, update)``: ``init(params, data, *, key) -> InfluenceState`` (``data``: the
      training data) and ``update(params, request, state, *, key) -> (params, InfluenceState,
      InfluenceInfo)``; the key draws LiSSA's minibatches and power iteration (CG ignores it).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}.")
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite non-negative number, got {damping!r}.")
    for name, value in (("lissa_depth", lissa_depth), ("lissa_batch_size", lissa_batch_size),
                        ("lissa_repeats", lissa_repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if hessian_batch_size is not None and (not isinstance(hessian_batch_size, int) or hessian_batch_size < 1):
        raise ValueError(f"hessian_batch_size must be None or a positive integer, got {hessian_batch_size!r}.")
    if gauss_newton is not None and (
        not isinstance(gauss_newton, (tuple, list)) or len(gauss_newton) != 2 or not all(map(callable, gauss_newton))
    ):
        raise TypeError("gauss_newton must be a pair (apply_fn, loss_on_outputs) of callables, or None.")

    def curvature_loss_at(params):
        """The loss of ``Weighted`` batches whose Hessian (at ``params``) is inverted."""
        loss = loss_fn if gauss_newton is None else gauss_newton_loss(*gauss_newton, params)
        return weighted_retain_loss(loss, hessian_batch_size if solver == "cg" else None)

    def inverse_hvp(params, v, retain, key):
        """``(H_r + damping I)^{-1} v`` and the CG residual (NaN for LiSSA)."""
        curvature_loss = curvature_loss_at(params)
        if solver == "cg":
            result = cg(curvature_loss, params, v, retain, damping=damping, tol=cg_tol, maxiter=cg_maxiter,
                        max_residual=cg_max_residual)
            return result.ihvp, result.residual
        n = retain.weights.shape[0]
        index_key, scale_key = jax.random.split(key)
        keys = jax.random.split(index_key, (lissa_repeats, lissa_depth))
        # minibatches of distinct retained examples, never a forgotten one
        indices = jax.vmap(jax.vmap(lambda k: draw_indices(k, retain.weights > 0, min(lissa_batch_size, n))))(keys)
        scale = lissa_scale
        if scale is None:
            scale = estimate_scale(curvature_loss, params, indices[0], data=retain, key=scale_key)
        d = damping * jnp.asarray(scale)
        raise_if(d >= 1.0, lambda value: ValueError(
            f"LiSSA damping * scale = {float(value):.3g} must stay below 1: lower damping or lissa_scale."), d)
        result = lissa(curvature_loss, params, v, indices if lissa_repeats > 1 else indices[0], data=retain,
                       scale=scale, damping=d, num_repeats=lissa_repeats)
        return result.ihvp, jnp.full((), jnp.nan, jnp.result_type(result.scale))

    def request_step(params, request, state, key):
        """One Newton removal of the examples ``request`` (indices into ``init``'s data); see :func:`influence`."""
        req = open_request(state.store, request)
        dtype = jnp.result_type(*jax.tree.leaves(params))
        retain = Weighted(state.store.data, req.retain.astype(dtype))
        n_r = jnp.sum(retain.weights)
        raise_if(n_r == 0, lambda: ValueError(
            "request: no example would remain after it, and the Newton step needs the retained data D_r; "
            "retrain from scratch instead of forgetting every example."))
        if gradient == "forget":  # v = (n_f / n_r) grad L_f
            n_f = req.indices.shape[0]
            v = otu.tree_scale(n_f / n_r, jax.grad(loss_fn)(params, req.forget))
        else:  # v = -grad L_r
            v = otu.tree_scale(-1.0, jax.grad(weighted_retain_loss(loss_fn, hessian_batch_size))(params, retain))
        check_same_structure(params, v, "params", "gradient")
        step, residual = inverse_hvp(params, v, retain, key)
        info = InfluenceInfo(residual, otu.tree_norm(step))
        return otu.tree_add(params, step), InfluenceState(state.store._replace(alive=req.retain)), info

    def init(params: Any, data: Any, *, key: jax.Array) -> InfluenceState:
        """Keep the training ``data`` with every example alive (deterministic: ``key`` is unused)."""
        store = init_data_state(data, "data", num_classes=num_classes)
        check_fits_model(loss_fn, params, store.data, "data")
        return InfluenceState(store)

    return make_unlearner(init, request_step, InfluenceState)
