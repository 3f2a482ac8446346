"""Variational training by Bayes by Backprop (Blundell et al. 2015) with optax.

Minimises the variational energy of Fu et al. 2021 (BIF, arXiv 2101.06417)::

    F_hat(gamma, B) = KL(q_gamma || p) + n * mean_{z in B} l(gamma, z; eps)

one stochastic pass (one noise draw ``eps``) per step for the variational
network, closed form for the variational mixture; ``n`` is the number of alive
points. The originals use plain SGD: ``lr = 2 / 2000`` for the GMM (2000 steps,
batch 64) and ``0.5 / 60000`` decayed 10x every 4000 steps for the
Fashion-MNIST BNN (10000 steps, batch 128): pass ``optax.sgd(lr / N)`` (with an
``optax`` schedule) accordingly.

Each step is the library's optax step (:func:`jaxunlearn.train.loop.make_step`)
and the loop is :func:`jaxunlearn.train.loop.scan_steps`; minibatches are drawn
from the alive points of ``data`` (:mod:`jaxunlearn.data.minibatch`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_finite, check_key, check_positive_int
from jaxunlearn.bayes.energies import Energy
from jaxunlearn.data.minibatch import alive_mask, draw_unchecked, take
from jaxunlearn.train.loop import TrainState, init_train_state, make_step, scan_steps, with_key

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
    opt_state: Any = None,
    progress: bool = False,
) -> VIResult:
    """Bayes by Backprop: ``num_steps`` optax steps on ``F_hat`` with a fresh minibatch and noise draw each step.

    Step ``t`` takes ``k_t = jax.random.split(key, num_steps)[t]``, split into a
    minibatch key and the energy's noise key.

    Args:
      energy: the variational energy (:func:`~jaxunlearn.bayes.energies.vbnn_energy`,
        :func:`~jaxunlearn.bayes.energies.vgmm_energy`).
      params: initial variational parameters ``gamma``.
      data: pytree of arrays ``[N, ...]``; ``alive`` (bool ``[N]``) restricts
        training to a subset (default: all); the energy's ``n`` is their count.
      optimizer: an optax transformation (the originals: ``optax.sgd(lr / N)``).
      num_steps, batch_size: number of steps and minibatch size (static).
      key: PRNG key of the run.
      opt_state: resume from this optimizer state (default ``optimizer.init(params)``).
      progress: a tqdm bar advanced from inside the compiled loop.

    Returns:
      :class:`VIResult`.

    Pure and jittable; jit it once with the callables bound, e.g.
    ``jax.jit(functools.partial(bayes.fit_vi, energy, optimizer=opt, num_steps=3000, batch_size=512))``,
    then call that with ``(params, data, key=..., alive=...)``.
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    check_key(key)
    check_finite(params, "params")
    alive, batch_size = alive_mask(data, alive, batch_size)
    n = jnp.sum(alive)
    step = make_step(with_key(lambda p, batch, k: energy.energy(p, batch, n, k)), optimizer)
    if opt_state is None:
        state = init_train_state(params, optimizer)
    else:
        state = TrainState(params, {}, opt_state, jnp.zeros((), jnp.int32))

    def body(st, k):
        k_batch, k_noise = jax.random.split(k)
        return step(st, take(data, draw_unchecked(k_batch, alive, batch_size)), k_noise)

    state, losses = scan_steps(body, state, jax.random.split(key, num_steps), progress=progress,
                               desc="Bayes by Backprop")
    return VIResult(state.params, state.opt_state, losses)
