"""Attacks that try to recover a forgotten class from a Selective-Amnesia CVAE.

All judge decoded images with a classifier ``log_probs_fn(x_flat) -> (B, C)``
after the 8-bit quantisation of :func:`jaxunlearn.amnesia.evaluation.quantize_8bit`,
and report ``prob`` (mean ``p(c_f | x)``) and ``accuracy`` (fraction of images
classified as ``c_f``). Shapes: ``z`` (B, z_dim), conditions (B, C), images (B, D).

* :func:`random_latent_attack`: ``x = dec(z, onehot(c_f))``, ``z ~ N(0, I)``.
* :func:`noisy_condition_attack`: real images of ``c_f`` are encoded by the
  **original** encoder, ``z = mu_orig(x, onehot(c_f))``, and decoded by the
  amnesiac decoder with a noisy condition ``onehot(c_f) + sigma * xi``,
  ``xi ~ N(0, I)``, for each ``sigma``.
* :func:`latent_walk_attack`: class centroids ``m_k = mean mu_orig(x, onehot(k))``
  over real images of class ``k``; walk ``z(t) = (1 - t) m_k + t m_f`` decoding
  with the fixed deceptive condition ``onehot(k)``, with the interpolated
  condition ``(1 - t) onehot(k) + t onehot(f)`` ("double"), and the triangular
  walk ``m_k -> m_f -> m_k2`` with condition ``onehot(k)``.
* :func:`optimization_attack`: gradient ascent on
  ``log p_clf(c_f | dec(z, softmax(a)))`` over ``z`` and condition logits ``a``
  (Adam, ``num_restarts`` independent starts, the library's optax step
  :func:`jaxunlearn.train.loop.make_step` in one compiled scan), optionally with a Gaussian prior
  penalty ``-prior_weight |z|^2 / 2`` and with the forgotten label masked out of
  the condition (``mask_forgotten=True``: ``a_{c_f} = -inf``). Because it is
  guided by the classifier it can produce adversarial images for that
  classifier; pass ``judge_log_probs_fn`` (an independently trained second
  classifier) to score the recovered images with a model the attack never saw.
  Its optimisation is compiled once per CVAE, classifier function, settings and loop policy: attacking
  another model of the same shapes (or the same one with another key) compiles nothing.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import loops
from jaxunlearn._validation import check_labels, check_positive_int
from jaxunlearn.amnesia.evaluation import LogProbsFn, quantize_8bit, score_samples
from jaxunlearn.models.cvae import CVAE, decode, encode, flatten_images, one_hot
from jaxunlearn.train.loop import init_train_state, make_step, params_only, scan_steps


def _check_class(c: int, num_classes: int, name: str) -> int:
    if not isinstance(c, (int, np.integer)) or not 0 <= int(c) < num_classes:
        raise ValueError(f"{name} must be a class index in [0, {num_classes}), got {c!r}.")
    return int(c)


def _judged(log_probs_fn: LogProbsFn, x: jax.Array, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image ``p(target | q(x))`` and ``argmax == target`` as numpy arrays (B,)."""
    lp = log_probs_fn(quantize_8bit(x))
    return np.asarray(jnp.exp(lp[:, target])), np.asarray(jnp.argmax(lp, axis=-1) == target)


def random_latent_attack(
    module: CVAE, params: Any, log_probs_fn: LogProbsFn, key: jax.Array, forget_class: int, *, num_samples: int = 1000
) -> dict:
    """Scores of ``dec(z, onehot(c_f))`` for ``z ~ N(0, I)``; adds ``max_prob`` over the samples."""
    c = _check_class(forget_class, module.num_classes, "forget_class")
    z = jax.random.normal(key, (num_samples, module.z_dim))
    x = decode(module, params, z, one_hot(jnp.full((num_samples,), c), module.num_classes))
    out = score_samples(log_probs_fn, x, c)
    out["max_prob"] = float(_judged(log_probs_fn, x, c)[0].max())
    return out


def noisy_condition_attack(
    module: CVAE,
    params: Any,
    original_params: Any,
    log_probs_fn: LogProbsFn,
    key: jax.Array,
    x_forget: Any,
    forget_class: int,
    *,
    sigmas: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 1.0),
) -> dict:
    """``{sigma: {"prob", "entropy", "accuracy"}}`` decoding original-encoder latents of real ``c_f`` images
    ``x_forget`` (N, ...) with the condition ``onehot(c_f) + sigma * xi``."""
    c = _check_class(forget_class, module.num_classes, "forget_class")
    x = flatten_images(x_forget)
    cond = one_hot(jnp.full((x.shape[0],), c), module.num_classes)
    mu, _ = encode(module, original_params, x, cond)
    out = {}
    for i, sigma in enumerate(sigmas):
        noisy = cond + float(sigma) * jax.random.normal(jax.random.fold_in(key, i), cond.shape)
        out[float(sigma)] = score_samples(log_probs_fn, decode(module, params, mu, noisy), c)
    return out


def class_centroids(module: CVAE, params: Any, x: Any, y: Any) -> np.ndarray:
    """``(C, z_dim)`` means of the encoder's ``mu(x, onehot(y))`` per class (NaN rows for absent classes)."""
    x = flatten_images(x)
    check_labels(y, module.num_classes, "y")
    y = np.asarray(y)
    mu, _ = encode(module, params, x, one_hot(y, module.num_classes))
    mu = np.asarray(mu)
    return np.stack([mu[y == k].mean(0) if (y == k).any() else np.full(mu.shape[1], np.nan) for k in range(module.num_classes)])


