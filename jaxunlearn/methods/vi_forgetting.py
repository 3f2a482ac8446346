"""Variational inference forgetting (Fu, He, Xu & Tao, "Bayesian Inference Forgetting", arXiv 2101.06417).

The variational parameters ``gamma`` minimise ``F(gamma, S)``; removing ``S'``
moves the optimum by the influence function, estimated with one Newton-like
step per removal request::

    v   = grad_gamma sum_{z in S'} h(gamma, z)                      (mean over bbp_T noise draws)
    h_0 = v,   h_t = v + h_{t-1} - s H_hat_{B_t} h_{t-1},  t = 1..iter_T
    gamma <- gamma + s h_T                     (s h_T ~ H^{-1} v, so gamma + H^{-1} grad sum h)

``H_hat_B`` is the Hessian of the minibatch energy ``F_hat(gamma, B)`` (each
HVP averaged over ``bbp_T`` fresh noise draws for the variational network),
``s = scaling0 / n`` with ``n`` the number of points *before* this removal,
and the recursion's batches ``B_t`` are drawn from the points alive before the
request, which **still contain** ``S'``; ``S'`` is removed and ``n`` set to the
count of alive points after the step, as the originals do. The recursion is
:func:`jaxunlearn.curvature.lissa` with ``damping = 0``, a single repeat and
``scale = s``; each of its "batches" is a pair (minibatch indices, ``bbp_T``
PRNG keys), so the noise draws travel through LiSSA's scan.

Randomness of one request: ``k_batches, k_noise = jax.random.split(key)``; the
minibatch indices are ``bayes.shuffled_batches(k_batches, alive_before, iter_T, batch_size)`` (shuffled
epochs over the points alive before the request, as the originals' loader draws them; ``O(batch_size)`` per batch);
:func:`vi_influence` splits ``k_grad, k_hvp = jax.random.split(k_noise)``, the ``bbp_T``
draws of ``v`` use ``jax.random.split(k_grad, bbp_T)`` and the HVP noise
``jax.random.split(k_hvp, (iter_T, bbp_T))`` (deterministic energies use one draw and
ignore the noise). ``update(..., batches=idx)`` replaces only the minibatch
indices, so a run can be replayed against another implementation with its own batch
sequence while the noise still comes from ``key``.

Usage (the runnable example of the Bayesian family is in :mod:`jaxunlearn.methods.mcmc_forgetting`)::

    energy = ju.bayes.vbnn_energy(stochastic_logits_fn(module), prior_std=0.15)
    forgetter = vi_forgetting(energy, scaling0=0.1, iter_T=64, bbp_T=5, batch_size=128)
    state = forgetter.init(gamma, train_data, key=k0)              # the data the posterior conditions on
    gamma, state, info = forgetter.update(gamma, forget_idx, state, key=k1)   # one chunk of indices

Defaults of the originals: GMM ``scaling0 = 1, iter_T = 32, batch 64``;
Fashion-MNIST VI ``scaling0 = 0.1, iter_T = 64, bbp_T = 5, rm_bs = 64, batch 128``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxunlearn import curvature, loops
from jaxunlearn._validation import (
    check_fits_model, check_number, check_positive_int, keep_errors, wait_for_errors,
)
from jaxunlearn.bayes.energies import Energy
from jaxunlearn.data.minibatch import check_batch_size, check_batches, shuffled_batches, take
from jaxunlearn.methods import base

__all__ = ["VIForgettingInfo", "VIForgettingState", "vi_forgetting", "vi_influence"]


class VIForgettingState(NamedTuple):
    """``store``: the data given to ``init`` and the ``alive`` mask of the points still in the posterior;
    ``n``: int32, their number (``sum(store.alive)``)."""

    store: base.DataState
    n: jax.Array


class VIForgettingInfo(NamedTuple):
    """``norms``: ``||h_t||`` of the request's recursion, ``[iter_T]``."""

    norms: jax.Array


def vi_influence(
    energy: Energy,
    params: Any,
    forget_batch: Any,
    data: Any,
    batches: jax.Array,
    n: Any,
    key: jax.Array,
    *,
    scaling0: float,
    bbp_T: int,
    check: bool = True,
) -> curvature.LissaResult:
    """The correction ``s h_T ~ H^{-1} grad sum_{S'} h`` (``LissaResult.ihvp``, a pytree like ``params``).

    ``forget_batch`` is ``S'`` itself; ``batches`` (int ``[iter_T, B]``) are the
    recursion's minibatch indices into ``data``; ``n`` the count of points the
    posterior conditions on, ``s = scaling0 / n``; ``key`` gives the noise
    draws: ``k_grad, k_hvp = jax.random.split(key)`` (see the module docstring).

    Compiled once per ``energy``, ``scaling0``, ``bbp_T``, ``check`` and loop policy (a cache of the
    32 latest): a second call with arrays of the same shapes compiles nothing. Traceable as well.
    """
    with keep_errors():
        return wait_for_errors(_compiled_influence(energy, float(scaling0), int(bbp_T), bool(check),
                                                   loops.get_policy())(params, forget_batch, data, batches, n, key))


