"""Curvature-vector products without materialising a matrix.

* Hessian-vector product, forward-over-reverse (Pearlmutter 1994):
  ``H v = d/dt grad L(theta + t v) |_{t=0}``, i.e. ``jax.jvp`` of ``jax.grad``.
  One HVP costs about two to three gradients and no more memory than a
  gradient; it is never built by double reverse mode.
* Generalised Gauss-Newton product (Schraudolph 2002): ``G v = J^T H_L J v``
  with ``J`` the Jacobian of the network outputs and ``H_L`` the Hessian of
  the loss with respect to those outputs. ``G`` is positive semi-definite for
  convex output losses (cross-entropy, squared error), so it is the safe
  curvature for non-convex networks.

Shapes: ``params`` and ``v`` are pytrees of equal structure; the results have
that structure too.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from jaxunlearn._validation import check_same_structure

LossFn = Callable[[Any, Any], jax.Array]


def hvp(loss_fn: LossFn, params: Any, v: Any, batch: Any) -> Any:
    """Hessian of ``loss_fn(., batch)`` at ``params`` times ``v``: ``jvp(grad(L), (params,), (v,))``."""
    check_same_structure(params, v, "params", "v")
    return jax.jvp(jax.grad(lambda p: loss_fn(p, batch)), (params,), (v,))[1]


def ggn_vp(
    apply_fn: Callable[[Any, Any], Any],
    loss_on_outputs: Callable[[Any, Any], jax.Array],
    params: Any,
    v: Any,
    batch: Any,
) -> Any:
    """Gauss-Newton product ``J^T H_L J v`` for ``L(p) = loss_on_outputs(apply_fn(p, batch), batch)``.

    ``apply_fn(params, batch)`` returns the network outputs (any pytree);
    ``loss_on_outputs(outputs, batch)`` the scalar loss. ``J v`` by ``jax.jvp``,
    ``H_L (J v)`` by an HVP in output space, ``J^T (.)`` by ``jax.vjp``.
    """
    check_same_structure(params, v, "params", "v")
    outputs, jv = jax.jvp(lambda p: apply_fn(p, batch), (params,), (v,))
    hjv = jax.jvp(jax.grad(lambda o: loss_on_outputs(o, batch)), (outputs,), (jv,))[1]
    _, pullback = jax.vjp(lambda p: apply_fn(p, batch), params)
    return pullback(hjv)[0]
