"""JiT ("just in time") zero-shot unlearning by Lipschitz regularisation around the forget samples.

Foster, Fogarty, Schoepf, Dugue, Marchand & Brintrup, "An Information
Theoretic Approach to Machine Unlearning" (arXiv 2402.01401; reference code
``jwf40/Information-Theoretic-Unlearning``, ``Lipschitz.modify_weight``).
Zero-shot: only the model and the forget data are used.

For each forget batch ``x`` (``B`` examples, in data order, batches of
``batch_size``), with ``N = num_samples`` Gaussian perturbations
``eps_s ~ N(0, I)`` of the batch:

    x~_s = clip(x + sigma * eps_s, min(x), max(x))      (min/max: scalars over the whole batch)
    L(theta) = (1/N) sum_s sum_i ||f(x_i) - sg f(x~_si)||_2 / ||x_i - x~_si||_2

on logits ``f`` (norms over the flattened logits and inputs; ``sg`` = stop
gradient: no gradient flows through the perturbed branch). ``L`` is a *sum*
over the batch. One plain-SGD step ``theta <- theta - eta * g`` per batch, one
pass over the forget data in request order (``num_epochs=1``; the original's
``n_epochs`` is unused). The steps run on the library's one training loop,
:func:`jaxunlearn.train.loop.fit` (``shuffle=False``). A term whose input distance is zero (the clip undid the whole
perturbation) contributes zero, and the norm of a zero logit difference has
gradient zero, where the original would produce NaN.

The original's two quirks are options that default to the original:

* ``accumulate_grads=True``: gradients are zeroed once before the loop, never
  inside it, so the step at batch ``k`` uses ``g_1 + ... + g_k``: the optax
  optimizer ``chain(trace(decay=1), scale(-eta))``. With ``False`` each step
  uses its own gradient ``g_k``: ``optax.sgd(eta)``.
* ``train_mode=True``: the model is never put in eval mode, so dropout is on
  and each of the ``1 + N`` forwards of a batch gets its own dropout mask
  (batch norm would use batch statistics). ``apply_fn`` is then called as
  ``apply_fn(params, x, key)`` with a fresh key per forward; build one from a
  flax module with :func:`train_mode_apply`. With ``train_mode=False`` it is
  called as ``apply_fn(params, x)`` (an eval-mode ``logits_fn``).

Settings of the reference scripts (sigma = ``lipschitz_weighting``, eta =
``learning_rate``, batch 128, N = 25), also in :data:`PAPER_SETTINGS`:

    scenario     model        sigma   eta
    full-class   ViT          0.8     1.5
    full-class   VGG (VGG11)  0.5     3e-4
    sub-class    ViT          1.5     0.5
    sub-class    VGG          0.01    3e-4
    random       ViT          0.5     0.1
    random       VGG          0.01    3e-4

The function-signature defaults (used when a script passes nothing) are
sigma = 0.1, eta = 0.01, N = 25, and are this function's defaults. A GitHub
issue reports collapse of a ViT to chance with sigma 0.8, eta 1.5 (the
accumulated gradients times a large eta).

Keys and noise: step ``t`` of the loop gets ``k_t = fold_in(step_key, t)``
from :func:`~jaxunlearn.train.loop.fit` (``step_key`` derived from the call's
``key``); the noise of the batch is ``normal(fold_in(k_t, 0))`` and the
train-mode forwards use ``fold_in(k_t, 1)`` (see :func:`lipschitz_loss`). The noise is
drawn flat and reshaped: the same numbers as a draw of shape ``[N, B, ...]``, which
compiles much more slowly. The noise can instead be injected, ``update(..., noise=eps)``
with ``eps[N, k, ...]`` aligned with the ``k`` requested examples; it travels through the
loop with the inputs, so batch ``b`` uses ``eps[:, bB:(b+1)B]`` (the same noise every
epoch).

Contract (:mod:`jaxunlearn.methods.base`): zero-shot, so ``init(params, data,
*, key)`` only keeps the training data to look the forget examples up;
``update(params, request, state, *, key, noise=None)`` runs JiT on
``data[request]``. Integer inputs (``uint8`` images) are cast to float.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_fits_model
from jaxunlearn.methods.base import DataState, Unlearner, init_data_state, make_unlearner, open_request
from jaxunlearn.train.loop import fit, init_train_state, with_key

PAPER_SETTINGS = {
    ("full_class", "vit"): {"sigma": 0.8, "eta": 1.5},
    ("full_class", "vgg"): {"sigma": 0.5, "eta": 3e-4},
    ("sub_class", "vit"): {"sigma": 1.5, "eta": 0.5},
    ("sub_class", "vgg"): {"sigma": 0.01, "eta": 3e-4},
    ("random", "vit"): {"sigma": 0.5, "eta": 0.1},
    ("random", "vgg"): {"sigma": 0.01, "eta": 3e-4},
}


class LipschitzState(NamedTuple):
    """State of :func:`lipschitz`: ``store``, the training data and the ``alive`` mask (zero-shot: nothing else)."""

    store: DataState


class LipschitzInfo(NamedTuple):
    """Diagnostics of one request: ``losses``, the JiT loss of every step, ``[num_epochs * num_batches]``."""

    losses: jax.Array


def train_mode_apply(module: Any, variables: dict, *, rng_collection: str = "dropout") -> Callable:
    """``apply(params, x, key) -> logits``: a flax linen module in train mode, dropout keyed by ``key``.

    Non-``params`` collections of ``variables`` are held fixed; batch norm uses the
    batch statistics and its running-statistics update is discarded (methods
    change ``params`` only; the original also updated the running statistics).
    """
    rest = {k: v for k, v in variables.items() if k != "params"}
    mutable = [k for k in rest if k == "batch_stats"]

    def apply(params, x, key):
        out = module.apply(
            {"params": params, **rest}, x, train=True, rngs={rng_collection: key}, mutable=mutable or False
        )
        return out[0] if mutable else out

    return apply


def _inputs(data: Any) -> jax.Array:
    """The inputs ``x`` of ``(x, y, ...)`` or of ``x`` alone, as floats (integer images are cast)."""
    x = data[0] if isinstance(data, (tuple, list)) else data
    if not hasattr(x, "shape"):
        raise TypeError(f"data must be an input array x [n, ...] or a tuple (x, y, ...); got {type(x).__name__}.")
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _standard_normal(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, drawn flat and reshaped: the same numbers (the bits of a draw
    are laid out in row-major order), but a 5-D draw of images takes seconds to compile on jax 0.10.2."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _safe_norm(a: jax.Array) -> jax.Array:
    """L2 norm over the last axis, with gradient zero (not NaN) where the norm is zero."""
    sq = jnp.sum(a * a, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def lipschitz_loss(
    forward: Callable[[Any, jax.Array, jax.Array | None], jax.Array],
    params: Any,
    x: jax.Array,
    eps: jax.Array,
    *,
    sigma: float,
    key: jax.Array | None = None,
    sample_batch: int | None = None,
) -> jax.Array:
    """JiT loss of one batch (module doc): ``(1/N) sum_s sum_i ||f(x_i) - sg f(x~_si)|| / ||x_i - x~_si||``.

    Args:
      forward: ``forward(params, x, key) -> logits [B, C]`` (``key`` is ``None``
        in eval mode, else the forward's own key).
      x: the batch ``[B, ...]``; eps: standard-normal noise ``[N, B, ...]``.
      key: train mode: forward ``0`` (clean) uses ``fold_in(key, 0)`` and the
        perturbed forward ``s`` uses ``fold_in(key, s + 1)``.
      sample_batch: evaluate the perturbed forwards ``sample_batch`` at a time
        (``jax.lax.map``) to bound memory; ``None``: all at once.
    """
    n = eps.shape[0]
    lo, hi = jnp.min(x), jnp.max(x)
    keys = None if key is None else jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(n + 1))
    out = forward(params, x, None if keys is None else keys[0])
    flat_out = out.reshape(out.shape[0], -1)

    def perturbed(args):
        e, k = args
        x_tilde = jnp.clip(x + sigma * e, lo, hi)
        out_tilde = jax.lax.stop_gradient(forward(params, x_tilde, k))
        return x_tilde, out_tilde.reshape(out_tilde.shape[0], -1)

    sample_keys = jnp.zeros((n,)) if keys is None else keys[1:]
    if keys is None:
        fn = lambda args: perturbed((args[0], None))  # noqa: E731
    else:
        fn = perturbed
    x_tilde, out_tilde = jax.lax.map(fn, (eps, sample_keys), batch_size=sample_batch or n)
    num = _safe_norm(flat_out[None] - out_tilde)
    diff = (x[None] - x_tilde).reshape(n, x.shape[0], -1)
    den = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
    ok = den > 0
    return jnp.sum(jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)) / n


def _accepts_key(apply_fn: Callable) -> bool:
    try:
        inspect.signature(apply_fn).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature available (some builtins): trust the caller
        return True
    return True


def lipschitz(
    apply_fn: Callable,
    *,
    sigma: float = 0.1,
    eta: float = 0.01,
    num_samples: int = 25,
    batch_size: int = 128,
    accumulate_grads: bool = True,
    train_mode: bool = True,
    num_epochs: int = 1,
    sample_batch: int | None = None,
    num_classes: int | None = None,
) -> Unlearner:
    """JiT Lipschitz unlearning (module doc) as an :class:`Unlearner`.

    Args:
      apply_fn: ``apply_fn(params, x, key) -> logits`` with ``train_mode=True``
        (see :func:`train_mode_apply`), ``apply_fn(params, x) -> logits`` with
        ``train_mode=False``.
      sigma: noise standard deviation (in the model's input space).
      eta: SGD learning rate.
      num_samples: ``N``, perturbations per batch.
      batch_size: forget batch (original 128).
      accumulate_grads: the original's cumulative-gradient quirk.
      train_mode: the original's train-mode quirk (dropout on).
      num_epochs: passes over the forget data (original: 1); 0 leaves params unchanged.
      sample_batch: memory bound for the ``N`` perturbed forwards (see :func:`lipschitz_loss`).
      num_classes: checks the labels of the data given to ``init`` (zero-shot: labels are not used).

    Returns:
      ``Unlearner(init, update)``: ``init(params, data, *, key) -> LipschitzState`` (zero-shot: the
      data are kept only to look the forget examples up) and
      ``update(params, request, state, *, key, noise=None) -> (params, LipschitzState, LipschitzInfo)``.
      ``key`` gives the noise (unless ``noise`` is given) and the dropout keys of train mode;
      ``noise``: optional ``[num_samples, k, ...]``, aligned with the ``k`` requested examples.
    """
    for name, value, positive in (("sigma", sigma, True), ("eta", eta, False)):
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not number or value < 0 or (positive and value == 0):
            kind = "positive" if positive else "non-negative"
            raise ValueError(f"{name} must be a finite {kind} number, got {value!r}.")
    integers = (("num_samples", num_samples, 1), ("batch_size", batch_size, 1), ("num_epochs", num_epochs, 0))
    for name, value, least in integers:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}.")
    if sample_batch is not None and (not isinstance(sample_batch, int) or sample_batch < 1):
        raise ValueError(f"sample_batch must be None or a positive integer, got {sample_batch!r}.")
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}.")
    if train_mode and not _accepts_key(apply_fn):
        raise TypeError(
            "train_mode=True (the original's default) calls apply_fn(params, x, key) with a dropout key per forward; "
            "build such a function with jaxunlearn.methods.lipschitz.train_mode_apply(module, variables), or pass "
            "train_mode=False to use an eval-mode logits_fn(params, x)."
        )
    # the original's never-zeroed gradients: the update is -eta times the running sum of gradients
    optimizer = optax.chain(optax.trace(decay=1.0), optax.scale(-eta)) if accumulate_grads else optax.sgd(eta)

    def forward(params, x, key):
        return apply_fn(params, x, key) if train_mode else apply_fn(params, x)

    def batch_loss(params, batch, key):
        """JiT loss of one batch of the loop: ``x`` alone (noise from the step key) or ``(x, noise [B, N, ...])``."""
        if isinstance(batch, tuple):
            x, eps = batch[0], jnp.moveaxis(batch[1], 1, 0)
        else:
            x = batch
            eps = _standard_normal(jax.random.fold_in(key, 0), (num_samples,) + x.shape, x.dtype)
        forward_key = jax.random.fold_in(key, 1) if train_mode else None
        return lipschitz_loss(forward, params, x, eps, sigma=sigma, key=forward_key, sample_batch=sample_batch)

    def request_step(params, request, state, key, noise=None):
        """JiT on the examples ``request`` (indices into ``init``'s data); ``noise`` replaces the drawn noise."""
        req = open_request(state.store, request)
        x = _inputs(req.forget)
        if noise is not None and noise.shape != (num_samples,) + x.shape:
            raise ValueError(
                f"noise must have shape [num_samples, k, ...] = {(num_samples,) + x.shape} (k: the requested "
                f"examples, ...: their shape), got {noise.shape}."
            )
        data = x if noise is None else (x, jnp.moveaxis(noise.astype(x.dtype), 0, 1))
        trained, history = fit(
            with_key(batch_loss), optimizer, init_train_state(params, optimizer), data,
            batch_size=batch_size, num_epochs=num_epochs, key=key, shuffle=False, progress=False,
        )
        info = LipschitzInfo(history["step_loss"].reshape(-1))
        return trained.params, LipschitzState(state.store._replace(alive=req.retain)), info

    def init(params: Any, data: Any, *, key: jax.Array) -> LipschitzState:
        """Keep the training ``data`` (``x`` or ``(x, y, ...)``) to look the forget examples up."""
        store = init_data_state(data, "data", num_classes=num_classes)
        check_fits_model(lambda p, batch: forward(p, _inputs(batch), key), params, store.data, "data")
        return LipschitzState(store)

    return make_unlearner(init, request_step, LipschitzState)
