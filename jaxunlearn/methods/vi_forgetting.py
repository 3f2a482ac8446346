"""Variational inference forgetting (Fu, He, Xu & Tao, "Bayesian Inference Forgetting", 2021).

Section 1.3 of our reference notes. The variational parameters ``gamma``
minimise ``F(gamma, S)``; removing ``S'`` moves the optimum by the influence
function, estimated with one Newton-like step per removal request::

    v   = grad_gamma sum_{z in S'} h(gamma, z)                      (mean over bbp_T noise draws)
    h_0 = v,   h_t = v + h_{t-1} - s H_hat_{B_t} h_{t-1},  t = 1..iter_T
    gamma <- gamma + s h_T                     (s h_T ~ H^{-1} v, so gamma + H^{-1} grad sum h)

``H_hat_B`` is the Hessian of the minibatch energy ``F_hat(gamma, B)`` (each
HVP averaged over ``bbp_T`` fresh noise draws for the variational network),
``s = scaling0 / n`` with ``n`` the number of points *before* this removal,
and the recursion's batches ``B_t`` are drawn from the current remaining set,
which **still contains** ``S'``; ``S'`` is removed and ``n`` updated after the
step, as the originals do. The recursion is
:func:`jaxunlearn.curvature.lissa` with ``damping = 0``, a single repeat and
``scale = s``; each of its "batches" is a pair (minibatch, ``bbp_T`` PRNG
keys), so the noise draws travel through LiSSA's scan.

Usage::

    energy = ju.bayes.vbnn_energy(stochastic_logits_fn(module), prior_std=0.15)
    forgetter = vi_forgetting(energy, scaling0=0.1, iter_T=64, bbp_T=5, batch_size=128)
    state = forgetter.init(gamma, train_data, key=key)        # the data the posterior conditions on
    gamma, state = forgetter.update(gamma, forget_idx, state)  # indices into train_data, one chunk

Defaults of the originals: GMM ``scaling0 = 1, iter_T = 32, batch 64``;
Fashion-MNIST VI ``scaling0 = 0.1, iter_T = 64, bbp_T = 5, rm_bs = 64, batch 128``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxunlearn import curvature
from jaxunlearn._validation import check_finite, num_examples
from jaxunlearn.bayes.energies import Energy
from jaxunlearn.bayes.minibatch import all_alive, draw_indices, remove, take
from jaxunlearn.methods.base import Unlearner

__all__ = ["VIForgettingState", "vi_forgetting", "vi_influence"]


class VIForgettingState(NamedTuple):
    """``data``: the whole dataset given to ``init`` (``[N, ...]`` leaves); ``alive``: bool ``[N]``, points
    still in the posterior; ``n``: their number (int32); ``key``: PRNG key for batches and noise;
    ``last_norms``: ``||h_t||`` of the last recursion ``[iter_T]`` (zeros before the first update)."""

    data: Any
    alive: jax.Array
    n: jax.Array
    key: jax.Array
    last_norms: jax.Array


def _check_config(scaling0: float, iter_T: int, bbp_T: int, batch_size: int) -> None:
    if not scaling0 > 0:
        raise ValueError(f"scaling0 must be positive, got {scaling0}; the originals use 0.1 (BNN) and 1 (GMM).")
    if iter_T < 1:
        raise ValueError(f"iter_T (recursion depth) must be >= 1, got {iter_T}.")
    if bbp_T < 1:
        raise ValueError(f"bbp_T (noise draws per gradient/HVP) must be >= 1, got {bbp_T}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")


def vi_influence(
    energy: Energy,
    params: Any,
    forget_batch: Any,
    data: Any,
    alive: jax.Array,
    n: Any,
    key: jax.Array,
    *,
    scaling0: float,
    iter_T: int,
    bbp_T: int,
    batch_size: int,
    check: bool = True,
) -> curvature.LissaResult:
    """The correction ``s h_T ~ H^{-1} grad sum_{S'} h`` (``LissaResult.ihvp``, a pytree like ``params``).

    ``forget_batch`` is ``S'`` itself; the recursion's minibatches come from
    the ``alive`` points of ``data``; ``s = scaling0 / n``.
    """
    _check_config(scaling0, iter_T, bbp_T, batch_size)
    draws = bbp_T if energy.stochastic else 1
    k_v, k_idx, k_noise = jax.random.split(key, 3)

    def mean_over_noise(fn, keys):
        vals = jax.vmap(fn)(keys)
        return jax.tree.map(lambda a: jnp.mean(a, axis=0), vals)

    v = mean_over_noise(lambda k: jax.grad(energy.forget)(params, forget_batch, k), jax.random.split(k_v, draws))
    idx = jax.vmap(lambda k: draw_indices(k, alive, batch_size))(jax.random.split(k_idx, iter_T))
    batches = (take(data, idx), jax.random.split(k_noise, (iter_T, draws)))

    def loss_fn(p, batch_and_keys):
        batch, keys = batch_and_keys
        return jnp.mean(jax.vmap(lambda k: energy.energy(p, batch, n, k))(keys))

    scale = jnp.asarray(scaling0, jnp.float32) / n
    return curvature.lissa(loss_fn, params, v, batches, scale=scale, check=check)


def vi_forgetting(
    energy: Energy,
    *,
    scaling0: float,
    iter_T: int,
    batch_size: int,
    bbp_T: int = 5,
    check: bool = True,
) -> Unlearner:
    """VI forgetting as an :class:`~jaxunlearn.methods.base.Unlearner` (module docstring).

    ``init(params, data, *, key) -> VIForgettingState``: ``data`` is everything
    the posterior currently conditions on (the forget chunks included).
    ``update(params, forget_idx, state) -> (params, state)``: ``forget_idx`` is
    a 1-D integer array of indices into ``data`` (one removal request of
    ``rm_bs`` points); jittable.
    """
    _check_config(scaling0, iter_T, bbp_T, batch_size)

    def init(params: Any, data: Any, *, key: jax.Array) -> VIForgettingState:
        check_finite(params, "params")
        size = num_examples(data, "data")
        if batch_size > size:
            raise ValueError(f"batch_size={batch_size} exceeds the {size} points of data; lower batch_size.")
        data = jax.tree.map(jnp.asarray, data)
        return VIForgettingState(data, all_alive(data), jnp.asarray(size, jnp.int32), key, jnp.zeros((iter_T,)))

    def update(params: Any, forget_idx: Any, state: VIForgettingState) -> tuple[Any, VIForgettingState]:
        check_finite(params, "params")
        alive = remove(state.alive, forget_idx)  # validates the indices before any work
        key, sub = jax.random.split(state.key)
        result = vi_influence(
            energy, params, take(state.data, forget_idx), state.data, state.alive, state.n, sub,
            scaling0=scaling0, iter_T=iter_T, bbp_T=bbp_T, batch_size=batch_size, check=check,
        )
        new_params = jax.tree.map(jnp.add, params, result.ihvp)
        n_new = state.n - jnp.asarray(forget_idx).shape[0]
        return new_params, VIForgettingState(state.data, alive, n_new.astype(jnp.int32), key, result.norms[0])

    return Unlearner(init, update)
