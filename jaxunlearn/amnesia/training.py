"""Training the two models of the Selective Amnesia VAE experiments (Heng & Soh, NeurIPS 2023).

* :func:`train_cvae`: the one-hot CVAE on ``(x, y)``, minimising the summed
  BCE + KL of :func:`jaxunlearn.models.cvae.vae_loss` with Adam (original:
  lr 1e-4, batch 256, 100 000 iterations).
* :func:`train_sa_classifier`: the evaluation classifier in train mode (batch
  norm batch statistics, dropout) on the mean cross-entropy, Adam with a
  staircase decay (original: lr 1e-4, batch 64, 20 epochs, StepLR(5, 0.1)).

Both run the library's optax step (:func:`jaxunlearn.train.loop.make_step`)
inside one compiled ``lax.scan`` (:func:`jaxunlearn.train.loop.scan_steps`).
Step ``t`` uses the key ``k_t = split(key, num_steps)[t]``, split into a
minibatch key and a noise key (the VAE's ``eps``, the classifier's dropout);
each step draws its minibatch uniformly (with replacement) from the whole
training set.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn._validation import check_finite, check_labels, check_positive_int, num_examples
from jaxunlearn.data.minibatch import draw_unchecked
from jaxunlearn.models.cvae import CVAE, flatten_images, one_hot, vae_loss
from jaxunlearn.models.sa_classifier import SAClassifier
from jaxunlearn.train.loop import TrainState, init_train_state, make_step, scan_steps, with_key


def _check_xy(x: Any, y: Any, num_classes: int) -> tuple[jax.Array, jax.Array]:
    num_examples((x, y), "(x, y)")
    check_labels(y, num_classes, "y")
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


def _run(step: Any, state: TrainState, x: jax.Array, y: jax.Array, key: jax.Array, num_steps: int,
         batch_size: int, progress: bool, desc: str) -> tuple[TrainState, np.ndarray]:
    """``num_steps`` of ``step(state, (x_B, y_B), noise_key)`` on uniform minibatches, one compiled scan."""
    everyone, size = jnp.ones((x.shape[0],), bool), min(batch_size, x.shape[0])

    def run(state, x, y, key):
        def body(s, k):
            kb, kn = jax.random.split(k)
            idx = draw_unchecked(kb, everyone, size, replace=True)  # uniform, with replacement
            return step(s, (x[idx], y[idx]), kn)

        return scan_steps(body, state, jax.random.split(key, num_steps), progress=progress, desc=desc)

    state, losses = jax.jit(run)(state, x, y, key)  # data as arguments, not constants of the program
    return state, np.asarray(losses)


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
    batch_size = check_positive_int(batch_size, "batch_size")
    opt = optimizer or optax.adam(1e-4)

    def loss(p, batch, k):
        xb, yb = batch
        eps = jax.random.normal(k, (xb.shape[0], module.z_dim))
        return vae_loss(module, p, xb, one_hot(yb, module.num_classes), eps)

    state, losses = _run(make_step(with_key(loss), opt), init_train_state(params, opt), x, y, key, num_steps,
                         batch_size, progress, "train CVAE")
    check_finite(state.params)
    return state.params, losses / min(batch_size, x.shape[0])


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
    batch_size = check_positive_int(batch_size, "batch_size")
    if decay_every is None:
        schedule = learning_rate
    else:
        schedule = optax.exponential_decay(learning_rate, check_positive_int(decay_every, "decay_every"), decay,
                                           staircase=True)
    opt = optax.adam(schedule)

    def loss(p, batch_stats, batch, k):
        xb, yb = batch
        logits, new = module.apply({"params": p, "batch_stats": batch_stats}, xb, train=True,
                                   mutable=["batch_stats"], rngs={"dropout": k})
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), new["batch_stats"]

    state = init_train_state(variables["params"], opt, model_state=variables["batch_stats"])
    state, losses = _run(make_step(loss, opt), state, x, y, key, num_steps, batch_size, progress, "train classifier")
    return {"params": state.params, "batch_stats": state.model_state}, losses
