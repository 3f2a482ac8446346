"""SG-MCMC samplers of Bayesian forgetting, built on blackjax's kernels.

Fu et al. 2021 (BIF) and Fu et al. ICLR 2022 sample ``p(theta | S) ∝ exp(-F(theta, S))``
with ``F_hat(theta, B) = R(theta) + n * mean_B l`` (:mod:`jaxunlearn.bayes.energies`).
With ``eta = lr * decay(t)`` (``lr`` already divided by the training-set size, the
originals' ``lr / N``):

* **SGLD**: ``theta <- theta - eta grad F_hat + N(0, 2 eta)``. This *is*
  blackjax's SGLD kernel (``blackjax.sgld.build_kernel``) at temperature 1
  with ``step_size = eta`` and the gradient estimator ``-grad F_hat``
  (``theta + eps grad log p + sqrt(2 T eps) xi``); we call that kernel.
* **SGHMC** (BIF's version with ``lr_decay``): friction ``a = alpha sqrt(decay)``;
  on the chain's very first step the velocity is drawn ``v ~ N(0, eta)`` and
  ``theta += v`` with no gradient; afterwards::

      v <- v - eta grad F_hat - a v + N(0, 2 a eta);     theta <- theta + v

  The momentum persists across steps. blackjax's ``sghmc`` algorithm instead
  redraws the momentum at every call and integrates ``num_integration_steps``
  inner steps, and its Euler solver moves the position with the *old*
  momentum before updating it. So SGHMC here is built on blackjax's SGHMC
  diffusion (``blackjax.sgmcmc.diffusions.sghmc``) for the momentum update,
  in its units: with ``eps = sqrt(eta)``, blackjax friction ``a / eps`` and
  momentum ``p = v / eps`` its update ``p <- (1 - alpha_bj eps) p + eps g + sqrt(2 alpha_bj eps) xi``
  is exactly the velocity update above; we then apply ``theta += v_new``
  (semi-implicit order, as the originals) and keep ``v`` in the state.

Step-size schedules (``decay(t)``, ``t`` = steps taken so far): :func:`power_decay`
``(t + 1)^exponent`` and :func:`step_decay` ``rate^floor(t / every)``.
The ICLR'22 schedule ``eta_k = (sp / n) k^-0.5005``, ``k = 1, 2, ...`` is ``power_decay(-0.5005)``.

Chains run in :func:`jaxunlearn.train.loop.scan_steps` (:func:`run_chain`), drawing
minibatches from shuffled epochs over the points still in the posterior
(:func:`jaxunlearn.data.minibatch.shuffled_batches`: the originals' shuffled ``drop_last``
loader, ``O(batch)`` per step).

Compiled once: a sampler's ``step`` is jitted when the sampler is built, and
:func:`run_chain` keeps one compiled chain per sampler and static configuration
(``num_steps``, ``batch_size``, ``record``, ``progress``) and loop policy
(:mod:`jaxunlearn.loops`), so a second call with the same shapes compiles nothing.

Step sizes must be positive and the SGHMC friction ``alpha`` must lie in ``(0, 1]``;
both raise ``ValueError`` naming the argument when they are Python numbers (at
configuration, or when a step is called eagerly); traced step sizes are not checked.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.sgmcmc import diffusions
from blackjax.util import generate_gaussian_noise

from jaxunlearn import loops
from jaxunlearn._validation import check_key, check_number, check_positive_int
from jaxunlearn.data.minibatch import alive_mask, shuffled_unchecked, take
from jaxunlearn.train.loop import scan_steps

__all__ = [
    "ChainTrace", "SamplerState", "Sampler", "check_step_size", "sgld", "sghmc", "power_decay", "step_decay",
    "constant_decay", "run_chain",
]

EnergyFn = Callable[[Any, Any, Any], jax.Array]  # energy_fn(params, batch, n) -> scalar F_hat


class SamplerState(NamedTuple):
    """``position``: the parameters; ``momentum``: SGHMC's velocity ``v`` in the originals' units
    (``theta += v``; zeros for SGLD); ``count``: int32 steps taken (drives the schedule and SGHMC's first step)."""

    position: Any
    momentum: Any
    count: jax.Array


class Sampler(NamedTuple):
    """``init(position) -> SamplerState``; ``step(key, state, minibatch, n, lr, decay=1.0) -> SamplerState``.

    ``n`` is the current number of points in the posterior (the energy's
    ``n``), ``lr`` the base step size (already divided by the training-set
    size), ``decay`` the schedule's factor at this step. ``step`` is pure, jittable and
    compiled once when the sampler is built (its Python-number checks run before).
    """

    init: Callable[[Any], SamplerState]
    step: Callable[..., SamplerState]
    name: str


def check_step_size(value: Any, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``value`` is a Python/numpy number that is not ``> 0``.

    Arrays (possibly traced) pass unchecked: their values are not known at configuration.
    """
    if isinstance(value, (bool, int, float, np.number)):
        check_number(value, name, low=0.0, low_inclusive=False)


def _init(position: Any) -> SamplerState:
    return SamplerState(position, jax.tree.map(jnp.zeros_like, position), jnp.zeros((), jnp.int32))


def _neg_grad(energy_fn: EnergyFn, n: Any) -> Callable[[Any, Any], Any]:
    def grad_logdensity(position, minibatch):
        return jax.tree.map(jnp.negative, jax.grad(energy_fn)(position, minibatch, n))

    return grad_logdensity


def _checked(core: Callable[..., SamplerState]) -> Callable[..., SamplerState]:
    """The public ``step``: checks Python-number step sizes, then calls the jitted ``core``."""

    def step(key, state: SamplerState, minibatch, n, lr, decay=1.0) -> SamplerState:
        check_step_size(lr, "lr")
        check_step_size(decay, "decay")
        return core(key, state, minibatch, n, lr, decay)

    return step


def sgld(energy_fn: EnergyFn) -> Sampler:
    """SGLD ``theta <- theta - eta grad F_hat + N(0, 2 eta)`` with ``eta = lr * decay``, via blackjax's kernel.

    ``energy_fn(params, batch, n) -> scalar`` is ``F_hat`` (for an
    :class:`~jaxunlearn.bayes.energies.Energy` ``E``, pass ``E.energy``).
    """
    kernel = blackjax.sgld.build_kernel()

    @jax.jit
    def core(key, state: SamplerState, minibatch, n, lr, decay) -> SamplerState:
        position = kernel(key, state.position, _neg_grad(energy_fn, n), minibatch, lr * decay, 1.0)
        return SamplerState(position, state.momentum, state.count + 1)

    return Sampler(_init, _checked(core), "sgld")


def sghmc(energy_fn: EnergyFn, alpha: float) -> Sampler:
    """SGHMC of BIF with persistent momentum (module docstring); friction ``alpha * sqrt(decay)``.

    ``alpha`` must lie in ``(0, 1]``; the originals use ``0.4`` (BIF) and ``0.9`` (ICLR'22 GMM).
    """
    alpha = check_number(alpha, "alpha (the SGHMC friction)", low=0.0, low_inclusive=False, high=1.0)

    @jax.jit
    def core(key, state: SamplerState, minibatch, n, lr, decay) -> SamplerState:
        eta = lr * decay
        friction = alpha * jnp.sqrt(decay)
        eps = jnp.sqrt(eta)

        def first(_):
            return jax.tree.map(lambda z: eps * z, generate_gaussian_noise(key, state.position))

        def regular(_):
            grad_logdensity = _neg_grad(energy_fn, n)(state.position, minibatch)
            integrator = diffusions.sghmc(alpha=friction / eps, beta=0.0)
            p = jax.tree.map(lambda v: v / eps, state.momentum)
            _, p_new = integrator(key, state.position, p, grad_logdensity, eps, 1.0)
            return jax.tree.map(lambda q: eps * q, p_new)

        v = jax.lax.cond(state.count == 0, first, regular, None)
        position = jax.tree.map(jnp.add, state.position, v)
        return SamplerState(position, v, state.count + 1)

    return Sampler(_init, _checked(core), "sghmc")


def power_decay(exponent: float) -> Callable[[jax.Array], jax.Array]:
    """``decay(t) = (t + 1)^exponent`` (the originals' ``lr_decay_exp``; ``-0.15`` BIF GMM, ``-0.5`` BIF BNN)."""
    exponent = check_number(exponent, "exponent", low=-np.inf)
    return lambda t: (jnp.asarray(t, jnp.float32) + 1.0) ** exponent


def step_decay(rate: float, every: int) -> Callable[[jax.Array], jax.Array]:
    """``decay(t) = rate^floor(t / every)`` (the originals' ``lr_decay_rate`` / ``lr_decay_freq``)."""
    rate = check_number(rate, "rate", low=0.0, low_inclusive=False)
    every = check_positive_int(every, "every")
    return lambda t: jnp.asarray(rate, jnp.float32) ** jnp.floor_divide(jnp.asarray(t), every).astype(jnp.float32)


def constant_decay() -> Callable[[jax.Array], jax.Array]:
    """``decay(t) = 1``."""
    return lambda t: jnp.ones((), jnp.float32)


class ChainTrace(NamedTuple):
    """Per-step records of :func:`run_chain`: ``positions`` (pytree, leading axis ``num_steps``, or ``None``)
    and ``step_sizes`` ``[num_steps]`` (``eta`` used)."""

    positions: Any
    step_sizes: jax.Array


def run_chain(
    sampler: Sampler,
    key: jax.Array,
    state: SamplerState,
    data: Any,
    *,
    lr: float | jax.Array,
    num_steps: int,
    batch_size: int,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    alive: jax.Array | None = None,
    record: bool = False,
    progress: bool = False,
) -> tuple[SamplerState, ChainTrace]:
    """``num_steps`` sampler steps on minibatches of the alive points of ``data``, as one compiled scan.

    Randomness: ``k_batches, k_steps = jax.random.split(key)``. The minibatches are
    ``shuffled_batches(k_batches, alive, num_steps, batch_size)``
    (:func:`jaxunlearn.data.minibatch.shuffled_batches`: shuffled epochs over the alive
    points, ``O(batch_size)`` per step); step ``t`` calls ``sampler.step`` with the key
    ``jax.random.split(k_steps, num_steps)[t]``, ``n = sum(alive)`` and
    ``decay = schedule(state.count + t)`` (constant 1 when ``schedule`` is ``None``), so a
    chain resumes its schedule where it stopped (every step advances ``count`` by one).
    The decays are evaluated before the loop, so the schedule is any function of the
    step count and never part of the compiled program.

    Args:
      sampler, key, state: the sampler, a PRNG key, the chain's state.
      data: pytree of arrays ``[N, ...]``; ``alive`` (bool ``[N]``, default all)
        marks the points the posterior conditions on.
      lr: base step size (``> 0``; ``eta_t = lr * schedule(t)``).
      num_steps, batch_size: chain length and minibatch size (static).
      record: keep the position after every step in the trace (static).
      progress: a tqdm bar advanced from inside the compiled loop.

    Returns:
      ``(state, ChainTrace)``.

    Compiled once: the chain program is jitted per ``sampler``, static options and loop
    policy (kept in a cache of the 32 latest), so calling ``run_chain`` again with the same
    shapes, in a Python loop or not, compiles nothing. It is also pure and jittable, and
    runs unchanged under a caller's ``jax.jit`` or ``jax.vmap``.
    """
    num_steps = check_positive_int(num_steps, "num_steps", allow_zero=True)
    check_key(key)
    check_step_size(lr, "lr")
    alive, batch_size = alive_mask(data, alive, batch_size)
    schedule = constant_decay() if schedule is None else schedule
    decays = jax.vmap(schedule)(state.count + jnp.arange(num_steps, dtype=jnp.int32))
    chain = _compiled_chain(sampler, num_steps, batch_size, bool(record), bool(progress), loops.get_policy())
    return chain(key, state, data, lr, alive, decays)


@functools.lru_cache(maxsize=32)
def _compiled_chain(sampler: Sampler, num_steps: int, batch_size: int, record: bool, progress: bool,
                    policy: str) -> Callable:
    """``chain(key, state, data, lr, alive, decays) -> (state, ChainTrace)`` of :func:`run_chain`, jitted."""
    del policy  # a key only: the loops read the policy in force when traced (jaxunlearn.loops)

    def chain(key, state, data, lr, alive, decays):
        n = jnp.sum(alive)
        k_batches, k_steps = jax.random.split(key)
        batches = shuffled_unchecked(k_batches, alive, num_steps, batch_size)

        def body(st, xs):
            k, idx, decay = xs
            st = sampler.step(k, st, take(data, idx), n, lr, decay)
            return st, (st.position if record else None, lr * decay)

        xs = (jax.random.split(k_steps, num_steps), batches, decays)
        state, (positions, sizes) = scan_steps(body, state, xs, progress=progress, desc=f"{sampler.name} chain")
        return state, ChainTrace(positions, sizes)

    return jax.jit(chain)
