"""MCMC forgetting / MCMC unlearning and the importance-sampling baseline.

Fu, He, Xu & Tao, "Bayesian Inference Forgetting" (2021), ``sgmcmcForgetter``,
and Fu, He & Tao, "Knowledge Removal in Sampling-based Bayesian Inference"
(ICLR 2022), ``sgmcmcUnlearner.remove`` (the same algorithm). The chain's
distribution is treated as the optimum of an energy-based problem, so removing ``S'`` moves it by the *MCMC
influence function* ``-H^{-1} E[grad sum_{S'} h]`` with both expectations
taken along the chain::

    v   = (1/samp_T) sum_j grad_theta sum_{z in S'} h(theta_j, z)       theta_j: after one sampler step each
    h_0 = v
    h_t = v + h_{t-1} - (1/samp_T) sum_j s H_hat_{B_j}(theta_j) h_{t-1},  t = 1..iter_T
          (for each j: one sampler step on a batch A_j, then an HVP on a *different* batch B_j at the new theta_j)
    theta <- theta + s h_T

with ``s = scaling0 / n`` and ``n`` the count *before* the removal. The
sampler batches and the HVP batches are drawn from the points alive before the
request, which still contain ``S'``; afterwards ``S'`` is removed, ``n`` set to
the count of alive points and, in the ICLR'22 BNN runs, the step size rescaled ``lr <- lr * n_old / n_new``
(keeps ``lr * n`` fixed; the GMM scripts do not rescale:
``rescale_step_size=False``). The correction is added after
``samp_T * (1 + iter_T)`` sampler steps on the remaining set, so part of the
forgetting is continued sampling, exactly as in the originals. The sampler
continues with the step size and friction it had at the end of training
(the configuration's ``lr`` and ``decay``: ``eta = lr * decay``), as the
originals restore them from the training checkpoint.

**Why not** :func:`jaxunlearn.curvature.lissa`: LiSSA runs a plain Neumann
recursion at a *fixed* point ``params`` over a batch sequence known up front.
Here the point at which each HVP is taken moves: the sampler state (position,
SGHMC velocity) is part of the recursion's carry, and every recursion step
averages ``samp_T`` HVPs at ``samp_T`` successive chain states. So the
recursion is its own loop (:func:`jaxunlearn.train.loop.scan_steps` over
``iter_T``, with an inner one over ``samp_T``), built on
:func:`jaxunlearn.curvature.hvp`. Its divergence
check is LiSSA's bound ``||h_T|| <= 2 (iter_T + 1) ||v||`` and raises
:class:`jaxunlearn.curvature.LissaDivergenceError`.

The **importance-sampling baseline** (ICLR'22 ``finetune.py``): for each
removed chunk, remove it, rescale the step size, then take ``num_steps``
further SG-MCMC steps (1000 in the original) on the remaining data
(:func:`importance_sampling`).

**Randomness** of one request: ``k_batches, k_noise = jax.random.split(key)``.
The minibatch indices come from ``k_batches``, as shuffled epochs over the alive points, the originals'
loader (:func:`draw_mcmc_batches` for MCMC forgetting, ``bayes.shuffled_batches(k_batches, alive_after,
num_steps, batch_size)`` for the baseline); the sampler noise of the ``i``-th step of
phase ``j`` uses ``jax.random.split(k_noise, (1 + iter_T, samp_T))[j, i]``
(``jax.random.split(k_noise, num_steps)[i]`` for the baseline). ``update(...,
batches=...)`` replaces only the indices (:class:`MCMCBatches`, or int
``[num_steps, batch_size]`` for the baseline); the sampler noise stays keyed.

Defaults of the originals: GMM ``scaling0 = 1, iter_T = 32, samp_T = 5, rm_bs = 4, batch 64``;
BIF Fashion-MNIST SGLD ``scaling0 = 0.005``, SGHMC ``0.05``, ``iter_T = 64, samp_T = 5, rm_bs = 64, batch 128``;
ICLR'22 BNN ``scaling0 = 0.05`` (Fashion) / ``0.08`` (CIFAR-10), ``iter_T = 64, samp_T = 1``.

Example (runnable; ``tests/docs/test_docstring_examples.py`` runs it)::

    import jax, jax.numpy as jnp
    from jaxunlearn import bayes, data, methods

    gmm = data.make_gmm2d(2000)                                   # the GMM experiment's data, embedded
    x, clusters = jnp.asarray(gmm.dataset.x), gmm.dataset.y
    energy = bayes.gmm_energy(prior_std=2.0)
    sampler = bayes.sgld(energy.energy)
    chain = jax.jit(lambda st, k: bayes.run_chain(sampler, k, st, x, lr=4 / 2000, num_steps=2000, batch_size=64)[0])
    trained = chain(sampler.init(jnp.zeros((4, 2))), jax.random.key(0))  # the posterior over the 4 centres

    forgetter = methods.mcmc_forgetting(energy, sampler, lr=4 / 2000, scaling0=1.0, iter_T=32, samp_T=5,
                                        batch_size=64)
    state = forgetter.init(trained.position, x, key=jax.random.key(1), sampler_state=trained)
    request = jnp.flatnonzero(clusters == 0)[:40]                 # forget 40 points of cluster 0
    means, state, info = forgetter.update(trained.position, request, state, key=jax.random.key(2))
    print(means.round(2), int(state.n), float(info.norms[-1]))
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu

from jaxunlearn import curvature
from jaxunlearn._validation import check_fits_model, check_number, check_positive_int, check_same_structure, raise_if
from jaxunlearn.bayes.energies import Energy
from jaxunlearn.data.minibatch import check_batch_size, check_batches, shuffled_batches, take
from jaxunlearn.bayes.samplers import Sampler, SamplerState
from jaxunlearn.methods import base
from jaxunlearn.train.loop import scan_steps

__all__ = [
    "ImportanceSamplingInfo", "MCMCBatches", "MCMCForgettingInfo", "MCMCForgettingState", "MCMCInfluence",
    "draw_mcmc_batches", "importance_sampling", "mcmc_forgetting", "mcmc_influence",
]


class MCMCForgettingState(NamedTuple):
    """State carried between removal requests (the same for :func:`importance_sampling`).

    ``sampler``: the chain's :class:`~jaxunlearn.bayes.samplers.SamplerState`
    (its position is replaced by ``params`` at each update); ``store``: the
    data given to ``init`` and the ``alive`` mask; ``n``: int32 count of alive
    points; ``lr``: base step size (``eta = lr * decay``), rescaled after
    removals when asked.
    """

    sampler: SamplerState
    store: base.DataState
    n: jax.Array
    lr: jax.Array


class MCMCForgettingInfo(NamedTuple):
    """``norms``: ``||h_t||`` of the request's recursion, ``[iter_T]``."""

    norms: jax.Array


