"""Largest Hessian eigenvalue by power iteration on HVPs.

``v_{k+1} = H v_k / ||H v_k||``, ``lambda_k = v_k^T H v_k`` (Rayleigh quotient).
Converges to the eigenvalue of largest *magnitude*; the sign of the result
tells whether it is the top of the spectrum (positive) or a negative
eigenvalue of a non-convex loss. Used by :func:`jaxunlearn.curvature.lissa` to
pick a scale under which the Neumann recursion converges.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax.tree_utils as otu

from jaxunlearn.curvature.products import LossFn, hvp


class EigenResult(NamedTuple):
    """``eigenvalue``: Rayleigh quotient at the last iterate; ``eigenvector``: unit-norm pytree like params."""

    eigenvalue: jax.Array
    eigenvector: Any


def top_eigenvalue(loss_fn: LossFn, params: Any, batch: Any, key: jax.Array, num_iters: int = 20) -> EigenResult:
    """Power iteration for the largest-magnitude eigenvalue of the Hessian of ``loss_fn(., batch)``.

    Starts from a Gaussian random direction drawn with ``key``; ``num_iters``
    HVPs, inside ``jax.lax.fori_loop``. Traceable; jit the calling function.
    """
    v0 = otu.tree_random_like(key, params, jax.random.normal)
    v0 = otu.tree_scale(1.0 / otu.tree_norm(v0), v0)

    def body(_, v):
        hv = hvp(loss_fn, params, v, batch)
        return otu.tree_scale(1.0 / (otu.tree_norm(hv) + 1e-30), hv)

    v = jax.lax.fori_loop(0, num_iters, body, v0)
    eigenvalue = otu.tree_vdot(v, hvp(loss_fn, params, v, batch))
    return EigenResult(eigenvalue, v)
