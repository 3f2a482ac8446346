"""Inverse-Hessian-vector products by conjugate gradients, the exact alternative to LiSSA.

Solves ``(H + damping I) x = v`` with ``H`` the Hessian of ``loss_fn(., batch)``
on one full (or large fixed) batch, using ``jax.scipy.sparse.linalg.cg`` on
pytrees with HVPs as the matrix. CG needs ``H + damping I`` positive definite;
the relative residual ``||(H + d I) x - v|| / ||v||`` is checked after the
solve and a solve that did not converge raises :class:`CGConvergenceError`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

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


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _cg_core(loss_fn, params, v, batch, damping, tol, maxiter):
    def matvec(x):
        return otu.tree_add_scale(hvp(loss_fn, params, x, batch), damping, x)

    x, _ = jax.scipy.sparse.linalg.cg(matvec, v, tol=tol, maxiter=maxiter)
    residual = otu.tree_norm(otu.tree_sub(matvec(x), v)) / (otu.tree_norm(v) + 1e-30)
    return x, residual


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
    """Solve ``(H + damping I) x = v`` by CG with HVPs on ``batch``; raise if the residual stays above ``max_residual``."""
    check_same_structure(params, v, "params", "v")
    x, residual = _cg_core(loss_fn, params, v, batch, damping, tol, maxiter)
    raise_if(~jnp.isfinite(residual) | (residual > max_residual), _cg_error, residual, jnp.asarray(max_residual))
    return CGResult(x, residual)