class ImportanceSamplingInfo(NamedTuple):
    """``drift``: ``||theta_t - theta_0||`` after each of the request's ``num_steps`` sampler steps."""

    drift: jax.Array


class MCMCBatches(NamedTuple):
    """Minibatch indices of one MCMC forgetting request (indices into the data given to ``init``).

    ``sample``: int ``[1 + iter_T, samp_T, B]``, the sampler steps' batches (row 0:
    the steps that estimate ``v``; row ``t``: the steps of recursion step ``t``);
    ``hvp``: int ``[iter_T, samp_T, B]``, the HVP batches.
    """

    sample: jax.Array
    hvp: jax.Array


class MCMCInfluence(NamedTuple):
    """``delta``: the correction ``s h_T`` (pytree like params); ``sampler``: the chain state after the
    ``samp_T (1 + iter_T)`` steps (its position *without* the correction); ``norms``: ``||h_t||`` ``[iter_T]``."""

    delta: Any
    sampler: SamplerState
    norms: jax.Array


def _divergence(last, growth, bound):
    return curvature.LissaDivergenceError(
        f"the MCMC influence recursion diverged: its increments ||h_t - h_(t-1)|| grew {float(growth):.3g}x from "
        f"the first to the last quarter of the steps (a convergent Neumann series shrinks them) and ||h|| reached "
        f"{float(last):.4g} (bound {float(bound):.4g}). Lower scaling0 (s * lambda_max(H) must stay below 2), or "
        "lower the sampler's step size so the chain stays near the mode."
    )


