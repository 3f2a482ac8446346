"""Inverse-Hessian-vector products by the truncated Neumann series (LiSSA).

Agarwal, Bullins & Hazan, "Second-Order Stochastic Optimization for Machine
Learning in Linear Time" (JMLR 2017); the form used by Bayesian Inference
Forgetting (Fu, He, Xu & Tao, arXiv 2101.06417) and MCMC unlearning (Fu, He &
Tao, ICLR 2022):

    h_0 = v,    h_t = v + (1 - d) h_{t-1} - s H_{b_t} h_{t-1},    t = 1..T

with a fresh minibatch ``b_t`` of the remaining data at every step.
For a fixed positive-definite ``H`` the fixed point is ``(d I + s H)^{-1} v``,
so the result ``s h_T`` approximates ``(H + (d/s) I)^{-1} v``; with ``d = 0``
(the choice of both Bayesian forgetting papers) it is ``H^{-1} v``. The series converges only when every
eigenvalue of ``I - d - s H`` lies in (-1, 1), that is when
``0 < s * lambda_max(H) < 2 - d``.

With ``scale=None`` the scale is set to ``1 / (safety * lambda_max)``, with
``lambda_max`` estimated by power iteration on the first few batches, started
from random directions drawn with the caller's ``key`` (required then).

Nothing here is jitted on its own: :func:`lissa` is a pure, traceable
function, so jit the computation that calls it (``jaxunlearn.jit`` keeps the
class of :class:`LissaDivergenceError` under ``jit``).

Divergence check. The increments ``Delta_t = h_t - h_{t-1} = v - d h_{t-1} - s H_{b_t} h_{t-1}``
(with ``h_{-1} = 0``, so ``Delta_0 = v``) obey ``Delta_t = (I - d - s H) Delta_{t-1}`` for a
fixed ``H``: a power iteration of the symmetric matrix ``I - d - s H``. While every
eigenvalue of that matrix lies in [-1, 1] their norms never grow; a single
eigenvalue outside makes them grow geometrically, however slowly. With

    early = mean ||Delta_t|| over the first quarter of the steps,
    late  = mean ||Delta_t|| over the last quarter,

a recursion with ``late > GROWTH_LIMIT * early`` (or a non-finite ``h_t``)
raises :class:`LissaDivergenceError`. The margin ``GROWTH_LIMIT`` leaves room
for minibatch noise, which keeps the increments of a convergent stochastic
recursion from shrinking to zero. The message reports the last finite ``||h||``
and the curvature met along the last finite increments,

    lambda = (1 - d - sum_t <Delta_{t-1}, Delta_t> / sum_t ||Delta_{t-1}||^2) / s,

the Rayleigh quotient of ``H`` along them (exact for a fixed ``H``), with the
scale (or damping) that would converge. Non-finite ``params`` or ``v`` raise
``FloatingPointError`` naming them before the recursion runs.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu

from jaxunlearn import loops
from jaxunlearn._validation import check_finite, check_key, check_same_structure, is_concrete, raise_if
from jaxunlearn.curvature.eigen import top_eigenvalue
from jaxunlearn.curvature.products import LossFn, hvp


class LissaDivergenceError(FloatingPointError):
    """The Neumann recursion diverged; the message says which scale or damping would converge."""


GROWTH_LIMIT = 1.5
"""Largest accepted ratio of the mean increment norm over the last quarter of the steps to the first (module doc)."""


class LissaResult(NamedTuple):
    """Result of :func:`lissa`.

    ``ihvp``: ``s * h_T``, averaged over repeats, a pytree like ``v``;
    ``scale``: the ``s`` used; ``norms``: ``||h_t||`` for every step,
    shape ``[num_repeats, depth]``; ``curvature``: the Rayleigh quotient
    ``<h, H_b h> / <h, h>`` met at each step, same shape; ``increments``:
    ``||h_t - h_{t-1}||``, same shape (module doc).
    """

    ihvp: Any
    scale: jax.Array
    norms: jax.Array
    curvature: jax.Array
    increments: jax.Array


class _Trace(NamedTuple):
    """Per-step records of the recursions, each ``[num_repeats, depth]``: ``||h_t||``, ``||Delta_t||``,
    ``<Delta_{t-1}, Delta_t>`` and ``<h_{t-1}, H_b h_{t-1}> / ||h_{t-1}||^2``."""

    norms: jax.Array
    increments: jax.Array
    products: jax.Array
    curvature: jax.Array


def _divergence_error(scale, damping, growth, last_norm, curvature):
    scale, damping, growth, curvature = float(scale), float(damping), float(growth), float(curvature)
    if np.isfinite(growth):
        what = (f"the increments ||h_t - h_(t-1)|| grew {growth:.3g}-fold from the first to the last quarter of "
                f"the steps, where a convergent recursion shrinks them (||h|| reached {float(last_norm):.4g})")
    else:
        what = f"the recursion overflowed: ||h|| reached {float(last_norm):.4g} before turning inf or NaN"
    if not np.isfinite(curvature):
        advice = ("its first step already overflowed: check that loss_fn and its Hessian-vector products are finite "
                  "at params on these batches, and lower the scale")
    elif curvature > 0:
        advice = (
            f"along its last finite increments the recursion met curvature lambda ~ {curvature:.4g}, so the scale "
            f"must stay below (2 - damping) / lambda = {(2 - damping) / curvature:.4g}; try "
            f"scale={1.0 / curvature:.4g} or scale=None to estimate it by power iteration"
        )
    else:
        advice = (
            f"along its last finite increments the recursion met negative curvature ({curvature:.4g}): the loss is "
            f"not convex here. Add damping of at least {scale * -curvature:.4g} (the result then approximates "
            "(H + damping/scale I)^-1 v), or use a Gauss-Newton product (curvature.ggn_vp) instead"
        )
    return LissaDivergenceError(f"LiSSA diverged with scale={scale:.4g}, damping={damping:.4g}: {what}; {advice}.")


def _all_finite(tree: Any) -> jax.Array:
    """True when no floating-point leaf of ``tree`` holds NaN or inf."""
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return functools.reduce(jnp.logical_and, flags, jnp.asarray(True))


def _v_not_finite_error():
    return FloatingPointError("v holds non-finite values (NaN or inf): LiSSA multiplies a finite vector by the "
                              "inverse Hessian; check the gradient that produced v.")


def _last_true(mask: jax.Array) -> jax.Array:
    """Index of the last true entry of the 1-D ``mask``, ``-1`` when there is none."""
    return jnp.max(jnp.where(mask, jnp.arange(mask.shape[0]), -1))


def increment_growth(increments: jax.Array) -> jax.Array:
    """``mean ||h_t - h_{t-1}||`` over the last quarter of the steps over that of the first quarter (last axis).

    A convergent Neumann recursion shrinks its increments; a ratio above :data:`GROWTH_LIMIT`
    (or ``inf``, for non-finite increments) means it diverges, also when it diverges slowly.
    """
    quarter = max(1, increments.shape[-1] // 4)
    early = jnp.mean(increments[..., :quarter], axis=-1)
    late = jnp.mean(increments[..., -quarter:], axis=-1)
    ratio = late / jnp.maximum(early, jnp.finfo(early.dtype).tiny)
    return jnp.where(jnp.all(jnp.isfinite(increments), axis=-1), ratio, jnp.inf)


def _check_convergence(trace: _Trace, params: Any, v: Any, scale: jax.Array, damping: jax.Array) -> None:
    """Raise :class:`LissaDivergenceError` (staged with ``raise_if``) when a recursion diverged (module doc).

    Skipped when ``params`` or ``v`` are not finite: their own check reports that.
    """
    depth = trace.norms.shape[1]
    quarter = max(1, depth // 4)
    finite = jnp.all(jnp.isfinite(trace.norms) & jnp.isfinite(trace.products), 1)
    growth = jnp.where(finite, increment_growth(trace.increments), jnp.inf)
    diverged = growth > GROWTH_LIMIT
    worst = jnp.argmax(growth)

    v_norm = otu.tree_norm(v)
    norms = trace.norms[worst]
    last_norm = jnp.where(_last_true(jnp.isfinite(norms)) >= 0, norms[_last_true(jnp.isfinite(norms))], v_norm)
    previous_sq = jnp.concatenate([v_norm[None], trace.increments[worst, :-1]]) ** 2
    products = trace.products[worst]
    usable = jnp.isfinite(products) & jnp.isfinite(previous_sq)
    steps = jnp.arange(depth)
    window = usable & (steps <= _last_true(usable)) & (steps > _last_true(usable) - quarter)
    quotient = jnp.sum(jnp.where(window, products, 0.0)) / jnp.sum(jnp.where(window, previous_sq, 0.0))
    curvature = (1.0 - damping - quotient) / scale

    raise_if(_all_finite((params, v)) & jnp.any(diverged), _divergence_error, scale, damping, growth[worst], last_norm,
             curvature)


def _select(data: Any, batch: Any) -> Any:
    return batch if data is None else jax.tree.map(lambda a: jnp.asarray(a)[batch], data)


def estimate_scale(
    loss_fn: LossFn, params: Any, batches: Any, *, key: jax.Array, data: Any = None,
    num_batches: int = 4, num_iters: int = 20, safety: float = 1.1,
) -> jax.Array:
    """``1 / (safety * max_b |lambda_max(H_b)|)`` over the first ``num_batches`` batches of ``batches``.

    ``batches`` has a leading step axis (as for :func:`lissa` with one repeat);
    ``key`` draws the start direction of each batch's power iteration
    (:func:`jaxunlearn.curvature.top_eigenvalue`).
    """
    check_key(key)
    k = min(num_batches, jax.tree.leaves(batches)[0].shape[0])
    first = jax.tree.map(lambda a: a[:k], batches)
    eig = jax.vmap(lambda b, kk: top_eigenvalue(loss_fn, params, _select(data, b), kk, num_iters).eigenvalue)(
        first, jax.random.split(key, k)
    )
    return 1.0 / (safety * jnp.max(jnp.abs(eig)))


def _neumann(loss_fn, params, v, stacked, data, scale, damping):
    """The recursion, vmapped over repeats; returns ``(mean_r s h_T, Trace)`` with per-step records."""

    def one_recursion(batch_seq):
        def step(carry, batch):
            h, previous = carry
            hh = hvp(loss_fn, params, h, _select(data, batch))
            increment = jax.tree.map(lambda vv, hp, hv: vv - damping * hp - scale * hv, v, h, hh)
            h_new = otu.tree_add(h, increment)
            curvature = otu.tree_vdot(h, hh) / (otu.tree_vdot(h, h) + 1e-30)
            record = (otu.tree_norm(h_new), otu.tree_norm(increment), otu.tree_vdot(previous, increment), curvature)
            return (h_new, increment), record

        (h, _), records = loops.scan(step, (v, otu.tree_zeros_like(v)), batch_seq)
        return h, records

    h, records = jax.vmap(one_recursion)(stacked)
    return jax.tree.map(lambda x: scale * jnp.mean(x, axis=0), h), _Trace(*records)


def lissa(
    loss_fn: LossFn,
    params: Any,
    v: Any,
    batches: Any,
    *,
    data: Any = None,
    scale: float | jax.Array | None = None,
    damping: float = 0.0,
    num_repeats: int = 1,
    key: jax.Array | None = None,
    check: bool = True,
) -> LissaResult:
    """Estimate ``H^{-1} v`` (``(H + damping/scale I)^{-1} v`` with damping) by the Neumann recursion.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, the minibatch energy whose
        Hessian ``H_b`` is inverted (for the Bayesian seeds, ``-log prior + n * mean CE``).
      params: where the Hessian is taken.
      v: the vector, a pytree like ``params``.
      batches: one minibatch per step, stacked on a leading axis of length
        ``depth`` (``[num_repeats, depth, ...]`` when ``num_repeats > 1``);
        either the batches themselves or, when ``data`` is given, integer
        index arrays into ``data``.
      data: optional pytree of arrays that index batches select from.
      scale: ``s``; ``None`` estimates it by power iteration (see module doc).
      damping: ``d`` in the recursion, in ``[0, 1)`` (may be a traced scalar).
      num_repeats: independent recursions, run in parallel with ``jax.vmap``
        and averaged.
      key: PRNG key of the power iteration; required with ``scale=None``, unused otherwise.
      check: run the value checks (staged with :func:`jaxunlearn._validation.raise_if`, so also under
        ``jit``): ``FloatingPointError`` when ``params`` or ``v`` hold NaN or inf,
        :class:`LissaDivergenceError` when the recursion diverges (module doc).

    Returns:
      :class:`LissaResult`.
    """
    check_same_structure(params, v, "params", "v")
    if num_repeats < 1:
        raise ValueError(f"num_repeats must be >= 1, got {num_repeats}.")
    lead = jax.tree.leaves(batches)[0].shape
    if num_repeats > 1 and (len(lead) < 2 or lead[0] != num_repeats):
        raise ValueError(
            f"with num_repeats={num_repeats}, batches need leading axes [num_repeats, depth, ...]; got {lead}."
        )
    if is_concrete(damping) and not (0.0 <= float(damping) < 1.0):
        raise ValueError(f"damping must lie in [0, 1), got {damping}.")
    stacked = batches if num_repeats > 1 else jax.tree.map(lambda a: a[None], batches)
    depth = jax.tree.leaves(stacked)[0].shape[1]
    if depth < 1:
        raise ValueError("batches hold no step: pass at least one minibatch (depth >= 1).")
    if check:
        check_finite(params, "params")
        raise_if(~_all_finite(v), _v_not_finite_error)
    if scale is None:
        if key is None:
            raise ValueError("scale=None estimates the scale by power iteration from random directions: "
                             "pass key=jax.random.key(...), or pass scale explicitly.")
        scale = estimate_scale(loss_fn, params, jax.tree.map(lambda a: a[0], stacked), data=data, key=key)
    scale = jnp.asarray(scale, dtype=jnp.result_type(*jax.tree.leaves(v)))

    damping = jnp.asarray(damping, scale.dtype)

    def recursion(params, v, stacked, data, scale, damping):
        ihvp, trace = _neumann(loss_fn, params, v, stacked, data, scale, damping)
        if check:
            _check_convergence(trace, params, v, scale, damping)
        return LissaResult(ihvp, scale, trace.norms, trace.curvature, trace.increments)

    return loops.compiled_when_eager(recursion, params, v, stacked, data, scale, damping)