def latent_walk_attack(
    module: CVAE,
    params: Any,
    centroids: np.ndarray,
    log_probs_fn: LogProbsFn,
    forget_class: int,
    known_class: int,
    second_known_class: int,
    *,
    num_points: int = 11,
) -> dict:
    """Three walks (module doc); for each ``{"prob": (T,), "hit": (T,), "images": (T, D)}`` along the path
    and the summary ``max_prob`` and ``hit_rate`` (fraction of path points classified as ``c_f``)."""
    nc = module.num_classes
    f = _check_class(forget_class, nc, "forget_class")
    k = _check_class(known_class, nc, "known_class")
    k2 = _check_class(second_known_class, nc, "second_known_class")
    if len({f, k, k2}) != 3:
        raise ValueError("forget_class, known_class and second_known_class must be three different classes.")
    m = jnp.asarray(centroids)
    t = jnp.linspace(0.0, 1.0, num_points)[:, None]
    ek, ef = one_hot(jnp.asarray([k]), nc), one_hot(jnp.asarray([f]), nc)
    line = (1 - t) * m[k] + t * m[f]
    tri = jnp.concatenate([line, ((1 - t) * m[f] + t * m[k2])[1:]])
    walks = {
        "deceptive": (line, jnp.repeat(ek, num_points, 0)),
        "double": (line, (1 - t) * ek + t * ef),
        "triangular": (tri, jnp.repeat(ek, tri.shape[0], 0)),
    }
    out = {}
    for name, (z, cond) in walks.items():
        x = decode(module, params, z, cond)
        prob, hit = _judged(log_probs_fn, x, f)
        out[name] = {"prob": prob, "hit": hit, "images": np.asarray(x),
                     "max_prob": float(prob.max()), "hit_rate": float(hit.mean())}
    return out


def optimization_attack(
    module: CVAE,
    params: Any,
    log_probs_fn: LogProbsFn,
    key: jax.Array,
    forget_class: int,
    *,
    num_restarts: int = 64,
    num_steps: int = 300,
    learning_rate: float = 0.05,
    prior_weight: float = 0.0,
    mask_forgotten: bool = False,
    judge_log_probs_fn: LogProbsFn | None = None,
    progress: bool = False,
) -> dict:
    """Maximise ``mean_r [log p(c_f | dec(z_r, softmax(a_r))) - prior_weight |z_r|^2 / 2]`` over ``z, a``.

    Starts: ``z ~ N(0, I)``, ``a ~ N(0, 0.1^2)``. Returns ``prob``/``accuracy`` under the guiding classifier
    and, when given, ``judge_prob``/``judge_accuracy`` under ``judge_log_probs_fn``; ``condition_mass`` is the
    mean softmax weight on ``c_f``; ``images`` (R, D), ``z`` and ``condition`` (R, C) the results.
    """
    f = _check_class(forget_class, module.num_classes, "forget_class")
    num_restarts = check_positive_int(num_restarts, "num_restarts")
    num_steps = check_positive_int(num_steps, "num_steps", allow_zero=True)
    attack = _attack_program(module, log_probs_fn, f, num_restarts, num_steps, float(learning_rate),
                             float(prior_weight), bool(mask_forgotten), bool(progress), loops.get_policy())
    z, cond, x = attack(params, key)
    prob, hit = _judged(log_probs_fn, x, f)
    out = {"prob": float(prob.mean()), "accuracy": float(hit.mean()), "condition_mass": float(jnp.mean(cond[:, f])),
           "images": np.asarray(x), "z": np.asarray(z), "condition": np.asarray(cond)}
    if judge_log_probs_fn is not None:
        jp, jh = _judged(judge_log_probs_fn, x, f)
        out["judge_prob"], out["judge_accuracy"] = float(jp.mean()), float(jh.mean())
    return out


@functools.lru_cache(maxsize=16)
def _attack_program(module: CVAE, log_probs_fn: LogProbsFn, f: int, num_restarts: int, num_steps: int,
                    learning_rate: float, prior_weight: float, mask_forgotten: bool, progress: bool,
                    policy: str) -> Callable:
    """``attack(params, key) -> (z, condition, images)`` of :func:`optimization_attack`, jitted."""
    del policy  # a key only: the loops read the policy in force when traced (jaxunlearn.loops)

    nc = module.num_classes
    opt = optax.adam(learning_rate)

    def attack(params, key):
        mask = jnp.zeros((nc,)).at[f].set(-jnp.inf if mask_forgotten else 0.0)

        def condition(a):
            return jax.nn.softmax(a + mask, axis=-1)

        def objective(v, _):
            z, a = v
            lp = log_probs_fn(decode(module, params, z, condition(a)))
            return -(jnp.mean(lp[:, f]) - prior_weight * 0.5 * jnp.mean(jnp.sum(z**2, -1)))

        kz, ka = jax.random.split(key)
        z0 = jax.random.normal(kz, (num_restarts, module.z_dim))
        a0 = 0.1 * jax.random.normal(ka, (num_restarts, nc))
        step = make_step(params_only(objective), opt)
        state, _ = scan_steps(lambda s, t: step(s, None, None), init_train_state((z0, a0), opt),
                              jnp.arange(num_steps), progress=progress, desc="optimisation attack")
        z, a = state.params
        cond = condition(a)
        return z, cond, decode(module, params, z, cond)

    return jax.jit(attack)
