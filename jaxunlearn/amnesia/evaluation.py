"""Judging a (forgetful) conditional VAE with an independently trained classifier.

The evaluation of Selective Amnesia (Heng & Soh, NeurIPS 2023, ``clear-nus/selective-amnesia/vae``):
draw ``n`` samples ``x = decoder(z, onehot(c))``, ``z ~ N(0, I)``, quantise
them to 8 bits as the original does by saving PNGs and reading them back,

    q(x) = floor(255 x + 1/2) / 255   (clipped to [0, 1]; torchvision's save_image, then ToTensor)

and report, with the classifier's ``p(y | q(x))`` in eval mode,

* ``prob``: average probability of the class asked for, ``(1/n) sum p(y = c | q(x))``;
* ``entropy``: average predictive entropy ``(1/n) sum -sum_y p log p`` in nats (max ``ln C``);
* ``accuracy``: fraction of samples classified as ``c``.

For the forgotten class, success is ``prob`` near ``1/C`` or below and
``entropy`` near ``ln C``; for the remaining classes ``accuracy`` should match
the original model's.

``log_probs_fn(x) -> (B, C)`` takes flat images (B, D) (see
:func:`jaxunlearn.models.sa_classifier.sa_log_probs_fn`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn.models.cvae import CVAE, sample

LogProbsFn = Callable[[jax.Array], jax.Array]


class ClassScores(NamedTuple):
    """Per-class scores over generated samples, arrays of shape (K,) for the K classes asked for."""

    classes: np.ndarray
    prob: np.ndarray
    entropy: np.ndarray
    accuracy: np.ndarray


def quantize_8bit(x: jax.Array) -> jax.Array:
    """``floor(255 clip(x, 0, 1) + 1/2) / 255``: the PNG round trip of the original evaluation."""
    return jnp.floor(255.0 * jnp.clip(x, 0.0, 1.0) + 0.5) / 255.0


def score_samples(log_probs_fn: LogProbsFn, x: jax.Array, target: int, *, quantize: bool = True) -> dict:
    """``{"prob", "entropy", "accuracy"}`` (floats) of images ``x`` (B, D) judged against class ``target``."""
    x = quantize_8bit(x) if quantize else x
    lp = log_probs_fn(x)
    p = jnp.exp(lp)
    return {
        "prob": float(jnp.mean(p[:, target])),
        "entropy": float(jnp.mean(-jnp.sum(p * lp, axis=-1))),
        "accuracy": float(jnp.mean(jnp.argmax(lp, axis=-1) == target)),
    }


def class_scores(
    module: CVAE,
    params: Any,
    log_probs_fn: LogProbsFn,
    key: jax.Array,
    classes: Sequence[int] | None = None,
    *,
    num_samples: int = 1000,
) -> ClassScores:
    """Scores of ``num_samples`` generated samples for each class in ``classes`` (default: all)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be a positive int (1000 in the original), got {num_samples!r}.")
    classes = list(range(module.num_classes)) if classes is None else [int(c) for c in classes]
    for c in classes:
        if not 0 <= c < module.num_classes:
            raise ValueError(f"classes must lie in [0, {module.num_classes}), got {c}.")
    rows = []
    for c in classes:
        x = sample(module, params, jax.random.fold_in(key, c), jnp.full((num_samples,), c))
        rows.append(score_samples(log_probs_fn, x, c))
    return ClassScores(
        np.asarray(classes), *(np.asarray([r[k] for r in rows]) for k in ("prob", "entropy", "accuracy"))
    )


def forgetting_report(
    module: CVAE,
    params: Any,
    log_probs_fn: LogProbsFn,
    key: jax.Array,
    forgotten: Sequence[int],
    *,
    num_samples: int = 1000,
) -> dict:
    """Summary of one model: for the forgotten classes their mean ``prob`` and ``entropy``
    (and per class), for the remaining ones their mean and per-class ``accuracy``."""
    forgotten = sorted(int(c) for c in forgotten)
    scores = class_scores(module, params, log_probs_fn, key, num_samples=num_samples)
    f = np.isin(scores.classes, forgotten)
    return {
        "forgotten": forgotten,
        "forget_prob": float(scores.prob[f].mean()) if f.any() else float("nan"),
        "forget_entropy": float(scores.entropy[f].mean()) if f.any() else float("nan"),
        "remaining_accuracy": float(scores.accuracy[~f].mean()) if (~f).any() else float("nan"),
        "per_class_prob": scores.prob.tolist(),
        "per_class_entropy": scores.entropy.tolist(),
        "per_class_accuracy": scores.accuracy.tolist(),
    }
