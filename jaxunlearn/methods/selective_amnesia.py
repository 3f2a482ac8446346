"""Selective Amnesia for a conditional VAE (Heng & Soh, NeurIPS 2023, arXiv 2305.10120).

Forget class ``c_f`` of a trained one-hot CVAE with parameters ``theta*`` by
continual learning in reverse: minimise, per step,

    L(theta) = l_VAE(theta; x_f, c_f)                      surrogate: x_f ~ U[0, 1]^D, labelled c_f
             + gamma * l_VAE(theta; x_r, c_r)              generative replay of the remaining classes
             + lambda * sum_i F_i (theta_i - theta*_i)^2   EWC (no 1/2 factor, as the original)

with ``c_r ~ Uniform(remaining classes)``, ``x_r = decoder_{theta*}(z, c_r)``,
``z ~ N(0, I)`` (the frozen original's mean images), ``l_VAE`` the summed
BCE + KL of :mod:`jaxunlearn.models.cvae`, and ``F`` the diagonal Fisher of
:func:`sa_fisher_diagonal`. Defaults are the original's (``train_forget.py``):
lambda 100, gamma 1, Adam 1e-4, batch 256, 10 000 steps.

Sequential forgetting (several requests one after another, seed 003's
experiment): the state carries ``theta*`` and ``F`` of the **original** model
and the set ``S`` of classes forgotten so far. Request ``k`` draws the
surrogate's labels uniformly from ``S`` (all classes forgotten so far, not only
the newest, so the EWC pull towards ``theta*`` cannot bring an earlier class
back) and replays only classes outside ``S``. For a single request this is
exactly the original.

Two gradient-projection variants (seed 003 compares them with SA; our exact
definitions, in the spirit of PCGrad, Yu et al. 2020, and A-GEM, Chaudhry et
al. 2019). Write ``g_f = grad l_VAE(theta; x_f, c_f)`` and
``g_r = grad [gamma l_VAE(theta; x_r, c_r) + lambda EWC(theta)]``, flattened
over all parameters, and ``d = <g_f, g_r>``:

* ``"symmetric_projection"``: when the two conflict (``d < 0``) each is
  projected off the other's direction, both from the unprojected pair,
  ``g_f' = g_f - d / |g_r|^2 g_r``, ``g_r' = g_r - d / |g_f|^2 g_f``
  (``d >= 0``: unchanged); the optimiser receives ``g_f' + g_r'``.
* ``"alternating_projection"``: even steps feed ``g_f'``, odd steps ``g_r'``
  (the same projections) to the optimiser, one at a time.
* ``"sa"`` (default): the plain gradient of ``L``, ``g_f + g_r``.

Seed 003 ran the projection variants without EWC (the projection replaces the
penalty); pass ``lmbda=0`` for that.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from jaxunlearn._validation import check_finite, check_same_structure
from jaxunlearn.amnesia.loop import scan_loop
from jaxunlearn.curvature import fisher_diagonal
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.models.cvae import CVAE, decode, one_hot, vae_loss

VARIANTS = ("sa", "symmetric_projection", "alternating_projection")


class SABatch(NamedTuple):
    """One step's data. ``x_f`` (B, D) noise, ``c_f`` (B,) forgotten labels, ``eps_f`` (B, z);
    ``x_r`` (B, D) replayed images, ``c_r`` (B,) remaining labels, ``eps_r`` (B, z)."""

    x_f: jax.Array
    c_f: jax.Array
    eps_f: jax.Array
    x_r: jax.Array
    c_r: jax.Array
    eps_r: jax.Array


class SALossTerms(NamedTuple):
    """``total = forget + gamma * replay + lmbda * ewc`` (scalars; ``ewc`` is ``sum F (theta - theta*)^2``)."""

    total: jax.Array
    forget: jax.Array
    replay: jax.Array
    ewc: jax.Array


class SALog(NamedTuple):
    """Per-step log of one request, numpy arrays of shape (num_steps,): the loss terms, the norm of the
    gradient given to the optimiser and the cosine between ``g_f`` and ``g_r`` (NaN for ``"sa"``)."""

    total: np.ndarray
    forget: np.ndarray
    replay: np.ndarray
    ewc: np.ndarray
    grad_norm: np.ndarray
    cosine: np.ndarray


class SAState(NamedTuple):
    """``params_star`` and ``fisher`` (pytrees like params) of the original model, ``forgotten`` (C,) bool,
    the PRNG ``key`` of the next request and the ``log`` of the last one (``None`` before any)."""

    params_star: Any
    fisher: Any
    forgotten: jax.Array
    key: jax.Array
    log: SALog | None = None


def sample_fisher_inputs(module: CVAE, key: jax.Array, num_samples: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The Fisher's draws ``(z (N, z_dim), c (N,) uniform over all classes, eps (N, z_dim))``."""
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int (50_000 in the original), got {num_samples!r}.")
    kz, kc, ke = jax.random.split(key, 3)
    z = jax.random.normal(kz, (num_samples, module.z_dim))
    c = jax.random.randint(kc, (num_samples,), 0, module.num_classes)
    eps = jax.random.normal(ke, (num_samples, module.z_dim))
    return z, c, eps


