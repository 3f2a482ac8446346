"""Per-example likelihood-ratio attack from many models: LiRA, in the U-LiRA setting for unlearning.

Carlini et al., "Membership Inference Attacks From First Principles" (IEEE S&P 2022): for every example ``f``,
fit one Gaussian to the (logit-scaled) confidences of models trained *with* it (IN) and one to models trained
*without* it (OUT), and score a target model's confidence ``c`` on ``f`` by the log likelihood ratio

    Lambda_f(c) = log N(c; mu_in_f, sigma_in_f^2) - log N(c; mu_out_f, sigma_out_f^2),

    mu_f = mean of the N confidences, sigma_f^2 = their variance (1/N, as numpy's ``var``).

With ``global_variance=True`` (the paper's "fixed variance" variant, for few models) each side uses one
variance shared by all examples, the mean over examples of the per-example variances. A ``min_std`` floor on
every standard deviation keeps a side whose models agree exactly finite. Carlini et al.'s code centres on the
median and takes the standard deviation of all pooled values for the fixed variance; here it is the paper's
mean and a pooled within-example variance.

Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy" (U-LiRA,
arXiv 2403.01218) turn this into a test of unlearning: from a model and one forget example, decide whether the
model was *unlearned* or *retrained without the example*. :func:`ulira` scores ``M`` unlearned models and ``K``
held-out retrained models (not among the OUT models) on the ``F`` forget examples and reports how well
``Lambda`` separates the two groups over all ``M F`` and ``K F`` (model, example) pairs:

* ``auc``: the ROC AUC with the unlearned models positive, ``P(Lambda_u > Lambda_r) + P(Lambda_u = Lambda_r) / 2``
  over all pairs (the Mann-Whitney statistic); 0.5 means indistinguishable from retraining, below 0.5 that the
  unlearned models look *less* trained on the examples than retrained ones do (over-forgetting, itself a
  tell); with few models two sets of retrained models land a few hundredths from 0.5;
* ``tpr_at_fpr``: the largest TPR of the rule ``Lambda >= t`` among thresholds with FPR <= each requested level;
* ``accuracy``: the balanced accuracy of the likelihood-ratio test itself (``Lambda > 0``: unlearned).

The IN models: Hayes et al. fit IN on *unlearned* shadow models (trained with the example, then unlearned by the
method under test), which is the strict U-LiRA; passing the *original* models instead (cheaper: the
many-models run trains them anyway) asks whether the unlearned model still looks trained on the example.

Vectorised over examples and models (no Python loop); jittable. Called on concrete arrays every function
computes in float64 (scoped ``jax.enable_x64``) and returns numpy values, as
:mod:`jaxunlearn.metrics.forgetting_quality` does; under a caller's ``jit`` it follows the traced dtype.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from jaxunlearn._validation import check_number
from jaxunlearn.metrics.forgetting_quality import _confidence, _in_float64

DEFAULT_FPRS = (0.01, 0.001)


class ULiRA(NamedTuple):
    """Result of :func:`ulira`: ``auc`` ``[]``, ``tpr_at_fpr`` ``[len(fprs)]``, ``accuracy`` ``[]`` and the
    log likelihood ratios ``unlearned_scores`` ``[M, F]``, ``heldout_scores`` ``[K, F]``."""

    auc: Any
    tpr_at_fpr: Any
    accuracy: Any
    unlearned_scores: Any
    heldout_scores: Any


def _check_confidences(c: Any, name: str, num_examples: int | None = None) -> Any:
    """``c`` unchanged (not converted: concrete values keep their float64 precision) after checking it."""
    shape, dtype = jnp.shape(c), jnp.result_type(c)
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must be a [models, F examples] array of confidences, got shape {shape}.")
    if num_examples is not None and shape[1] != num_examples:
        raise ValueError(f"{name} must hold the same F = {num_examples} examples as in_conf; got shape {shape}.")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must hold floating-point confidences, got dtype {dtype}.")
    return c


def _gaussian(conf: jax.Array, global_variance: bool, min_std: float) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(conf, axis=0)
    var = jnp.var(conf, axis=0)
    if global_variance:
        var = jnp.full_like(var, jnp.mean(var))
    return mean, jnp.maximum(jnp.sqrt(var), min_std)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _scores(in_conf, out_conf, target_conf, global_variance, min_std):
    mu_in, sd_in = _gaussian(in_conf, global_variance, min_std)
    mu_out, sd_out = _gaussian(out_conf, global_variance, min_std)
    return norm.logpdf(target_conf, mu_in, sd_in) - norm.logpdf(target_conf, mu_out, sd_out)


def _checked(in_conf, out_conf, targets: dict[str, Any]) -> list[Any]:
    in_conf = _check_confidences(in_conf, "in_conf")
    f = jnp.shape(in_conf)[1]
    return [in_conf, _check_confidences(out_conf, "out_conf", f)] + [
        _check_confidences(c, name, f) for name, c in targets.items()]


def lira_scores(
    in_conf: Any, out_conf: Any, target_conf: Any, *, global_variance: bool = False, min_std: float = 1e-6
) -> Any:
    """Per-example log likelihood ratios ``Lambda_f(c)`` (module doc).

    Args:
        in_conf: ``[N_in, F]`` confidences of the IN models (trained with each example).
        out_conf: ``[N_out, F]`` confidences of the OUT models (never saw the examples).
        target_conf: ``[M, F]`` confidences of the models to score.
        global_variance: one variance per side shared by all examples (Carlini et al.'s fixed variance).
        min_std: floor on every standard deviation.

    Returns:
        ``[M, F]``: positive where the target looks IN. Numpy float64 for concrete inputs, else a JAX array.
    """
    min_std = check_number(min_std, "min_std", low=0.0, low_inclusive=False)
    arrays = _checked(in_conf, out_conf, {"target_conf": target_conf})
    return _in_float64(_scores, tuple(arrays), bool(global_variance), min_std)


def _auc(pos: jax.Array, neg: jax.Array) -> jax.Array:
    neg = jnp.sort(neg)
    below = jnp.searchsorted(neg, pos, side="left")
    ties = jnp.searchsorted(neg, pos, side="right") - below
    return jnp.sum(below.astype(pos.dtype) + 0.5 * ties.astype(pos.dtype)) / (pos.size * neg.size)


def _tpr_at_fpr(pos: jax.Array, neg: jax.Array, fprs: jax.Array) -> jax.Array:
    """Largest TPR of the rule ``score >= t`` over thresholds with FPR <= each level of ``fprs``.

    With ``c`` the largest count whose rate ``c / N`` is ``<= fpr``, the best threshold flags every score
    above the ``(c + 1)``-th largest negative ``n_(c+1)``, since any lower threshold flags ``c + 1`` negatives:
    TPR = ``#{pos > n_(c+1)} / P`` (1 when ``c = N``).
    """
    n = neg.size
    allowed = jnp.sum(jnp.arange(n + 1, dtype=pos.dtype)[None, :] / n <= fprs[:, None], axis=1) - 1
    descending = jnp.concatenate([-jnp.sort(-neg), jnp.full((1,), -jnp.inf, neg.dtype)])
    cut = descending[allowed]  # n_(c+1), -inf when every negative may be flagged
    flagged = pos.size - jnp.searchsorted(jnp.sort(pos), cut, side="right")
    return flagged.astype(pos.dtype) / pos.size


@functools.partial(jax.jit, static_argnums=(5, 6))
def _ulira(in_conf, out_conf, unlearned_conf, heldout_conf, fprs, global_variance, min_std):
    both = _scores(in_conf, out_conf, jnp.concatenate([unlearned_conf, heldout_conf]), global_variance, min_std)
    unlearned, heldout = both[: unlearned_conf.shape[0]], both[unlearned_conf.shape[0]:]
    pos, neg = unlearned.ravel(), heldout.ravel()
    accuracy = 0.5 * (jnp.mean(pos > 0, dtype=pos.dtype) + jnp.mean(neg <= 0, dtype=pos.dtype))
    return ULiRA(_auc(pos, neg), _tpr_at_fpr(pos, neg, fprs.astype(pos.dtype)), accuracy, unlearned, heldout)


def _check_fprs(fprs: Any) -> tuple[float, ...]:
    if isinstance(fprs, (int, float)) or len(fprs) == 0:
        raise ValueError(f"fprs must be a non-empty sequence of false-positive rates in (0, 1]; got {fprs!r}.")
    return tuple(check_number(f, "fprs entry", low=0.0, low_inclusive=False, high=1.0) for f in fprs)


def ulira(
    in_conf: Any,
    out_conf: Any,
    unlearned_conf: Any,
    heldout_conf: Any,
    *,
    fprs: tuple[float, ...] = DEFAULT_FPRS,
    global_variance: bool = False,
    min_std: float = 1e-6,
) -> ULiRA:
    """The U-LiRA test (module doc): how well ``Lambda`` tells unlearned models from retrained ones.

    Args:
        in_conf: ``[N_in, F]`` confidences on the forget examples of the IN models (originals, or unlearned
            shadow models for the strict U-LiRA).
        out_conf: ``[N_out, F]`` the same for models retrained without the forget set.
        unlearned_conf: ``[M, F]`` the same for the unlearned models under test (positives).
        heldout_conf: ``[K, F]`` the same for retrained models *not* in ``out_conf`` (negatives).
        fprs: false-positive-rate levels of ``tpr_at_fpr``.
        global_variance, min_std: as in :func:`lira_scores`.

    Returns:
        :class:`ULiRA`; ``auc`` near 0.5 and ``tpr_at_fpr`` near ``fprs`` mean the unlearned models look
        retrained. Numpy float64 for concrete inputs, else JAX arrays.
    """
    min_std = check_number(min_std, "min_std", low=0.0, low_inclusive=False)
    fprs = np.asarray(_check_fprs(fprs))
    arrays = _checked(in_conf, out_conf, {"unlearned_conf": unlearned_conf, "heldout_conf": heldout_conf})
    return _in_float64(_ulira, (*arrays, fprs), bool(global_variance), min_std)


def ulira_from_logits(
    in_logits: Any,
    out_logits: Any,
    unlearned_logits: Any,
    heldout_logits: Any,
    labels: Any,
    *,
    fprs: tuple[float, ...] = DEFAULT_FPRS,
    global_variance: bool = False,
    min_std: float = 1e-6,
) -> ULiRA:
    """:func:`ulira` on :func:`~jaxunlearn.metrics.logit_scaled_confidence` of each group's logits.

    Args:
        in_logits, out_logits, unlearned_logits, heldout_logits: ``[models, F, C]`` logits of the forget
            examples under each group of models (as :func:`~jaxunlearn.metrics.forgetting_quality` takes them).
        labels: integer ``[F]`` labels of the forget examples.
        fprs, global_variance, min_std: as in :func:`ulira`.
    """
    min_std = check_number(min_std, "min_std", low=0.0, low_inclusive=False)
    fprs = np.asarray(_check_fprs(fprs))
    shapes = {n: jnp.shape(a) for n, a in (("in_logits", in_logits), ("out_logits", out_logits),
                                          ("unlearned_logits", unlearned_logits), ("heldout_logits", heldout_logits))}
    if any(len(s) != 3 or s[1:] != shapes["in_logits"][1:] for s in shapes.values()):
        raise ValueError(f"every group of logits must be [models, F, C] with the same F and C; got {shapes}.")
    if jnp.shape(labels) != shapes["in_logits"][1:2]:
        raise ValueError(f"labels must be [F] = {shapes['in_logits'][1:2]}; got shape {jnp.shape(labels)}.")

    return _in_float64(_ulira_logits, (in_logits, out_logits, unlearned_logits, heldout_logits, labels, fprs),
                       bool(global_variance), min_std)


@functools.partial(jax.jit, static_argnums=(6, 7))
def _ulira_logits(in_logits, out_logits, unlearned_logits, heldout_logits, labels, fprs, global_variance, min_std):
    confidences = (_confidence(z, labels) for z in (in_logits, out_logits, unlearned_logits, heldout_logits))
    return _ulira(*confidences, fprs, global_variance, min_std)