@functools.lru_cache(maxsize=32)
def _compiled_influence(energy: Energy, scaling0: float, bbp_T: int, check: bool, policy: str) -> Callable:
    """``influence(params, forget_batch, data, batches, n, key) -> LissaResult`` of :func:`vi_influence`, jitted."""
    del policy  # a key only: the loops read the policy in force when traced (jaxunlearn.loops)

    draws = bbp_T if energy.stochastic else 1

    def mean_over_noise(fn, keys):
        return jax.tree.map(lambda a: jnp.mean(a, axis=0), jax.vmap(fn)(keys))

    def influence(params, forget_batch, data, batches, n, key):
        iter_T = batches.shape[0]
        k_grad, k_hvp = jax.random.split(key)
        v = mean_over_noise(lambda k: jax.grad(energy.forget)(params, forget_batch, k),
                            jax.random.split(k_grad, draws))

        def loss_fn(p, idx_and_keys):
            idx, keys = idx_and_keys
            batch = take(data, idx)
            return jnp.mean(jax.vmap(lambda k: energy.energy(p, batch, n, k))(keys))

        scale = jnp.asarray(scaling0, jnp.float32) / n
        steps = (batches, jax.random.split(k_hvp, (iter_T, draws)))
        return curvature.lissa(loss_fn, params, v, steps, scale=scale, check=check)

    return jax.jit(influence)


def vi_forgetting(
    energy: Energy,
    *,
    scaling0: float,
    iter_T: int,
    batch_size: int,
    bbp_T: int = 5,
    check: bool = True,
) -> base.Unlearner:
    """VI forgetting as an :class:`~jaxunlearn.methods.base.Unlearner` (module docstring).

    Args:
      energy: the variational energy (:func:`jaxunlearn.bayes.vbnn_energy`, :func:`jaxunlearn.bayes.vgmm_energy`).
      scaling0: ``s * n`` of the recursion (``> 0``; ``s lambda_max(H)`` must stay below 2).
      iter_T: recursion depth. batch_size: minibatch size of each HVP.
      bbp_T: noise draws averaged per gradient and HVP (stochastic energies only).
      check: raise :class:`jaxunlearn.curvature.LissaDivergenceError` when the recursion diverges.

    Returns:
      ``Unlearner(init, update)``:

      * ``init(params, data, *, key) -> VIForgettingState``: ``data`` is everything
        the posterior conditions on (the forget chunks included); ``key`` only serves the
        shape check of ``data`` against the energy.
      * ``update(params, request, state, *, key, batches=None) -> (params, state, VIForgettingInfo)``:
        ``request`` a 1-D int array of indices into ``data`` (one chunk), ``key``
        drives all randomness; ``batches`` (optional, int ``[iter_T, batch_size]``)
        injects the recursion's minibatch indices, each of a point alive before the
        request. The request computation is jitted once, here.
    """
    scaling0 = check_number(scaling0, "scaling0", low=0.0, low_inclusive=False)
    iter_T = check_positive_int(iter_T, "iter_T")
    batch_size = check_positive_int(batch_size, "batch_size")
    bbp_T = check_positive_int(bbp_T, "bbp_T")

    def init(params: Any, data: Any, *, key: jax.Array) -> VIForgettingState:
        store = base.init_data_state(data, "data")
        check_batch_size(store.alive, batch_size)
        check_fits_model(lambda p, b: energy.forget(p, b, key), params, store.data, "data")  # shapes only
        return VIForgettingState(store, jnp.asarray(store.alive.shape[0], jnp.int32))

    def request_fn(params, request, state, key, batches=None):
        """One removal: ``gamma <- gamma + s h_T`` (module docstring); ``batches`` injects the minibatch indices."""
        req = base.open_request(state.store, request)
        k_batches, k_noise = jax.random.split(key)
        if batches is None:
            idx = shuffled_batches(k_batches, req.before, iter_T, batch_size)
        else:
            idx = check_batches(batches, req.before, (iter_T, batch_size))
        result = vi_influence(energy, params, req.forget, state.store.data, idx, state.n, k_noise,
                              scaling0=scaling0, bbp_T=bbp_T, check=check)
        new_params = jax.tree.map(jnp.add, params, result.ihvp)
        new_state = VIForgettingState(state.store._replace(alive=req.retain), jnp.sum(req.retain).astype(jnp.int32))
        return new_params, new_state, VIForgettingInfo(result.norms[0])

    return base.make_unlearner(init, request_fn, VIForgettingState)
