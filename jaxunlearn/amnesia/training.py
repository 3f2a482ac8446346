"""Training the two models of the Selective Amnesia VAE experiments (Heng & Soh, NeurIPS 2023).

* :func:`train_cvae`: the one-hot CVAE on ``(x, y)``, minimising the summed
  BCE + KL of :func:`jaxunlearn.models.cvae.vae_loss` with Adam (original:
  lr 1e-4, batch 256, 100 000 iterations).
* :func:`train_sa_classifier`: the evaluation classifier in train mode (batch
  norm batch statistics, dropout) on the mean cross-entropy, Adam with a
  staircase decay (original: lr 1e-4, batch 64, 20 epochs, StepLR(5, 0.1)).

Both are jitted steps scanned in chunks (:func:`jaxunlearn.amnesia.loop.scan_loop`);
each step draws its minibatch uniformly (with replacement) from the whole training set.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn._validation import check_finite, num_examples
from jaxunlearn.amnesia.loop import scan_loop
from jaxunlearn.models.cvae import CVAE, flatten_images, one_hot, vae_loss
from jaxunlearn.models.sa_classifier import SAClassifier


def _check_xy(x: Any, y: Any, num_classes: int) -> tuple[jax.Array, jax.Array]:
    n = num_examples((x, y), "(x, y)")
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}.")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"y must lie in [0, {num_classes}), got labels from {y.min()} to {y.max()}.")
    del n
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


def _minibatch(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    return jax.random.randint(key, (min(batch_size, n),), 0, n)


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
    chunk_size: int = 500,
    progress: bool = True,
) -> tuple[Any, np.ndarray]:
    """Fit the CVAE: ``min_theta l_VAE(theta; x_B, onehot(y_B))`` (summed BCE + KL) per step.

    Args:
      x: (N, H, W, C) or (N, D) pixels in [0, 1]; ``D`` must equal ``module.x_dim``.
      y: (N,) integer labels in ``[0, module.num_classes)``.
      optimizer: default ``optax.adam(1e-4)`` (the original).
    Returns:
      ``(params, losses)``: losses (num_steps,) is the summed loss divided by the batch size.
    """
    x, y = _check_xy(flatten_images(x), y, module.num_classes)
    if x.shape[1] != module.x_dim:
        raise ValueError(f"x has {x.shape[1]} features per example but the CVAE has x_dim={module.x_dim}.")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError("x must be pixels in [0, 1] (the VAE's Bernoulli likelihood); rescale it first.")
    check_finite(params)
    opt = optimizer or optax.adam(1e-4)
    n = x.shape[0]

    def step(carry, k):
        p, s = carry
        kb, ke = jax.random.split(k)
        idx = _minibatch(kb, n, batch_size)
        xb, cb = x[idx], one_hot(y[idx], module.num_classes)
        eps = jax.random.normal(ke, (idx.shape[0], module.z_dim))
        loss, g = jax.value_and_grad(lambda q: vae_loss(module, q, xb, cb, eps))(p)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), s), loss / idx.shape[0]

    (params, _), losses = scan_loop(
        step, (params, opt.init(params)), num_steps, key=key, chunk_size=chunk_size, progress=progress,
        desc="train CVAE", postfix=lambda l: {"loss/example": f"{float(l):.2f}"},
    )
    check_finite(params)
    return params, losses


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
    chunk_size: int = 500,
    progress: bool = True,
) -> tuple[Any, np.ndarray]:
    """Train the classifier on mean cross-entropy in train mode; returns ``(variables, losses)``.

    Adam with ``lr_t = learning_rate * decay ** floor(t / decay_every)`` (StepLR;
    no decay when ``decay_every`` is None). ``x`` (N, H, W, C) in [0, 1], ``y`` (N,).
    """
    x, y = _check_xy(x, y, module.num_classes)
    if x.ndim != 4:
        raise ValueError(f"x must be images (N, H, W, C), got shape {x.shape}.")
    if decay_every is None:
        schedule = learning_rate
    else:
        schedule = optax.exponential_decay(learning_rate, decay_every, decay, staircase=True)
    opt = optax.adam(schedule)
    params, stats = variables["params"], variables["batch_stats"]
    n = x.shape[0]

    def step(carry, k):
        p, st, s = carry
        kb, kd = jax.random.split(k)
        idx = _minibatch(kb, n, batch_size)

        def loss_fn(q):
            logits, new = module.apply(
                {"params": q, "batch_stats": st}, x[idx], train=True, mutable=["batch_stats"], rngs={"dropout": kd}
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean(), new["batch_stats"]

        (loss, st), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, s = opt.update(g, s, p)
        return (optax.apply_updates(p, updates), st, s), loss

    (params, stats, _), losses = scan_loop(
        step, (params, stats, opt.init(params)), num_steps, key=key, chunk_size=chunk_size, progress=progress,
        desc="train classifier", postfix=lambda l: {"loss": f"{float(l):.3f}"},
    )
    return {"params": params, "batch_stats": stats}, losses
