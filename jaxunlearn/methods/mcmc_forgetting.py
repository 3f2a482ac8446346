"""MCMC forgetting / MCMC unlearning and the importance-sampling baseline.

Fu, He, Xu & Tao, "Bayesian Inference Forgetting" (2021), ``sgmcmcForgetter``,
and Fu, He & Tao, "Knowledge Removal in Sampling-based Bayesian Inference"
(ICLR 2022), ``sgmcmcUnlearner.remove`` (the same algorithm); sections 1.4
and 2.1 of our reference notes. The chain's distribution is treated as the
optimum of an energy-based problem, so removing ``S'`` moves it by the *MCMC
influence function* ``-H^{-1} E[grad sum_{S'} h]`` with both expectations
taken along the chain::

    v   = (1/samp_T) sum_j grad_theta sum_{z in S'} h(theta_j, z)       theta_j: after one sampler step each
    h_0 = v
    h_t = v + h_{t-1} - (1/samp_T) sum_j s H_hat_{B_j}(theta_j) h_{t-1},  t = 1..iter_T
          (for each j: one sampler step on a batch A_j, then an HVP on a *different* batch B_j at the new theta_j)
    theta <- theta + s h_T

with ``s = scaling0 / n`` and ``n`` the count *before* the removal. The
sampler batches and the HVP batches are drawn from the current remaining set,
which still contains ``S'``; afterwards ``S'`` is removed, ``n`` updated and,
in the ICLR'22 BNN runs, the step size rescaled ``lr <- lr * n_old / n_new``
(keeps ``lr * n`` fixed; the GMM scripts do not rescale:
``rescale_step_size=False``). The correction is added after
``samp_T * (1 + iter_T)`` sampler steps on the remaining set, so part of the
forgetting is continued sampling, exactly as in the originals. The sampler
continues with the step size and friction it had at the end of training
(``lr``, ``decay`` fixed in the state), as the originals restore them from
the training checkpoint.

**Why not** :func:`jaxunlearn.curvature.lissa`: LiSSA runs a plain Neumann
recursion at a *fixed* point ``params`` over a batch sequence known up front.
Here the point at which each HVP is taken moves: the sampler state (position,
SGHMC velocity, PRNG) is part of the recursion's carry, and every recursion
step averages ``samp_T`` HVPs at ``samp_T`` successive chain states. So the
recursion is its own ``jax.lax.scan`` (over ``iter_T``, with an inner scan
over ``samp_T``), built on :func:`jaxunlearn.curvature.hvp`. Its divergence
check is LiSSA's bound ``||h_T|| <= 2 (iter_T + 1) ||v||`` and raises
:class:`jaxunlearn.curvature.LissaDivergenceError`.

The **importance-sampling baseline** (ICLR'22 ``finetune.py``): for each
removed chunk, remove it, rescale the step size, then take ``num_steps``
further SG-MCMC steps (1000 in the original) on the remaining data
(:func:`importance_sampling`).

Defaults of the originals: GMM ``scaling0 = 1, iter_T = 32, samp_T = 5, rm_bs = 4, batch 64``;
BIF Fashion-MNIST SGLD ``scaling0 = 0.005``, SGHMC ``0.05``, ``iter_T = 64, samp_T = 5, rm_bs = 64, batch 128``;
ICLR'22 BNN ``scaling0 = 0.05`` (Fashion) / ``0.08`` (CIFAR-10), ``iter_T = 64, samp_T = 1``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from jaxunlearn import curvature
from jaxunlearn._validation import check_finite, check_same_structure, num_examples, raise_if
from jaxunlearn.bayes.energies import Energy
from jaxunlearn.bayes.minibatch import all_alive, draw_indices, remove, take
from jaxunlearn.bayes.samplers import Sampler, SamplerState
from jaxunlearn.methods.base import Unlearner

__all__ = ["MCMCForgettingState", "MCMCInfluence", "mcmc_influence", "mcmc_forgetting", "importance_sampling"]


class MCMCForgettingState(NamedTuple):
    """State carried between removal requests.

    ``sampler``: the chain's :class:`~jaxunlearn.bayes.samplers.SamplerState`
    (its position is replaced by ``params`` at each update); ``data``: the
    whole dataset given to ``init``; ``alive``: bool ``[N]``; ``n``: int32
    count of alive points; ``lr``: base step size (``eta = lr * decay``),
    rescaled after removals when asked; ``decay``: the schedule factor the
    sampler continues at; ``key``: PRNG key; ``last_norms``: ``||h_t||`` of the
    last recursion (``[iter_T]``; zeros for the baseline).
    """

    sampler: SamplerState
    data: Any
    alive: jax.Array
    n: jax.Array
    lr: jax.Array
    decay: jax.Array
    key: jax.Array
    last_norms: jax.Array


class MCMCInfluence(NamedTuple):
    """``delta``: the correction ``s h_T`` (pytree like params); ``sampler``: the chain state after the
    ``samp_T (1 + iter_T)`` steps (its position *without* the correction); ``norms``: ``||h_t||`` ``[iter_T]``."""

    delta: Any
    sampler: SamplerState
    norms: jax.Array


def _divergence(last, bound):
    return curvature.LissaDivergenceError(
        f"the MCMC influence recursion diverged: ||h|| reached {float(last):.4g}, above the bound "
        f"{float(bound):.4g} that a convergent Neumann series respects. Lower scaling0 (s * lambda_max(H) must "
        "stay below 2), or lower the sampler's step size so the chain stays near the mode."
    )


def mcmc_influence(
    energy: Energy,
    sampler: Sampler,
    sampler_state: SamplerState,
    forget_batch: Any,
    data: Any,
    alive: jax.Array,
    n: Any,
    lr: Any,
    decay: Any,
    key: jax.Array,
    *,
    scaling0: float,
    iter_T: int,
    samp_T: int,
    batch_size: int,
    check: bool = True,
) -> MCMCInfluence:
    """The MCMC influence recursion of the module docstring, interleaved with sampler steps, in ``lax.scan``.

    ``energy`` must be deterministic (an SG-MCMC energy); ``sampler`` is built
    on ``energy.energy``. Batches come from the ``alive`` points of ``data``.
    """
    if energy.stochastic:
        raise ValueError("energy is stochastic (a variational network): MCMC forgetting needs a point-weight energy.")
    if scaling0 <= 0 or iter_T < 1 or samp_T < 1 or batch_size < 1:
        raise ValueError(
            f"need scaling0 > 0, iter_T >= 1, samp_T >= 1, batch_size >= 1; got {scaling0}, {iter_T}, {samp_T}, "
            f"{batch_size}."
        )
    scale = jnp.asarray(scaling0, jnp.float32) / n

    def sample(st, k):
        k_batch, k_step = jax.random.split(k)
        batch = take(data, draw_indices(k_batch, alive, batch_size))
        return sampler.step(k_step, st, batch, n, lr, decay)

    def grad_step(st, k):  # one sampler step, then the forget gradient at the new position
        st = sample(st, k)
        return st, jax.grad(energy.forget)(st.position, forget_batch)

    k_v, k_rec = jax.random.split(key)
    sampler_state, grads = jax.lax.scan(grad_step, sampler_state, jax.random.split(k_v, samp_T))
    v = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)

    def scaled_energy(p, batch):
        return scale * energy.energy(p, batch, n)

    def recursion_step(carry, k):
        st, h = carry

        def inner(st_in, kk):  # sampler step on batch A, HVP on a different batch B at the new position
            k_samp, k_hvp = jax.random.split(kk)
            st_in = sample(st_in, k_samp)
            batch_b = take(data, draw_indices(k_hvp, alive, batch_size))
            return st_in, curvature.hvp(scaled_energy, st_in.position, h, batch_b)

        st, hvps = jax.lax.scan(inner, st, jax.random.split(k, samp_T))
        h_new = jax.tree.map(lambda vv, hh, hv: vv + hh - jnp.mean(hv, axis=0), v, h, hvps)
        return (st, h_new), otu.tree_norm(h_new)

    (sampler_state, h), norms = jax.lax.scan(recursion_step, (sampler_state, v), jax.random.split(k_rec, iter_T))
    if check:
        bound = 2.0 * (iter_T + 1) * otu.tree_norm(v)
        raise_if(~jnp.all(jnp.isfinite(norms)) | (norms[-1] > bound), _divergence, norms[-1], bound)
    delta = jax.tree.map(lambda x: scale * x, h)
    return MCMCInfluence(delta, sampler_state, norms)


def _make_init(sampler: Sampler, batch_size: int, depth: int):
    def init(
        params: Any, data: Any, *, key: jax.Array, lr: float, decay: float = 1.0,
        sampler_state: SamplerState | None = None,
    ) -> MCMCForgettingState:
        """``data``: everything the chain conditions on; ``lr``, ``decay``: the step size the sampler continues
        at (the end of training: ``eta = lr * decay``); ``sampler_state``: the training chain's state (SGHMC
        velocity and step count), default a fresh ``sampler.init(params)``."""
        check_finite(params, "params")
        size = num_examples(data, "data")
        if batch_size > size:
            raise ValueError(f"batch_size={batch_size} exceeds the {size} points of data; lower batch_size.")
        if not lr > 0:
            raise ValueError(f"lr must be positive (the sampler's step size before decay), got {lr}.")
        if sampler_state is None:
            sampler_state = sampler.init(params)
        else:
            check_same_structure(params, sampler_state.position, "params", "sampler_state.position")
        data = jax.tree.map(jnp.asarray, data)
        return MCMCForgettingState(
            sampler_state._replace(position=params), data, all_alive(data), jnp.asarray(size, jnp.int32),
            jnp.asarray(lr, jnp.float32), jnp.asarray(decay, jnp.float32), key, jnp.zeros((depth,)),
        )

    return init


def _after_removal(state: MCMCForgettingState, alive, count: int, rescale: bool):
    n_new = (state.n - count).astype(jnp.int32)
    lr = state.lr * (state.n / jnp.maximum(n_new, 1)) if rescale else state.lr
    return alive, n_new, lr.astype(jnp.float32)


def mcmc_forgetting(
    energy: Energy,
    sampler: Sampler,
    *,
    scaling0: float,
    iter_T: int,
    samp_T: int,
    batch_size: int,
    rescale_step_size: bool = True,
    check: bool = True,
) -> Unlearner:
    """MCMC forgetting as an :class:`~jaxunlearn.methods.base.Unlearner` (module docstring).

    ``init(params, data, *, key, lr, decay=1.0, sampler_state=None) -> MCMCForgettingState``.
    ``update(params, forget_idx, state) -> (params, state)``: ``forget_idx`` a
    1-D integer array of indices into ``data`` (one chunk of ``rm_bs``
    points); the returned params are the corrected chain position, which the
    state's sampler continues from. Jittable.
    """
    if scaling0 <= 0 or iter_T < 1 or samp_T < 1 or batch_size < 1:
        raise ValueError(
            f"need scaling0 > 0, iter_T >= 1, samp_T >= 1, batch_size >= 1; got {scaling0}, {iter_T}, {samp_T}, "
            f"{batch_size}."
        )

    def update(params: Any, forget_idx: Any, state: MCMCForgettingState) -> tuple[Any, MCMCForgettingState]:
        check_finite(params, "params")
        alive = remove(state.alive, forget_idx)
        key, sub = jax.random.split(state.key)
        result = mcmc_influence(
            energy, sampler, state.sampler._replace(position=params), take(state.data, forget_idx), state.data,
            state.alive, state.n, state.lr, state.decay, sub,
            scaling0=scaling0, iter_T=iter_T, samp_T=samp_T, batch_size=batch_size, check=check,
        )
        new_params = jax.tree.map(jnp.add, result.sampler.position, result.delta)
        alive, n_new, lr = _after_removal(state, alive, jnp.asarray(forget_idx).shape[0], rescale_step_size)
        new_state = MCMCForgettingState(
            result.sampler._replace(position=new_params), state.data, alive, n_new, lr, state.decay, key,
            result.norms,
        )
        return new_params, new_state

    return Unlearner(_make_init(sampler, batch_size, iter_T), update)


def importance_sampling(
    sampler: Sampler,
    *,
    num_steps: int,
    batch_size: int,
    rescale_step_size: bool = True,
) -> Unlearner:
    """Baseline: per removed chunk, remove it, rescale ``lr`` by ``n_old / n_new``, then ``num_steps`` sampler
    steps on the remaining data (ICLR'22 ``finetune.py``, 1000 steps). Same ``init``/state as :func:`mcmc_forgetting`."""
    if num_steps < 1 or batch_size < 1:
        raise ValueError(f"need num_steps >= 1 and batch_size >= 1, got {num_steps} and {batch_size}.")

    def update(params: Any, forget_idx: Any, state: MCMCForgettingState) -> tuple[Any, MCMCForgettingState]:
        check_finite(params, "params")
        alive = remove(state.alive, forget_idx)
        alive, n_new, lr = _after_removal(state, alive, jnp.asarray(forget_idx).shape[0], rescale_step_size)
        key, sub = jax.random.split(state.key)

        def body(st, k):
            k_batch, k_step = jax.random.split(k)
            batch = take(state.data, draw_indices(k_batch, alive, batch_size))
            return sampler.step(k_step, st, batch, n_new, lr, state.decay), None

        st, _ = jax.lax.scan(body, state.sampler._replace(position=params), jax.random.split(sub, num_steps))
        return st.position, MCMCForgettingState(st, state.data, alive, n_new, lr, state.decay, key, state.last_norms)

    return Unlearner(_make_init(sampler, batch_size, 1), update)
