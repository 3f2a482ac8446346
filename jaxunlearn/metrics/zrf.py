"""Zero Retrain Forgetting (ZRF) score (Chundawat et al., "Can bad teaching induce forgetting?", AAAI 2023).

``ZRF = 1 - JS(p_model, p_teacher)`` on the forget data, where the teacher is
a *randomly initialised* model of the same architecture: a model that behaves
like an untrained one on the forget set scores near 1.

Default (correct): per-example JS divergence in nats averaged over the ``N``
examples, ``ZRF = 1 - (1/N) sum_i JS(p_i, q_i)``.

The original code (SSD and bad-teacher repositories, ``metrics.JSDiv``) differs
in two ways, both available as options:

* ``reduction="element"``: ``F.kl_div`` in its default ``'mean'`` reduction
  divides the summed divergence by ``N * C`` elements instead of ``N``, which
  squeezes the score towards 1 (by a factor ``C``).
* ``divergence="original"``: ``F.kl_div(log p, m)`` computes ``KL(m || p)``,
  so the original's "JS" is ``1/2 KL(m || p) + 1/2 KL(m || q)`` with
  ``m = (p + q)/2``, not the Jensen-Shannon divergence
  ``1/2 KL(p || m) + 1/2 KL(q || m)``.

``reduction="element", divergence="original"`` reproduces the published number.
The original also evaluates the random teacher in train mode (batch-norm batch
statistics); pass a train-mode ``teacher_logits_fn`` to reproduce that.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn._validation import check_classifier_data
from jaxunlearn.metrics._predict import LogitsFn, check_probs, check_same_shape, predict_probs
from jaxunlearn.metrics.distance import js_divergence, kl_categorical

REDUCTIONS = ("example", "element")
DIVERGENCES = ("js", "original")


def zrf_score(
    model_probs: jax.Array, teacher_probs: jax.Array, *, reduction: str = "example", divergence: str = "js"
) -> jax.Array:
    """``1 - D(model_probs, teacher_probs)`` reduced over examples; ``[N, C], [N, C] -> scalar`` (module doc)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}.")
    p, q = check_probs(model_probs, "model_probs"), check_probs(teacher_probs, "teacher_probs")
    check_same_shape(p, q, "model_probs", "teacher_probs")
    if divergence == "js":
        per_example = js_divergence(p, q)
    else:
        m = 0.5 * (p + q)
        per_example = 0.5 * kl_categorical(m, p) + 0.5 * kl_categorical(m, q)
    denominator = p.shape[0] * (p.shape[1] if reduction == "element" else 1)
    return 1.0 - jnp.sum(per_example) / denominator


def zrf(
    logits_fn: LogitsFn,
    params: Any,
    teacher_params: Any,
    x: Any,
    *,
    teacher_logits_fn: LogitsFn | None = None,
    batch_size: int = 1024,
    reduction: str = "example",
    divergence: str = "js",
) -> float:
    """ZRF of ``params`` against a random teacher on the forget inputs ``x`` (``[N, ...]``).

    ``teacher_params`` are a fresh random initialisation of the same architecture
    (``teacher_logits_fn`` defaults to ``logits_fn``). Raises ``ValueError`` naming ``x`` when
    it does not fit either model.
    """
    check_classifier_data(logits_fn, params, x, name="x")
    check_classifier_data(teacher_logits_fn or logits_fn, teacher_params, x, name="x")
    p = predict_probs(logits_fn, params, x, batch_size=batch_size)
    q = predict_probs(teacher_logits_fn or logits_fn, teacher_params, x, batch_size=batch_size)
    return float(zrf_score(p, q, reduction=reduction, divergence=divergence))
