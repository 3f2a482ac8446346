"""Selective Amnesia for a conditional VAE (Heng & Soh, NeurIPS 2023, arXiv 2305.10120).

Forget class ``c_f`` of a trained one-hot CVAE with parameters ``theta*`` by
continual learning in reverse: minimise, per step,

    L(theta) = l_VAE(theta; x_f, c_f)                      surrogate: x_f ~ U[0, 1]^D, labelled c_f
             + gamma * l_VAE(theta; x_r, c_r)              generative replay of the remaining classes
             + lambda * sum_i F_i (theta_i - theta*_i)^2   EWC (no 1/2 factor, as the original)

with ``c_r ~ Uniform(remaining classes)``, ``x_r = decoder_{theta*}(z, c_r)``,
``z ~ N(0, I)`` (the frozen original's mean images), ``l_VAE`` the summed
BCE + KL of :mod:`jaxunlearn.models.cvae`, and ``F`` the diagonal Fisher of
:func:`sa_fisher_diagonal`. Defaults are the original's (``train_forget.py``
of ``clear-nus/selective-amnesia/vae``): lambda 100, gamma 1, Adam 1e-4,
batch 256, 10 000 steps, 50 000 Fisher samples.

**Requests.** As for every method of :mod:`jaxunlearn.methods`, a request is a
1-D integer array of indices into the CVAE's training data ``(x, y)`` given to
``init``. SA forgets *classes*: a request forgets every class that its
examples belong to (``forgotten[y[request]] = True``). To forget class ``c``,
request the indices of its examples, ``jnp.flatnonzero(y == c)``
(:func:`class_request`). The training data itself is never trained on: the
surrogate is noise and the remaining classes are replayed from ``theta*``.

**Sequential forgetting** (several requests one after another): the state
carries ``theta*`` and ``F`` of the **original** model and the set ``S`` of
classes forgotten so far. Each request draws the surrogate's labels uniformly
from ``S`` (all classes forgotten so far, not only the newest, so the EWC pull
towards ``theta*`` cannot bring an earlier class back) and replays only
classes outside ``S``. For a single request this is exactly the original.

**Gradient-projection variants** (in the spirit of PCGrad, Yu et al. 2020, and
A-GEM, Chaudhry et al. 2019). Write ``g_f = grad l_VAE(theta; x_f, c_f)`` and
``g_r = grad [gamma l_VAE(theta; x_r, c_r) + lambda EWC(theta)]``, flattened
over all parameters, and ``d = <g_f, g_r>``:

* ``"symmetric_projection"``: when the two conflict (``d < 0``) each is
  projected off the other's direction, both from the unprojected pair,
  ``g_f' = g_f - d / |g_r|^2 g_r``, ``g_r' = g_r - d / |g_f|^2 g_f``
  (``d >= 0``: unchanged); the optimiser receives ``g_f' + g_r'``.
* ``"alternating_projection"``: even steps feed ``g_f'``, odd steps ``g_r'``
  (the same projections) to the optimiser, one at a time.
* ``"sa"`` (default): the plain gradient of ``L``, ``g_f + g_r``.

The projections are meant to replace the EWC penalty: pass ``lmbda=0`` to run
them without it.

Example (runnable; ``tests/docs/test_docstring_examples.py`` runs it)::

    import jax, numpy as np
    from jaxunlearn import amnesia, data, methods
    from jaxunlearn.methods.selective_amnesia import class_request
    from jaxunlearn.models.cvae import create_cvae, sample

    train_set, _ = data.load_digits()                              # pixels in [0, 1]
    x, y = train_set.x.reshape(len(train_set.y), -1), train_set.y
    module, params = create_cvae(jax.random.key(0), x_dim=64)
    params, _ = amnesia.train_cvae(module, params, x, y, key=jax.random.key(1), num_steps=100, progress=False)

    # the paper runs 10,000 steps and 50,000 Fisher samples; a short run shows the API
    sa = methods.selective_amnesia(module, num_steps=50, num_fisher_samples=500, progress=False)
    state = sa.init(params, (x, y), key=jax.random.key(2))       # theta* and the Fisher, once
    amnesiac, state, info = sa.update(params, class_request(y, 0), state, key=jax.random.key(3))   # forget digit 0
    zeros = sample(module, amnesiac, jax.random.key(4), np.zeros(8, int))   # what "draw a 0" gives now
    print(state.forgotten, float(info.forget[-1]), zeros.shape)
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from jaxunlearn import loops
from jaxunlearn._validation import (
    check_finite, check_number, check_positive_int, check_same_structure, keep_errors, raise_if, wait_for_errors,
)
from jaxunlearn.curvature import fisher_diagonal
from jaxunlearn.methods import base
from jaxunlearn.models.cvae import CVAE, CVAELoss, decode, one_hot, vae_loss
from jaxunlearn.train.loop import scan_steps

VARIANTS = ("sa", "symmetric_projection", "alternating_projection")
PER_EXAMPLE = ("layerwise", "vmap")


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


class SAInfo(NamedTuple):
    """Diagnostics of one request, JAX arrays of shape ``(num_steps,)``, one entry per optimiser step:
    the loss terms of :class:`SALossTerms` before the step, the norm of the gradient given to the optimiser
    and the cosine between ``g_f`` and ``g_r`` (NaN for ``variant="sa"``, which does not compute them apart)."""

    total: jax.Array
    forget: jax.Array
    replay: jax.Array
    ewc: jax.Array
    grad_norm: jax.Array
    cosine: jax.Array


class SAState(NamedTuple):
    """What later requests need.

    ``store``: the training data ``(x, y)`` and its ``alive`` mask (:class:`~jaxunlearn.methods.base.DataState`);
    ``params_star`` and ``fisher``: pytrees like params, the original model ``theta*`` and its diagonal
    Fisher ``F``; ``forgotten``: bool ``(C,)``, the classes forgotten so far (``S``).
    """

    store: base.DataState
    params_star: Any
    fisher: Any
    forgotten: jax.Array


def class_request(y: Any, forget_class: int | Sequence[int]) -> jax.Array:
    """The request that forgets ``forget_class`` (one class index or several): ``jnp.flatnonzero(isin(y, classes))``.

    ``y``: the labels ``(N,)`` of the data given to ``init``. Runs on concrete values (the
    request's length depends on them), not under ``jit``; build the request outside and pass it in.
    """
    classes = np.atleast_1d(np.asarray(forget_class))
    if classes.size == 0 or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"forget_class must be one class index or a list of them; got {forget_class!r}.")
    request = jnp.flatnonzero(jnp.isin(jnp.asarray(y), jnp.asarray(classes)))
    if request.shape[0] == 0:
        raise ValueError(f"no example of y has a label in {classes.tolist()}: nothing to forget.")
    return request


def sample_fisher_inputs(module: CVAE, key: jax.Array, num_samples: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The Fisher's draws ``(z (N, z_dim), c (N,) uniform over all classes, eps (N, z_dim))``."""
    num_samples = check_positive_int(num_samples, "num_samples")
    kz, kc, ke = jax.random.split(key, 3)
    z = jax.random.normal(kz, (num_samples, module.z_dim))
    c = jax.random.randint(kc, (num_samples,), 0, module.num_classes)
    eps = jax.random.normal(ke, (num_samples, module.z_dim))
    return z, c, eps


def _fisher_sample_loss(module: CVAE, params: Any, batch: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
    """``l_VAE(params; stop_gradient(decoder_params(z, c)), c, eps)`` of the Fisher's draws ``(z, c, eps)``."""
    z, c, eps = batch
    cond = one_hot(c, module.num_classes)
    x = jax.lax.stop_gradient(decode(module, params, z, cond))
    return vae_loss(module, params, x, cond, eps)


class _FisherSampleLoss(CVAELoss):
    """:class:`~jaxunlearn.models.cvae.CVAELoss` on the Fisher's draws ``(z, c, eps)``: each example is
    ``(stop_gradient(decoder_params(z, c)), onehot(c), eps)`` (per example, the loss of :func:`_fisher_sample_loss`)."""

    def vae_inputs(self, params, batch):
        z, c, eps = batch
        cond = one_hot(c, self.model.num_classes)
        return jax.lax.stop_gradient(decode(self.model, params, z, cond)), cond, eps


def sa_fisher_diagonal(
    module: CVAE,
    params: Any,
    key: jax.Array,
    *,
    num_samples: int = 50_000,
    chunk_size: int = 128,
    per_example: str = "layerwise",
) -> Any:
    """Diagonal Fisher of the VAE loss from model samples (``calculate_fim.py`` of the original).

    ``F_i = (1/N) sum_n (d l_VAE(theta; x_n, c_n, eps_n) / d theta_i)^2`` at ``theta = params``, where
    ``c_n ~ Uniform{0..C-1}`` (all classes, the later forgotten one included), ``z_n, eps_n ~ N(0, I)``
    (:func:`sample_fisher_inputs` with ``key``) and ``x_n = decoder_theta(z_n, c_n)`` is the Bernoulli
    mean image (not binarised, no gradient through it). :func:`jaxunlearn.curvature.fisher_diagonal`
    sums the squared per-example gradients in chunks of ``chunk_size`` samples, so memory stays bounded
    whatever ``N``.

    Args:
      module, params: the CVAE and the parameters ``theta`` the Fisher is taken at.
      key: PRNG key of the samples.
      num_samples: ``N`` (original: 50 000). chunk_size: samples per chunk.
      per_example: how the squared per-example gradients are formed: ``"layerwise"`` (default) by the
        per-layer formula ``sum_n (a_n^2)^T (delta_n^2)`` of every Dense layer
        (:class:`~jaxunlearn.models.cvae.CVAELoss`), never materialising a per-example gradient;
        ``"vmap"`` by ``vmap`` of ``grad`` (``chunk_size`` copies of every weight at a time), the
        general reference. Both compute the same ``F`` (to float32 rounding).

    Returns:
      a pytree like ``params``.

    Compiled once per configuration (``module``, ``num_samples``, ``chunk_size``, ``per_example``) and
    loop policy (:mod:`jaxunlearn.loops`): a second call with parameters of the same shapes compiles
    nothing. Pure and traceable (usable under ``jit`` and ``vmap``). Raises ``FloatingPointError`` for
    non-finite ``params`` and ``ValueError`` for a bad option.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if per_example not in PER_EXAMPLE:
        raise ValueError(f"per_example must be one of {PER_EXAMPLE}, got {per_example!r}.")
    check_finite(params)
    with keep_errors():
        return wait_for_errors(_sa_fisher(params, key, module=module, num_samples=num_samples, chunk_size=chunk_size,
                                          per_example=per_example, policy=loops.get_policy()))


@functools.partial(jax.jit, static_argnames=("module", "num_samples", "chunk_size", "per_example", "policy"))
def _sa_fisher(params, key, *, module, num_samples, chunk_size, per_example, policy):
    del policy  # a key only: the loops read the policy in force when traced (jaxunlearn.loops)

    inputs = sample_fisher_inputs(module, key, num_samples)
    if per_example == "layerwise":
        loss = _FisherSampleLoss(module)
    else:
        loss = functools.partial(_fisher_sample_loss, module)
    return fisher_diagonal(loss, params, inputs, estimator="empirical", batch_size=chunk_size)


def make_sa_fisher(module: CVAE, *, num_samples: int = 50_000, chunk_size: int = 128, per_example: str = "layerwise"):
    """``fisher(params, key) -> F``: :func:`sa_fisher_diagonal` for this configuration (compiled once for it)."""
    num_samples = check_positive_int(num_samples, "num_samples")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if per_example not in PER_EXAMPLE:
        raise ValueError(f"per_example must be one of {PER_EXAMPLE}, got {per_example!r}.")
    return functools.partial(sa_fisher_diagonal, module, num_samples=num_samples, chunk_size=chunk_size,
                             per_example=per_example)


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
    """PCGrad-style mutual projection: ``(g_f', g_r', cos(g_f, g_r))`` (module doc).

    Unchanged when ``<g_f, g_r> >= 0``.
    """
    d = otu.tree_vdot(g_f, g_r)
    nf, nr = otu.tree_vdot(g_f, g_f), otu.tree_vdot(g_r, g_r)
    tiny = jnp.finfo(jnp.float32).tiny
    conflict = jnp.minimum(d, 0.0)
    g_f2 = otu.tree_add_scale(g_f, -conflict / jnp.maximum(nr, tiny), g_r)
    g_r2 = otu.tree_add_scale(g_r, -conflict / jnp.maximum(nf, tiny), g_f)
    cos = d / jnp.maximum(jnp.sqrt(nf * nr), tiny)
    return g_f2, g_r2, cos


def _every_class_error(num_classes):
    return ValueError(
        f"request: its examples cover, with the classes forgotten before, all {int(num_classes)} classes; at "
        "least one class must remain to be replayed. Request examples of fewer classes."
    )


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
    progress: bool = True,
) -> base.Unlearner:
    """Selective Amnesia as an :class:`~jaxunlearn.methods.base.Unlearner` for a :class:`~jaxunlearn.models.cvae.CVAE`.

    Args:
      module: the CVAE (its ``num_classes``, ``x_dim`` and ``z_dim`` shape every draw).
      lmbda: ``lambda >= 0``, the weight of the EWC penalty (original: 100).
      gamma: ``gamma >= 0``, the weight of the generative replay (original: 1).
      optimizer: an optax optimiser, fresh for each request as in the original
        (default ``optax.adam(1e-4)``).
      batch_size: surrogate and replay examples per step (original: 256 each).
      num_steps: optimiser steps per request (original: 10 000).
      num_fisher_samples, fisher_chunk_size: model samples of :func:`sa_fisher_diagonal`
        (original: 50 000) and how many of them share one chunk (per-layer fast path).
      variant: ``"sa"``, ``"symmetric_projection"`` or ``"alternating_projection"`` (module doc).
      progress: a tqdm bar over the steps, advanced from inside the compiled loop
        (:func:`jaxunlearn.train.loop.scan_steps`).

    Returns:
      ``Unlearner(init, update)``:

      ``init(params, data, *, key, fisher=None) -> SAState``: ``data`` is the CVAE's training data
      ``(x [N, ...], y [N])`` (or a ``Dataset``), labels in ``0..num_classes-1``; freezes
      ``theta* = params`` and computes ``F`` (:func:`sa_fisher_diagonal`, ``num_fisher_samples`` model
      samples drawn with ``key``) unless ``fisher`` (a pytree like ``params``) is given.

      ``update(params, request, state, *, key) -> (params, state, SAInfo)``: ``request`` is a 1-D int array
      of indices into ``data``; every class of the requested examples joins the forgotten set ``S``
      (:func:`class_request` builds the request of a class), then ``num_steps`` optimiser steps of the
      module doc's objective run in one ``lax.scan``, step ``t`` drawing its batch with
      ``split(key, num_steps)[t]``. Raises ``ValueError`` (also under
      :func:`jaxunlearn.jit`) for an index out of range, repeated or already forgotten, and when ``S``
      would hold every class. Jittable, vmappable over ``key``; compiled once per request length.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    lmbda = check_number(lmbda, "lmbda")
    gamma = check_number(gamma, "gamma")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_steps = check_positive_int(num_steps, "num_steps", allow_zero=True)
    opt = optimizer or optax.adam(1e-4)
    if not (hasattr(opt, "init") and hasattr(opt, "update")):
        raise TypeError(f"optimizer must be an optax.GradientTransformation; got {type(opt).__name__}.")
    fisher_fn = make_sa_fisher(module, num_samples=num_fisher_samples, chunk_size=fisher_chunk_size)
    step = _make_step(module, opt, lmbda, gamma, batch_size, variant)
    desc = f"selective amnesia ({variant})"

    def forget(params: Any, request: jax.Array, state: SAState, key: jax.Array) -> tuple[Any, SAState, SAInfo]:
        """Forget the classes of the requested examples: ``num_steps`` steps of the module docstring's objective."""
        req = base.open_request(state.store, request)
        forgotten = state.forgotten.at[state.store.data[1][req.indices]].set(True)
        raise_if(jnp.all(forgotten), _every_class_error, forgotten.shape[0])
        consts = (state.params_star, state.fisher, forgotten)
        carry = (params, opt.init(params), jnp.zeros((), jnp.int32), consts)
        (params, _, _, _), info = scan_steps(step, carry, jax.random.split(key, num_steps), progress=progress,
                                             desc=desc)
        store = state.store._replace(alive=req.retain)
        return params, SAState(store, state.params_star, state.fisher, forgotten), info

    def init(params: Any, data: Any, *, key: jax.Array, fisher: Any = None) -> SAState:
        store = base.init_data_state(data, "data", num_classes=module.num_classes)
        if not (isinstance(store.data, (tuple, list)) and len(store.data) == 2
                and jnp.issubdtype(store.data[1].dtype, jnp.integer)):
            raise TypeError("data must be the CVAE's training data (x [N, ...], y [N]) with integer labels y.")
        x, y = store.data
        if y.ndim != 1 or int(np.prod(x.shape[1:])) != module.x_dim:
            raise ValueError(
                f"data must be (x [N, ...], y [N]) with {module.x_dim} features per example (the CVAE's x_dim); "
                f"got x {x.shape}, y {y.shape}. Pass the data the CVAE was trained on."
            )
        if fisher is None:
            fisher = fisher_fn(params, key)
        else:
            check_same_structure(params, fisher, "params", "fisher")
            check_finite(fisher, "fisher")
        params_star = jax.tree.map(jnp.asarray, params)
        return SAState(store, params_star, fisher, jnp.zeros((module.num_classes,), bool))

    def same_structure(params, state):
        check_same_structure(state.params_star, params, "state.params_star", "params")

    return base.make_unlearner(init, forget, SAState, check_state=same_structure)


def _make_step(module, opt, lmbda, gamma, batch_size, variant):
    """The scan step ``((params, opt_state, t, (params_star, fisher, forgotten)), key) -> (carry, SAInfo row)``."""

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
        info = SAInfo(out.total, out.forget, out.replay, out.ewc, otu.tree_norm(grads), cos)
        return (params, opt_state, t + 1, consts), info

    return step
