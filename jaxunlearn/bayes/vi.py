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
and the loop is :func:`jaxunlearn.train.loop.scan_steps`; minibatches come from
shuffled epochs over the alive points of ``data``
(:func:`jaxunlearn.data.minibatch.shuffled_batches`, ``O(batch)`` per step). The loop
is compiled once per energy, optimizer, static options (``num_steps``,
``batch_size``, ``progress``) and loop policy (:mod:`jaxunlearn.loops`): a second call
with the same shapes compiles nothing.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn import loops
from jaxunlearn._validation import check_finite, check_key, check_positive_int
from jaxunlearn.bayes.energies import Energy
from jaxunlearn.data.minibatch import alive_mask, shuffled_unchecked, take
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

    Randomness: ``k_batches, k_noise = jax.random.split(key)``; the minibatches are
    ``shuffled_batches(k_batches, alive, num_steps, batch_size)`` (shuffled epochs over
    the alive points) and step ``t`` draws the energy's noise with
    ``jax.random.split(k_noise, num_steps)[t]``.

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

    Compiled once: the loop is jitted per ``energy``, ``optimizer``, static options and loop policy
    (a cache of the 32 latest), so calling ``fit_vi`` again with the same shapes, in a
    Python loop or not, compiles nothing. Pure and jittable as well (it runs unchanged
    under a caller's ``jax.jit`` or ``jax.vmap``).
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    check_key(key)
    check_finite(params, "params")
    alive, batch_size = alive_mask(data, alive, batch_size)
    if opt_state is None:
        state = init_train_state(params, optimizer)
    else:
        state = TrainState(params, {}, opt_state, jnp.zeros((), jnp.int32))
    fit = _compiled_fit(energy, optimizer, num_steps, batch_size, bool(progress), loops.get_policy())
    state, losses = fit(state, data, alive, key)
    return VIResult(state.params, state.opt_state, losses)


@functools.lru_cache(maxsize=32)
def _compiled_fit(energy: Energy, optimizer: optax.GradientTransformation, num_steps: int, batch_size: int,
                  progress: bool, policy: str) -> Callable:
    """``fit(state, data, alive, key) -> (state, losses)`` of :func:`fit_vi`, jitted."""
    del policy  # a key only: the loops read the policy in force when traced (jaxunlearn.loops)

    def fit(state, data, alive, key):
        n = jnp.sum(alive)
        step = make_step(with_key(lambda p, batch, k: energy.energy(p, batch, n, k)), optimizer)
        k_batches, k_noise = jax.random.split(key)
        batches = shuffled_unchecked(k_batches, alive, num_steps, batch_size)

        def body(st, xs):
            idx, k = xs
            return step(st, take(data, idx), k)

        xs = (batches, jax.random.split(k_noise, num_steps))
        return scan_steps(body, state, xs, progress=progress, desc="Bayes by Backprop")

    return jax.jit(fit)