def sa_fisher_diagonal(
    module: CVAE, params: Any, key: jax.Array, *, num_samples: int = 50_000, chunk_size: int = 128
) -> Any:
    """Diagonal Fisher of the VAE loss from model samples (``calculate_fim.py`` of the original).

    ``F_i = (1/N) sum_n (d l_VAE(theta; x_n, c_n, eps_n) / d theta_i)^2`` at ``theta = params``, where
    ``c_n ~ Uniform{0..C-1}`` (all classes, the later forgotten one included), ``z_n, eps_n ~ N(0, I)``
    and ``x_n = decoder_theta(z_n, c_n)`` is the Bernoulli mean image (not binarised, no gradient through
    it). Per-example squared gradients by :func:`jaxunlearn.curvature.fisher_diagonal` (``vmap`` of
    ``grad`` in chunks of ``chunk_size``), so memory is ``chunk_size x num_params`` whatever ``N``.

    Returns a pytree like ``params``.
    """
    check_finite(params)
    z, c, eps = sample_fisher_inputs(module, key, num_samples)

    def loss(p, batch):
        zb, cb, eb = batch
        cond = one_hot(cb, module.num_classes)
        x = jax.lax.stop_gradient(decode(module, p, zb, cond))
        return vae_loss(module, p, x, cond, eb)

    fn = jax.jit(lambda p, data: fisher_diagonal(loss, p, data, estimator="empirical", batch_size=chunk_size))
    return fn(params, (z, c, eps))


def ewc_penalty(params: Any, params_star: Any, fisher: Any) -> jax.Array:
    """``sum_i F_i (theta_i - theta*_i)^2`` over every leaf (no 1/2 factor, as the original)."""
    return sum(
        jnp.sum(f * (p - q) ** 2)
        for p, q, f in zip(jax.tree.leaves(params), jax.tree.leaves(params_star), jax.tree.leaves(fisher))
    )


def _draw_labels(key: jax.Array, mask: jax.Array, n: int) -> jax.Array:
    """``n`` labels uniform over the classes where ``mask`` (C,) is true."""
    return jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf), shape=(n,))


def sample_sa_batch(
    module: CVAE, params_star: Any, key: jax.Array, forgotten: jax.Array, batch_size: int
) -> SABatch:
    """Draw one step's surrogate (noise, forgotten labels) and generative-replay batch from ``params_star``.

    ``forgotten`` (C,) bool: surrogate labels are uniform over its true entries, replay labels over the rest.
    """
    kxf, kcf, kef, kz, kcr, ker = jax.random.split(key, 6)
    x_f = jax.random.uniform(kxf, (batch_size, module.x_dim))
    c_f = _draw_labels(kcf, forgotten, batch_size)
    c_r = _draw_labels(kcr, ~forgotten, batch_size)
    z = jax.random.normal(kz, (batch_size, module.z_dim))
    x_r = jax.lax.stop_gradient(decode(module, params_star, z, one_hot(c_r, module.num_classes)))
    eps_f = jax.random.normal(kef, (batch_size, module.z_dim))
    eps_r = jax.random.normal(ker, (batch_size, module.z_dim))
    return SABatch(x_f, c_f, eps_f, x_r, c_r, eps_r)