def draw_mcmc_batches(key: jax.Array, alive: jax.Array, iter_T: int, samp_T: int, batch_size: int) -> MCMCBatches:
    """The :class:`MCMCBatches` of one request: consecutive batches of one shuffled loader over the ``alive`` points.

    The originals draw every batch of a request from one shuffled ``drop_last`` loader of the
    points alive before it, in the order they are used: the ``samp_T`` sampler batches that
    estimate ``v``, then for each recursion step ``samp_T`` pairs (sampler batch ``A``, HVP batch
    ``B``, the next one: a different batch). So ``rows = shuffled_batches(key, alive, samp_T (1 +
    2 iter_T), batch_size)`` (:func:`jaxunlearn.data.minibatch.shuffled_batches`, ``O(batch_size)``
    per batch); ``sample[0] = rows[:samp_T]`` and, with ``rest = rows[samp_T:]`` as
    ``[iter_T, samp_T, 2, B]``, ``sample[1:] = rest[:, :, 0]`` and ``hvp = rest[:, :, 1]``.
    """
    rows = shuffled_batches(key, alive, samp_T * (1 + 2 * iter_T), batch_size)
    rest = rows[samp_T:].reshape(iter_T, samp_T, 2, -1)
    return MCMCBatches(jnp.concatenate([rows[None, :samp_T], rest[:, :, 0]]), rest[:, :, 1])


def mcmc_influence(
    energy: Energy,
    sampler: Sampler,
    sampler_state: SamplerState,
    forget_batch: Any,
    data: Any,
    batches: MCMCBatches,
    n: Any,
    lr: Any,
    decay: Any,
    key: jax.Array,
    *,
    scaling0: float,
    check: bool = True,
) -> MCMCInfluence:
    """The MCMC influence recursion of the module docstring, interleaved with sampler steps.

    ``energy`` must be deterministic (an SG-MCMC energy); ``sampler`` is built
    on ``energy.energy``; ``batches`` (:class:`MCMCBatches`) index ``data`` and
    fix ``iter_T`` and ``samp_T``; ``n`` is the count the energy uses and
    ``s = scaling0 / n``; ``key`` is the sampler-noise key (step ``i`` of phase
    ``j`` uses ``jax.random.split(key, (1 + iter_T, samp_T))[j, i]``). Pure and jittable.
    """
    iter_T, samp_T = batches.hvp.shape[:2]
    scale = jnp.asarray(scaling0, jnp.float32) / n
    keys = jax.random.split(key, (1 + iter_T, samp_T))

    def sample(st, idx, k):
        return sampler.step(k, st, take(data, idx), n, lr, decay)

    def grad_step(st, idx_key):  # one sampler step, then the forget gradient at the new position
        st = sample(st, *idx_key)
        return st, jax.grad(energy.forget)(st.position, forget_batch)

    sampler_state, grads = scan_steps(grad_step, sampler_state, (batches.sample[0], keys[0]))
    v = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)

    def scaled_energy(p, batch):
        return scale * energy.energy(p, batch, n)

    def recursion_step(carry, xs):
        st, h = carry

        def inner(st_in, x):  # sampler step on batch A, HVP on a different batch B at the new position
            idx_a, idx_b, k = x
            st_in = sample(st_in, idx_a, k)
            return st_in, curvature.hvp(scaled_energy, st_in.position, h, take(data, idx_b))

        st, hvps = scan_steps(inner, st, xs)
        h_new = jax.tree.map(lambda vv, hh, hv: vv + hh - jnp.mean(hv, axis=0), v, h, hvps)
        return (st, h_new), (otu.tree_norm(h_new), otu.tree_norm(otu.tree_sub(h_new, h)))

    (sampler_state, h), (norms, increments) = scan_steps(recursion_step, (sampler_state, v),
                                                         (batches.sample[1:], batches.hvp, keys[1:]))
    if check:  # LiSSA's criteria: increments that grow (slow divergence), or ||h_T|| beyond a convergent bound
        growth = curvature.increment_growth(increments)
        bound = 2.0 * (iter_T + 1) * otu.tree_norm(v)
        last = norms[jnp.maximum(jnp.sum(jnp.cumprod(jnp.isfinite(norms))) - 1, 0)]
        raise_if((growth > curvature.GROWTH_LIMIT) | (norms[-1] > bound), _divergence, last, growth, bound)
    delta = jax.tree.map(lambda x: scale * x, h)
    return MCMCInfluence(delta, sampler_state, norms)


