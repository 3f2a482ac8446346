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
  minibatches of ``lissa_batch_size``; needs a PRNG key. Its damping ``d`` is set
  to ``damping * scale`` so that both solvers invert the same matrix.

Non-convex networks have indefinite Hessians: use damping, or
``gauss_newton=(apply_fn, loss_on_outputs)`` to replace ``H_r`` by the
generalised Gauss-Newton matrix ``J^T H_L J`` of
``loss_on_outputs(apply_fn(theta, batch), batch)`` (positive semi-definite for
cross-entropy). The Gauss-Newton curvature covers the output loss only: add
the Hessian of an L2 penalty ``(c/2)||theta||^2`` (``c I``) to ``damping``.

``init(params, retain_data)`` stores the retain data (an ``(x, y)`` pytree of
arrays ``[n_r, ...]``); ``update(params, forget_data, state)`` makes one
removal. For a sequence of requests pass the shrinking retain set with
``update(..., retain_data=...)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxunlearn._validation import check_finite, check_same_structure, num_examples, raise_if
from jaxunlearn.curvature import cg, chunked_sum, estimate_scale, lissa
from jaxunlearn.curvature.products import LossFn
from jaxunlearn.methods.base import Unlearner

SOLVERS = ("cg", "lissa")
GRADIENTS = ("forget", "retain")


class InfluenceState(NamedTuple):
    """State of :func:`influence`.

    ``retain_data``: the data whose Hessian is inverted; ``residual``: relative
    residual ``||(H + d I) x - v|| / ||v||`` of the last CG solve (NaN for LiSSA);
    ``step_norm``: ``||theta_new - theta||`` of the last request; ``num_requests``.
    """

    retain_data: Any
    residual: jax.Array
    step_norm: jax.Array
    num_requests: jax.Array


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


def chunked_mean_loss(loss_fn: LossFn, chunk_size: int) -> LossFn:
    """``L(p, data) = sum_c (|B_c| / N) loss_fn(p, B_c)`` over chunks of ``chunk_size``: the mean loss over ``data``,
    with each chunk rematerialised (``jax.checkpoint``) so gradients and HVPs keep one chunk's activations."""

    def loss(p, data):
        n = num_examples(data)
        body = jax.checkpoint(lambda b: loss_fn(p, b) * (jax.tree.leaves(b)[0].shape[0] / n))
        return chunked_sum(lambda b, _: body(b), data, chunk_size)

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

    Returns:
      ``Unlearner(init, update)``: ``init(params, retain_data) -> InfluenceState``;
      ``update(params, forget_data, state, *, key=None, retain_data=None) -> (params, state)``
      (``key`` required by LiSSA).
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

    def init(params: Any, retain_data: Any, *, key: Any = None) -> InfluenceState:
        del key  # deterministic; accepted so every Unlearner.init takes the same arguments
        num_examples(retain_data, "retain_data")
        check_finite(params)
        nan = jnp.asarray(jnp.nan, jnp.float32)
        return InfluenceState(retain_data, nan, nan, jnp.zeros((), jnp.int32))

    def curvature_loss_at(params):
        loss = loss_fn if gauss_newton is None else gauss_newton_loss(*gauss_newton, params)
        if solver == "cg" and hessian_batch_size is not None:
            loss = chunked_mean_loss(loss, hessian_batch_size)
        return loss

    @jax.jit
    def direction(params, forget_data, retain):
        """``v`` with ``step = (H_r + damping I)^{-1} v`` (module doc)."""
        if gradient == "forget":
            n_f, n_r = jax.tree.leaves(forget_data)[0].shape[0], jax.tree.leaves(retain)[0].shape[0]
            return otu.tree_scale(n_f / n_r, jax.grad(loss_fn)(params, forget_data))
        retain_loss = loss_fn if hessian_batch_size is None else chunked_mean_loss(loss_fn, hessian_batch_size)
        return otu.tree_scale(-1.0, jax.grad(retain_loss)(params, retain))

    def inverse_hvp(params, v, retain, key):
        if solver == "cg":
            # not wrapped in jit here: on concrete inputs a failed solve raises CGConvergenceError itself
            result = cg(curvature_loss_at(params), params, v, retain, damping=damping, tol=cg_tol,
                        maxiter=cg_maxiter, max_residual=cg_max_residual)
            return result.ihvp, result.residual
        if key is None:
            raise ValueError("solver='lissa' samples retain minibatches: pass key=jax.random.key(...) to update.")
        curvature_loss = curvature_loss_at(params)
        n_r = num_examples(retain, "retain_data")
        index_key, scale_key = jax.random.split(key)
        shape = (lissa_repeats, lissa_depth, min(lissa_batch_size, n_r))
        indices = jax.random.randint(index_key, shape, 0, n_r)
        scale = lissa_scale
        if scale is None:
            scale = estimate_scale(curvature_loss, params, indices[0], data=retain, key=scale_key)
        d = damping * scale
        raise_if(d >= 1.0, lambda value: ValueError(
            f"LiSSA damping * scale = {float(value):.3g} must stay below 1: lower damping or lissa_scale."), d)
        result = lissa(curvature_loss, params, v, indices if lissa_repeats > 1 else indices[0], data=retain,
                       scale=scale, damping=d, num_repeats=lissa_repeats)
        return result.ihvp, jnp.asarray(jnp.nan, jnp.float32)

    def update(params: Any, forget_data: Any, state: InfluenceState, *, key=None, retain_data=None):
        if not isinstance(state, InfluenceState):
            raise TypeError(f"state must be the InfluenceState returned by init, got {type(state).__name__}.")
        retain = state.retain_data if retain_data is None else retain_data
        num_examples(forget_data, "forget_data")
        num_examples(retain, "retain_data")
        check_finite(params)
        forget_data, retain = jax.tree.map(jnp.asarray, (forget_data, retain))  # host numpy -> device arrays
        v = direction(params, forget_data, retain)
        check_same_structure(params, v, "params", "gradient")
        step, residual = inverse_hvp(params, v, retain, key)
        new_params = otu.tree_add(params, step)
        new_state = InfluenceState(
            state.retain_data, jnp.asarray(residual, jnp.float32),
            jnp.asarray(otu.tree_norm(step), jnp.float32), state.num_requests + 1,
        )
        return new_params, new_state

    return Unlearner(init, update)