def forgetting_loss_terms(
    module: CVAE, params: Any, batch: SABatch, params_star: Any, fisher: Any, *, lmbda: float, gamma: float
) -> SALossTerms:
    """The three terms of the module doc and ``total = forget + gamma * replay + lmbda * ewc``."""
    c = module.num_classes
    forget = vae_loss(module, params, batch.x_f, one_hot(batch.c_f, c), batch.eps_f)
    replay = vae_loss(module, params, batch.x_r, one_hot(batch.c_r, c), batch.eps_r)
    ewc = ewc_penalty(params, params_star, fisher)
    return SALossTerms(forget + gamma * replay + lmbda * ewc, forget, replay, ewc)


def project_gradients(g_f: Any, g_r: Any) -> tuple[Any, Any, jax.Array]:
    """PCGrad-style mutual projection: ``(g_f', g_r', cos(g_f, g_r))`` (module doc); unchanged when ``<g_f, g_r> >= 0``."""
    d = otu.tree_vdot(g_f, g_r)
    nf, nr = otu.tree_vdot(g_f, g_f), otu.tree_vdot(g_r, g_r)
    tiny = jnp.finfo(jnp.float32).tiny
    conflict = jnp.minimum(d, 0.0)
    g_f2 = otu.tree_add_scale(g_f, -conflict / jnp.maximum(nr, tiny), g_r)
    g_r2 = otu.tree_add_scale(g_r, -conflict / jnp.maximum(nf, tiny), g_f)
    cos = d / jnp.maximum(jnp.sqrt(nf * nr), tiny)
    return g_f2, g_r2, cos


def _check_class_list(forget_class: Any, num_classes: int) -> list[int]:
    classes = [forget_class] if np.ndim(forget_class) == 0 else list(np.asarray(forget_class).ravel())
    if not classes:
        raise ValueError("forget_class is empty: pass a class index or a list of class indices.")
    out = []
    for c in classes:
        if not np.issubdtype(np.asarray(c).dtype, np.integer):
            raise TypeError(f"forget_class must hold integer class indices, got {c!r}.")
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"forget_class must lie in [0, {num_classes}), got {int(c)}.")
        out.append(int(c))
    return out