def _config_number(value: Any, name: str) -> float:
    """A positive step-size setting as a Python float; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0:
        value = float(value)
    return check_number(value, name, low=0.0, low_inclusive=False)


def _make_init(sampler: Sampler, batch_size: int, lr: float, decay: float):
    def init(params: Any, data: Any, *, key: jax.Array, sampler_state: SamplerState | None = None
             ) -> MCMCForgettingState:
        """``data``: everything the chain conditions on; ``sampler_state``: the training chain's state
        (SGHMC velocity and step count), default a fresh ``sampler.init(params)``; ``key`` only serves
        the shape check of ``data`` (one sampler step, evaluated abstractly)."""
        store = base.init_data_state(data, "data")
        check_batch_size(store.alive, batch_size)
        check_fits_model(lambda p, b: sampler.step(key, sampler.init(p), b, 1, lr, decay), params, store.data, "data")
        if sampler_state is None:
            sampler_state = sampler.init(params)
        else:
            check_same_structure(params, sampler_state.position, "params", "sampler_state.position")
        return MCMCForgettingState(sampler_state._replace(position=params), store,
                                   jnp.asarray(store.alive.shape[0], jnp.int32), jnp.asarray(lr, jnp.float32))

    return init


def _after_removal(state: MCMCForgettingState, req: base.Request, rescale: bool):
    """``(store, n, lr)`` after the request: ``n`` the count of alive points, ``lr * n_old / n_new`` if asked."""
    n_new = jnp.sum(req.retain).astype(jnp.int32)
    lr = state.lr * (state.n / jnp.maximum(n_new, 1)) if rescale else state.lr
    return state.store._replace(alive=req.retain), n_new, lr.astype(jnp.float32)


def mcmc_forgetting(
    energy: Energy,
    sampler: Sampler,
    *,
    lr: float,
    decay: float = 1.0,
    scaling0: float,
    iter_T: int,
    samp_T: int,
    batch_size: int,
    rescale_step_size: bool = True,
    check: bool = True,
) -> base.Unlearner:
    """MCMC forgetting as an :class:`~jaxunlearn.methods.base.Unlearner` (module docstring).

    Args:
      energy: a deterministic energy (:func:`jaxunlearn.bayes.bnn_energy`, :func:`jaxunlearn.bayes.gmm_energy`).
      sampler: the chain's sampler, built on ``energy.energy``.
      lr, decay: the step size the chain continues at (the end of training: ``eta = lr * decay``; both ``> 0``).
      scaling0: ``s * n`` of the recursion (``> 0``). iter_T: recursion depth.
      samp_T: sampler steps (and HVPs) averaged per recursion step. batch_size: minibatch size.
      rescale_step_size: ``lr <- lr * n_old / n_new`` after each request (ICLR'22 BNN runs).
      check: raise :class:`jaxunlearn.curvature.LissaDivergenceError` when the recursion diverges.

    Returns:
      ``Unlearner(init, update)``:

      * ``init(params, data, *, key, sampler_state=None) -> MCMCForgettingState``.
      * ``update(params, request, state, *, key, batches=None) -> (params, state, MCMCForgettingInfo)``:
        ``request`` a 1-D int array of indices into ``data`` (one chunk); the returned
        params are the corrected chain position, which the state's sampler continues
        from. ``batches`` (optional :class:`MCMCBatches`) injects the minibatch
        indices, each of a point alive before the request; the sampler noise stays
        keyed. The request computation is jitted once, here.
    """
    if energy.stochastic:
        raise ValueError("energy is stochastic (a variational network): MCMC forgetting needs a point-weight energy.")
    lr = _config_number(lr, "lr")
    decay = _config_number(decay, "decay")
    scaling0 = check_number(scaling0, "scaling0", low=0.0, low_inclusive=False)
    iter_T = check_positive_int(iter_T, "iter_T")
    samp_T = check_positive_int(samp_T, "samp_T")
    batch_size = check_positive_int(batch_size, "batch_size")
    shape = (1 + iter_T, samp_T, batch_size), (iter_T, samp_T, batch_size)

    def request_fn(params, request, state, key, batches=None):
        """One removal: sampler steps interleaved with the recursion, then ``theta + s h_T`` (module docstring)."""
        req = base.open_request(state.store, request)
        k_batches, k_noise = jax.random.split(key)
        if batches is None:
            batches = draw_mcmc_batches(k_batches, req.before, iter_T, samp_T, batch_size)
        else:
            if not isinstance(batches, MCMCBatches):
                raise TypeError(f"batches must be an MCMCBatches(sample, hvp); got {type(batches).__name__}.")
            batches = MCMCBatches(*(check_batches(b, req.before, s, f"batches.{name}")
                                    for b, s, name in zip(batches, shape, MCMCBatches._fields)))
        result = mcmc_influence(
            energy, sampler, state.sampler._replace(position=params), req.forget, state.store.data, batches,
            state.n, state.lr, decay, k_noise, scaling0=scaling0, check=check,
        )
        new_params = jax.tree.map(jnp.add, result.sampler.position, result.delta)
        store, n_new, new_lr = _after_removal(state, req, rescale_step_size)
        new_state = MCMCForgettingState(result.sampler._replace(position=new_params), store, n_new, new_lr)
        return new_params, new_state, MCMCForgettingInfo(result.norms)

    return base.make_unlearner(_make_init(sampler, batch_size, lr, decay), request_fn, MCMCForgettingState)


def importance_sampling(
    sampler: Sampler,
    *,
    lr: float,
    decay: float = 1.0,
    num_steps: int,
    batch_size: int,
    rescale_step_size: bool = True,
) -> base.Unlearner:
    """Baseline: per removed chunk, remove it, rescale ``lr`` by ``n_old / n_new``, then ``num_steps`` sampler
    steps on the remaining data (ICLR'22 ``finetune.py``, 1000 steps).

    Same configuration, ``init`` and state as :func:`mcmc_forgetting`;
    ``update(params, request, state, *, key, batches=None) -> (params, state, ImportanceSamplingInfo)``,
    ``batches`` (optional, int ``[num_steps, batch_size]``) injecting the minibatch
    indices, each of a point alive after the request.
    """
    lr = _config_number(lr, "lr")
    decay = _config_number(decay, "decay")
    num_steps = check_positive_int(num_steps, "num_steps")
    batch_size = check_positive_int(batch_size, "batch_size")

    def request_fn(params, request, state, key, batches=None):
        """One removal: drop the points, rescale ``lr``, then ``num_steps`` sampler steps on the rest."""
        req = base.open_request(state.store, request)
        store, n_new, new_lr = _after_removal(state, req, rescale_step_size)
        k_batches, k_noise = jax.random.split(key)
        if batches is None:
            idx = shuffled_batches(k_batches, req.retain, num_steps, batch_size)
        else:
            idx = check_batches(batches, req.retain, (num_steps, batch_size))

        def body(st, x):
            i, k = x
            st = sampler.step(k, st, take(store.data, i), n_new, new_lr, decay)
            diff = jax.tree.map(jnp.subtract, st.position, params)
            return st, otu.tree_norm(diff)

        keys = jax.random.split(k_noise, num_steps)
        st, drift = scan_steps(body, state.sampler._replace(position=params), (idx, keys))
        return st.position, MCMCForgettingState(st, store, n_new, new_lr), ImportanceSamplingInfo(drift)

    return base.make_unlearner(_make_init(sampler, batch_size, lr, decay), request_fn, MCMCForgettingState)
