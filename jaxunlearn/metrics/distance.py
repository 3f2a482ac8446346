"""Distances between the predictions of two models (typically: unlearned vs retrained).

For two predictive distributions ``p_i = p(. | x_i)`` and ``q_i`` over ``C``
classes, on the same ``N`` inputs (arrays ``[N, C]``):

* KL divergence, ``KL(p_i || q_i) = sum_c p_ic (log p_ic - log q_ic)`` with
  ``0 log 0 = 0`` (:func:`kl_categorical`).
* Jensen-Shannon divergence (Lin 1991), in nats, bounded by ``log 2``:
  ``JS(p_i, q_i) = 1/2 KL(p_i || m_i) + 1/2 KL(q_i || m_i)``, ``m_i = (p_i + q_i)/2``
  (:func:`js_divergence`).
* L1 prediction difference of the MCMC-unlearning evaluation (Fu et al., ICLR
  2022, ``calc_pred_diff.py``): ``(1/N) sum_i sum_c |p_ic - q_ic|``
  (:func:`prediction_l1`).
* Activation distance of the bad-teacher / SCRUB / SSD evaluation code
  (Chundawat et al. AAAI 2023, ``actv_dist``): the mean L2 distance between the
  output probability vectors, ``(1/N) sum_i ||p_i - q_i||_2``
  (:func:`activation_distance`). Despite its name it compares softmax outputs,
  not hidden activations.

:func:`distance_to_retrained` evaluates all three on a dataset from two models.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from jaxunlearn._validation import check_classifier_data
from jaxunlearn.metrics._predict import LogitsFn, check_probs, check_same_shape, predict_probs


def kl_categorical(p: jax.Array, q: jax.Array) -> jax.Array:
    """Per-example ``KL(p_i || q_i)`` in nats; ``p, q``: ``[N, C]`` -> ``[N]``.

    Infinite where ``q_ic = 0 < p_ic``.
    """
    p, q = check_probs(p, "p"), check_probs(q, "q")
    check_same_shape(p, q, "p", "q")
    return jnp.sum(xlogy(p, p) - xlogy(p, q), axis=-1)


def js_divergence(p: jax.Array, q: jax.Array) -> jax.Array:
    """Per-example Jensen-Shannon divergence in nats, in ``[0, log 2]``; ``[N, C], [N, C] -> [N]``."""
    p, q = check_probs(p, "p"), check_probs(q, "q")
    check_same_shape(p, q, "p", "q")
    m = 0.5 * (p + q)
    return 0.5 * kl_categorical(p, m) + 0.5 * kl_categorical(q, m)


def prediction_l1(p: jax.Array, q: jax.Array) -> jax.Array:
    """Mean over examples of ``sum_c |p_ic - q_ic|`` (in ``[0, 2]``); ``[N, C], [N, C] -> scalar``."""
    p, q = check_probs(p, "p"), check_probs(q, "q")
    check_same_shape(p, q, "p", "q")
    return jnp.mean(jnp.sum(jnp.abs(p - q), axis=-1))


def activation_distance(p: jax.Array, q: jax.Array) -> jax.Array:
    """Mean over examples of ``||p_i - q_i||_2`` (in ``[0, sqrt 2]``); ``[N, C], [N, C] -> scalar``."""
    p, q = check_probs(p, "p"), check_probs(q, "q")
    check_same_shape(p, q, "p", "q")
    return jnp.mean(jnp.linalg.norm(p - q, axis=-1))


def distance_to_retrained(
    logits_fn: LogitsFn,
    params: Any,
    retrained_params: Any,
    x: Any,
    *,
    retrained_logits_fn: LogitsFn | None = None,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean JS divergence, L1 prediction difference and activation distance on inputs ``x`` (``[N, ...]``).

    ``p = softmax(logits_fn(params, x))`` and ``q = softmax(retrained_logits_fn(retrained_params, x))``
    (``retrained_logits_fn`` defaults to ``logits_fn``: the same architecture). Returns
    ``{"js": mean_i JS(p_i, q_i), "l1": prediction_l1(p, q), "activation": activation_distance(p, q)}``.
    Raises ``ValueError`` naming ``x`` when it does not fit either model.
    """
    check_classifier_data(logits_fn, params, x, name="x")
    check_classifier_data(retrained_logits_fn or logits_fn, retrained_params, x, name="x")
    p = predict_probs(logits_fn, params, x, batch_size=batch_size)
    q = predict_probs(retrained_logits_fn or logits_fn, retrained_params, x, batch_size=batch_size)
    return {
        "js": float(jnp.mean(js_divergence(p, q))),
        "l1": float(prediction_l1(p, q)),
        "activation": float(activation_distance(p, q)),
    }