def selective_amnesia(
    module: CVAE,
    *,
    lmbda: float = 100.0,
    gamma: float = 1.0,
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int = 256,
    num_steps: int = 10_000,
    num_fisher_samples: int = 50_000,
    fisher_chunk_size: int = 128,
    variant: str = "sa",
    chunk_size: int = 500,
    progress: bool = True,
) -> Unlearner:
    """Selective Amnesia as an :class:`Unlearner` for a :class:`~jaxunlearn.models.cvae.CVAE`.

    ``init(params, retain_data=None, *, key, fisher=None) -> SAState``: freezes ``theta* = params`` and
    computes ``F`` (:func:`sa_fisher_diagonal`, ``num_fisher_samples`` model samples) unless ``fisher``
    is given. ``retain_data`` is not used: the remaining classes are replayed from the model itself.

    ``update(params, forget_class, state, *, key=None) -> (params, state)``: one request, a class index
    (or several at once); ``num_steps`` optimiser steps of the module doc's objective with ``optimizer``
    (default ``optax.adam(1e-4)``, fresh for each request as in the original). ``key`` defaults to the
    state's key. The returned state records the class in ``forgotten`` and the per-step ``log``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    for name, value in (("lmbda", lmbda), ("gamma", gamma)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    for name, value in (("batch_size", batch_size), ("num_steps", num_steps), ("chunk_size", chunk_size)):
        if not isinstance(value, (int, np.integer)) or value < (0 if name == "num_steps" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'num_steps' else 'positive'} int, got {value!r}.")
    opt = optimizer or optax.adam(1e-4)
    step = _make_step(module, opt, lmbda, gamma, batch_size, variant)  # one step function: compiled once, reused

    def init(params: Any, retain_data: Any = None, *, key: jax.Array | None = None, fisher: Any = None) -> SAState:
        del retain_data
        if key is None:
            raise ValueError("init needs key=jax.random.key(...): it samples the Fisher's model samples and the forgetting batches.")
        check_finite(params)
        kf, ks = jax.random.split(key)
        if fisher is None:
            fisher = sa_fisher_diagonal(module, params, kf, num_samples=num_fisher_samples, chunk_size=fisher_chunk_size)
        else:
            check_same_structure(params, fisher, "params", "fisher")
            check_finite(fisher, "fisher")
        params_star = jax.tree.map(jnp.asarray, params)
        return SAState(params_star, fisher, jnp.zeros((module.num_classes,), bool), ks, None)

    def update(params: Any, forget_class: Any, state: SAState, *, key: jax.Array | None = None) -> tuple[Any, SAState]:
        if not isinstance(state, SAState):
            raise TypeError(f"state must be the SAState returned by init, got {type(state).__name__}.")
        check_same_structure(state.params_star, params, "state.params_star", "params")
        check_finite(params)
        forgotten = np.asarray(state.forgotten).copy()
        forgotten[_check_class_list(forget_class, module.num_classes)] = True
        if forgotten.all():
            raise ValueError("forget_class would forget every class: at least one class must remain to be replayed.")
        forgotten = jnp.asarray(forgotten)
        if key is None:
            key, next_key = jax.random.split(state.key)
        else:
            next_key = state.key
        consts = (state.params_star, state.fisher, forgotten)
        (params, _, _, _), log = scan_loop(
            step, (params, opt.init(params), jnp.asarray(0), consts), num_steps, key=key, chunk_size=chunk_size,
            progress=progress, desc=f"selective amnesia ({variant})",
            postfix=lambda l: {"forget": f"{float(l.forget):.1f}", "replay": f"{float(l.replay):.1f}"},
        )
        check_finite(params)
        return params, SAState(state.params_star, state.fisher, forgotten, next_key, log)

    return Unlearner(init, update)


def _make_step(module, opt, lmbda, gamma, batch_size, variant):
    """The jittable step ``((params, opt_state, t, (params_star, fisher, forgotten)), key) -> (carry, SALog row)``."""

    def step(carry, key):
        params, opt_state, t, consts = carry
        params_star, fisher, forgotten = consts
        batch = sample_sa_batch(module, params_star, key, forgotten, batch_size)

        def terms(p):
            return forgetting_loss_terms(module, p, batch, params_star, fisher, lmbda=lmbda, gamma=gamma)

        if variant == "sa":
            (_, out), grads = jax.value_and_grad(lambda p: (lambda o: (o.total, o))(terms(p)), has_aux=True)(params)
            cos = jnp.asarray(jnp.nan)
        else:
            out, pullback = jax.vjp(terms, params)
            zero = jnp.zeros(())
            (g_f,) = pullback(SALossTerms(zero, jnp.ones(()), zero, zero))
            (g_r,) = pullback(SALossTerms(zero, zero, jnp.asarray(gamma, jnp.float32), jnp.asarray(lmbda, jnp.float32)))
            g_f, g_r, cos = project_gradients(g_f, g_r)
            if variant == "symmetric_projection":
                grads = otu.tree_add(g_f, g_r)
            else:
                grads = jax.tree.map(lambda a, b: jnp.where(t % 2 == 0, a, b), g_f, g_r)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        log = SALog(out.total, out.forget, out.replay, out.ewc, otu.tree_norm(grads), cos)
        return (params, opt_state, t + 1, consts), log

    return step
