"""Inverse-Hessian-vector products by conjugate gradients, the exact alternative to LiSSA.

Solves ``(H + damping I) x = v`` with ``H`` the Hessian of ``loss_fn(., batch)``
on one full (or large fixed) batch, using ``jax.scipy.sparse.linalg.cg`` on
pytrees with HVPs as the matrix. CG needs ``H + damping I`` positive definite;
the relative residual ``||(H + d I) x - v|| / ||v||`` is checked after the
solve and a solve that did not converge raises :class:`CGConvergenceError`
(staged with :func:`jaxunlearn._validation.raise_if`: under ``jaxunlearn.jit``
it keeps its class). :func:`cg` is a pure, traceable function and is not
jitted on its own: jit the computation that calls it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxunlearn import loops
from jaxunlearn._validation import check_same_structure, raise_if
from jaxunlearn.curvature.products import LossFn, hvp


class CGConvergenceError(FloatingPointError):
    """Conjugate gradients did not reach the requested residual."""


class CGResult(NamedTuple):
    """``ihvp``: the solution ``x``; ``residual``: ``||(H + d I) x - v|| / ||v||``."""

    ihvp: Any
    residual: jax.Array


def _cg_error(residual, limit):
    return CGConvergenceError(
        f"conjugate gradients stopped at relative residual {float(residual):.3g} > {float(limit):.3g}. "
        "The Hessian may be indefinite (a non-convex loss): add damping, or solve with the Gauss-Newton "
        "product (curvature.ggn_vp); or raise maxiter."
    )


def cg(
    loss_fn: LossFn,
    params: Any,
    v: Any,
    batch: Any,
    *,
    damping: float = 0.0,
    tol: float = 1e-6,
    maxiter: int | None = None,
    max_residual: float = 1e-2,
) -> CGResult:
    """Solve ``(H + damping I) x = v`` by CG with HVPs on ``batch``; raise if the residual stays above ``max_residual``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``; ``H`` is its Hessian at ``params``.
      v: the right-hand side, a pytree like ``params``.
      batch: the data ``H`` is taken on (any pytree ``loss_fn`` accepts).
      damping: ``d >= 0`` added to the diagonal (may be a traced scalar).
      tol, maxiter: passed to ``jax.scipy.sparse.linalg.cg``.
      max_residual: largest accepted ``||(H + d I) x - v|| / ||v||``; above it (or
        non-finite) :class:`CGConvergenceError` is raised, also under ``jaxunlearn.jit``.

    Returns:
      :class:`CGResult`.
    """
    check_same_structure(params, v, "params", "v")

    def solve(params, v, batch, damping):
        def matvec(x):
            return otu.tree_add_scale(hvp(loss_fn, params, x, batch), damping, x)

        x, _ = jax.scipy.sparse.linalg.cg(matvec, v, tol=tol, maxiter=maxiter)
        residual = otu.tree_norm(otu.tree_sub(matvec(x), v)) / (otu.tree_norm(v) + 1e-30)
        raise_if(~jnp.isfinite(residual) | (residual > max_residual), _cg_error, residual, jnp.asarray(max_residual))
        return CGResult(x, residual)

    return loops.compiled_when_eager(solve, params, v, batch, damping)
