"""Training the two models of the Selective Amnesia VAE experiments (Heng & Soh, NeurIPS 2023).

* :func:`train_cvae`: the one-hot CVAE on ``(x, y)``, minimising the summed
  BCE + KL of :func:`jaxunlearn.models.cvae.vae_loss` with Adam (original:
  lr 1e-4, batch 256, 100 000 iterations).
* :func:`train_sa_classifier`: the evaluation classifier in train mode (batch
  norm batch statistics, dropout) on the mean cross-entropy, Adam with a
  staircase decay (original: lr 1e-4, batch 64, 20 epochs, StepLR(5, 0.1)).

Both run the library's optax step (:func:`jaxunlearn.train.loop.make_step`)
inside one compiled ``lax.scan`` (:func:`jaxunlearn.train.loop.scan_steps`), compiled
once per model, configuration and loop policy (:mod:`jaxunlearn.loops`): a second call
with data of the same shapes compiles nothing.
Step ``t`` uses the key ``k_t = split(key, num_steps)[t]``, split into a
minibatch key and a noise key (the VAE's ``eps``, the classifier's dropout);
each step draws its minibatch uniformly (with replacement) from the whole
training set.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import loops
from jaxunlearn._validation import check_finite, check_labels, check_positive_int, num_examples
from jaxunlearn.data.minibatch import draw_unchecked
from jaxunlearn.models.cvae import CVAE, flatten_images, one_hot, vae_loss
from jaxunlearn.models.sa_classifier import SAClassifier
from jaxunlearn.train.loop import init_train_state, make_step, scan_steps, with_key


def _check_xy(x: Any, y: Any, num_classes: int) -> tuple[jax.Array, jax.Array]:
    num_examples((x, y), "(x, y)")
    check_labels(y, num_classes, "y")
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


_DEFAULT_CVAE_OPTIMIZER = optax.adam(1e-4)


def _loop(step: Callable, num_steps: int, size: int, progress: bool, desc: str) -> Callable:
    """``run(state, x, y, key) -> (state, losses)``, jitted: ``num_steps`` of ``step(state, (x_B, y_B), noise_key)``
    on uniform minibatches of ``size`` examples (with replacement), one compiled scan."""

    def run(state, x, y, key):  # data as arguments, not constants of the program
        everyone = jnp.ones((x.shape[0],), bool)

        def body(s, k):
            kb, kn = jax.random.split(k)
            idx = draw_unchecked(kb, everyone, size, replace=True)  # uniform, with replacement
            return step(s, (x[idx], y[idx]), kn)

        return scan_steps(body, state, jax.random.split(key, num_steps), progress=progress, desc=desc)

    return jax.jit(run)


@functools.lru_cache(maxsize=16)
def _cvae_program(module: CVAE, opt: optax.GradientTransformation, num_steps: int, size: int, progress: bool,
                  policy: str) -> Callable:
    del policy  # a key only: the loops read the policy in force when traced (jaxunlearn.loops)

    def loss(p, batch, k):
        xb, yb = batch
        eps = jax.random.normal(k, (xb.shape[0], module.z_dim))
        return vae_loss(module, p, xb, one_hot(yb, module.num_classes), eps)

    return _loop(make_step(with_key(loss), opt), num_steps, size, progress, "train CVAE")


@functools.lru_cache(maxsize=16)
def _classifier_program(module: SAClassifier, num_steps: int, size: int, learning_rate: float,
                        decay_every: int | None, decay: float, progress: bool, policy: str) -> tuple[Callable, Any]:
    del policy  # a key only: the loops read the policy in force when traced (jaxunlearn.loops)

    if decay_every is None:
        schedule = learning_rate
    else:
        schedule = optax.exponential_decay(learning_rate, decay_every, decay, staircase=True)
    opt = optax.adam(schedule)

    def loss(p, batch_stats, batch, k):
        xb, yb = batch
        logits, new = module.apply({"params": p, "batch_stats": batch_stats}, xb, train=True,
                                   mutable=["batch_stats"], rngs={"dropout": k})
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), new["batch_stats"]

    return _loop(make_step(loss, opt), num_steps, size, progress, "train classifier"), opt


def train_cvae(
    module: CVAE,
    params: Any,
    x: Any,
    y: Any,
    *,
    key: jax.Array,
    num_steps: int = 100_000,
    batch_size: int = 256,
    optimizer: optax.GradientTransformation | None = None,
    progress: bool = True,
) -> tuple[Any, np.ndarray]:
    """Fit the CVAE: ``min_theta l_VAE(theta; x_B, onehot(y_B))`` (summed BCE + KL) per step.

    Args:
      x: (N, H, W, C) or (N, D) pixels in [0, 1]; ``D`` must equal ``module.x_dim``.
      y: (N,) integer labels in ``[0, module.num_classes)``.
      key: PRNG key of the minibatches and the reparameterisation noise (module doc).
      num_steps, batch_size: optimiser steps and examples per step (original: 100 000, 256).
      optimizer: default ``optax.adam(1e-4)`` (the original).
      progress: a tqdm bar over the steps.
    Returns:
      ``(params, losses)``: losses (num_steps,) is the summed loss divided by the batch size.
    """
    x, y = _check_xy(flatten_images(x), y, module.num_classes)
    if x.shape[1] != module.x_dim:
        raise ValueError(f"x has {x.shape[1]} features per example but the CVAE has x_dim={module.x_dim}.")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError("x must be pixels in [0, 1] (the VAE's Bernoulli likelihood); rescale it first.")
    check_finite(params)
    num_steps = check_positive_int(num_steps, "num_steps", allow_zero=True)
    size = min(check_positive_int(batch_size, "batch_size"), x.shape[0])
    opt = optimizer or _DEFAULT_CVAE_OPTIMIZER
    run = _cvae_program(module, opt, num_steps, size, bool(progress), loops.get_policy())
    state, losses = run(init_train_state(params, opt), x, y, key)
    check_finite(state.params)
    return state.params, np.asarray(losses) / size


def train_sa_classifier(
    module: SAClassifier,
    variables: Any,
    x: Any,
    y: Any,
    *,
    key: jax.Array,
    num_steps: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    decay_every: int | None = None,
    decay: float = 0.1,
    progress: bool = True,
) -> tuple[Any, np.ndarray]:
    """Train the classifier on mean cross-entropy in train mode; returns ``(variables, losses)``.

    Adam with ``lr_t = learning_rate * decay ** floor(t / decay_every)`` (StepLR;
    no decay when ``decay_every`` is None). ``x`` (N, H, W, C) in [0, 1], ``y`` (N,)
    labels in ``[0, module.num_classes)``; ``losses`` (num_steps,) the minibatch losses.
    """
    x, y = _check_xy(x, y, module.num_classes)
    if x.ndim != 4:
        raise ValueError(f"x must be images (N, H, W, C), got shape {x.shape}.")
    num_steps = check_positive_int(num_steps, "num_steps", allow_zero=True)
    size = min(check_positive_int(batch_size, "batch_size"), x.shape[0])
    if decay_every is not None:
        decay_every = check_positive_int(decay_every, "decay_every")
    run, opt = _classifier_program(module, num_steps, size, float(learning_rate), decay_every, float(decay),
                                   bool(progress), loops.get_policy())
    state = init_train_state(variables["params"], opt, model_state=variables["batch_stats"])
    state, losses = run(state, x, y, key)
    return {"params": state.params, "batch_stats": state.model_state}, np.asarray(losses)
