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

Divergence check: for a convergent recursion every eigen-component of
``h_t`` is a partial sum of a geometric series with ratio of magnitude at most
one, so ``||h_T|| <= (T + 1) ||v||``. A recursion whose norm exceeds twice
that bound, or turns non-finite, raises :class:`LissaDivergenceError` with the
curvature it met and a scale (or damping) that would work.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxunlearn._validation import check_key, check_same_structure, is_concrete, raise_if
from jaxunlearn.curvature.eigen import top_eigenvalue
from jaxunlearn.curvature.products import LossFn, hvp


class LissaDivergenceError(FloatingPointError):
    """The Neumann recursion diverged; the message says which scale or damping would converge."""


class LissaResult(NamedTuple):
    """Result of :func:`lissa`.

    ``ihvp``: ``s * h_T``, averaged over repeats, a pytree like ``v``;
    ``scale``: the ``s`` used; ``norms``: ``||h_t||`` for every step,
    shape ``[num_repeats, depth]``; ``curvature``: the Rayleigh quotient
    ``<h, H_b h> / <h, h>`` met at each step, same shape.
    """

    ihvp: Any
    scale: jax.Array
    norms: jax.Array
    curvature: jax.Array


def _divergence_error(scale, damping, last_norm, bound, curvature):
    scale, damping, curvature = float(scale), float(damping), float(curvature)
    if curvature > 0:
        advice = (
            f"the recursion met curvature lambda ~ {curvature:.4g}, so the scale must stay below "
            f"(2 - damping) / lambda = {(2 - damping) / curvature:.4g}; try scale={1.0 / curvature:.4g} "
            "or scale=None to estimate it by power iteration"
        )
    else:
        advice = (
            f"the recursion met negative curvature ({curvature:.4g}): the loss is not convex here. "
            f"Add damping of at least {scale * -curvature:.4g} (the result then approximates "
            "(H + damping/scale I)^-1 v), or use a Gauss-Newton product (curvature.ggn_vp) instead"
        )
    return LissaDivergenceError(
        f"LiSSA diverged with scale={scale:.4g}, damping={damping:.4g}: ||h|| reached {float(last_norm):.4g}, "
        f"above the bound {float(bound):.4g} that a convergent recursion respects; {advice}."
    )


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
    """The recursion, vmapped over repeats; returns ``(mean_r s h_T, norms, curvature)``."""

    def one_recursion(batch_seq):
        def step(h, batch):
            hh = hvp(loss_fn, params, h, _select(data, batch))
            h_new = jax.tree.map(lambda vv, hp, hv: vv + (1.0 - damping) * hp - scale * hv, v, h, hh)
            curvature = otu.tree_vdot(h, hh) / (otu.tree_vdot(h, h) + 1e-30)
            return h_new, (otu.tree_norm(h_new), curvature)

        h, (norms, curvature) = jax.lax.scan(step, v, batch_seq)
        return h, norms, curvature

    h, norms, curvature = jax.vmap(one_recursion)(stacked)
    return jax.tree.map(lambda x: scale * jnp.mean(x, axis=0), h), norms, curvature


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
      check: raise :class:`LissaDivergenceError` when the recursion diverges
        (staged with :func:`jaxunlearn._validation.raise_if`, so also under ``jit``).

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
    if scale is None:
        if key is None:
            raise ValueError("scale=None estimates the scale by power iteration from random directions: "
                             "pass key=jax.random.key(...), or pass scale explicitly.")
        scale = estimate_scale(loss_fn, params, jax.tree.map(lambda a: a[0], stacked), data=data, key=key)
    scale = jnp.asarray(scale, dtype=jnp.result_type(*jax.tree.leaves(v)))

    damping = jnp.asarray(damping, scale.dtype)
    ihvp, norms, curvature = _neumann(loss_fn, params, v, stacked, data, scale, damping)
    if check:
        bound = 2.0 * (depth + 1) * otu.tree_norm(v)
        last = jnp.max(norms[:, -1])
        worst = jnp.argmax(norms[:, -1])
        diverged = ~jnp.all(jnp.isfinite(norms)) | (last > bound)
        raise_if(diverged, _divergence_error, scale, damping, last, bound, curvature[worst, -1])
    return LissaResult(ihvp, scale, norms, curvature)
