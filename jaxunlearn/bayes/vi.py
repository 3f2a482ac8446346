"""Variational training by Bayes by Backprop (Blundell et al. 2015) with optax.

Minimises the variational energy of Fu et al. 2021 (BIF), section 1.2 of our notes::

    F_hat(gamma, B) = KL(q_gamma || p) + n * mean_{z in B} l(gamma, z; eps)

one stochastic pass (one noise draw ``eps``) per step for the variational
network, closed form for the variational mixture. The originals use plain
SGD: ``lr = 2 / 2000`` for the GMM (2000 steps, batch 64) and ``0.5 / 60000``
decayed 10x every 4000 steps for the Fashion-MNIST BNN (10000 steps, batch 128):
pass ``optax.sgd(lr / N)`` (with an ``optax`` schedule) accordingly.

The loop is one ``jax.lax.scan``; minibatches are drawn from the alive points
of ``data`` (:mod:`jaxunlearn.bayes.minibatch`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_finite, num_examples
from jaxunlearn.bayes.energies import Energy
from jaxunlearn.bayes.minibatch import all_alive, draw_indices, take

__all__ = ["VIResult", "fit_vi"]


class VIResult(NamedTuple):
    """``params``: the trained variational parameters; ``opt_state``; ``losses`` ``[num_steps]`` (``F_hat`` per step)."""

    params: Any
    opt_state: Any
    losses: jax.Array


def fit_vi(
    energy: Energy,
    params: Any,
    data: Any,
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: jax.Array,
    alive: jax.Array | None = None,
    n: Any = None,
    opt_state: Any = None,
) -> VIResult:
    """Bayes by Backprop: ``num_steps`` optax steps on ``F_hat`` with fresh minibatch and noise each step.

    Args:
      energy: the variational energy (:func:`~jaxunlearn.bayes.energies.vbnn_energy`,
        :func:`~jaxunlearn.bayes.energies.vgmm_energy`).
      params: initial variational parameters ``gamma``.
      data: pytree of arrays ``[N, ...]``; ``alive`` (bool ``[N]``) restricts
        training to a subset (default: all), ``n`` the count in the energy
        (default: the number of alive points).
      optimizer: an optax transformation (the originals: ``optax.sgd(lr / N)``).
      opt_state: resume from this optimizer state (default ``optimizer.init(params)``).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
    check_finite(params, "params")
    size = num_examples(data, "data")
    alive = all_alive(data) if alive is None else alive
    if alive.shape != (size,):
        raise ValueError(f"alive must be a boolean mask of shape ({size},), got {alive.shape}.")
    n = jnp.sum(alive) if n is None else n
    opt_state = optimizer.init(params) if opt_state is None else opt_state

    def body(carry, k):
        p, s = carry
        k_batch, k_noise = jax.random.split(k)
        batch = take(data, draw_indices(k_batch, alive, batch_size))
        loss, grads = jax.value_and_grad(energy.energy)(p, batch, n, k_noise)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), jax.random.split(key, num_steps))
    return VIResult(params, opt_state, losses)
