"""Membership-inference attacks used to judge forgetting.

**Entropy attack** of the SSD / JiT evaluation (from Chundawat et al., AAAI
2023; ``get_membership_attack_prob`` in Foster et al.'s code). Feature: the
entropy in nats of the softmax output, ``H_i = -sum_c p_ic log p_ic``. A
logistic regression (scikit-learn, ``class_weight="balanced"``, lbfgs) is fit
on retain-train features (label 1, member) against the features of the whole
test set (label 0, non-member); the score is the mean predicted label over the
forget-train examples: the fraction of the forget set still judged a member
(lower means more forgotten). The original asks for
``multi_class="multinomial"``: a softmax over two classes with both weight
vectors penalised, which equals binary logistic regression with the inverse
regularisation ``C`` doubled; ``C=2.0`` (the default here) reproduces it with
scikit-learn versions that dropped ``multi_class``.

**Confidence-threshold attack** of MCMC unlearning (Fu et al., ICLR 2022,
``mia_get_threshold``). Feature: the softmax probability of the true class,
``c_i = p(y_i | x_i)``; "member" means ``c >= tau``. The threshold maximises
the balanced attack accuracy on members ``M`` (retain-train) and non-members
``T`` (test),

    acc(tau) = 1/2 (|{c in M: c >= tau}| / |M| + |{c in T: c < tau}| / |T|),

over the observed confidences, the smallest maximiser winning. The score is the
fraction of the forget set with ``c < tau`` (judged non-member; higher means
more forgotten).

Ties: every candidate is scored with all tied values on the same side, exactly
as the rule ``c >= tau`` classifies them. The original loop walks the sorted
values one at a time and only accepts a strictly larger accuracy at a strictly
larger value; when members precede non-members inside each tie group (a stable
sort of its members-then-non-members list) it returns this same threshold and
accuracy (the tests check this against a port of the loop). Its numpy
``argsort`` is not stable, so with non-members first inside a tie group the
original can credit a threshold with an accuracy that no threshold reaches.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from jaxunlearn._validation import check_classifier_data, check_labels
from jaxunlearn.metrics._predict import LogitsFn, as_xy, check_probs, predict_probs


def entropy(probs: jax.Array) -> jax.Array:
    """Per-example entropy ``-sum_c p_c log p_c`` in nats (``0 log 0 = 0``); ``[N, C] -> [N]``."""
    return -jnp.sum(xlogy(check_probs(probs, "probs"), probs), axis=-1)


def true_class_confidence(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``p(y_i | x_i)``: ``probs[i, labels[i]]``; ``[N, C], [N] -> [N]``."""
    probs = check_probs(probs, "probs")
    labels = jnp.asarray(labels)
    if labels.shape != probs.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be an integer array of shape [N] = {probs.shape[:1]}, got shape {labels.shape} "
            f"and dtype {labels.dtype}."
        )
    check_labels(labels, probs.shape[1], "labels")
    return jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]


def _features_1d(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-example features, got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or inf; check the model outputs that produced it.")
    return a


def entropy_attack_from_features(
    member_features: Any, nonmember_features: Any, query_features: Any, *, C: float = 2.0, max_iter: int = 1000
) -> float:
    """Fit the balanced logistic regression on member (1) vs non-member (0) features; mean prediction on queries.

    Shapes: ``[N_m]``, ``[N_t]``, ``[N_q]`` (one feature per example). Returns a
    float in [0, 1]: the fraction of queries predicted "member".
    """
    from sklearn.linear_model import LogisticRegression

    members = _features_1d(member_features, "member_features")
    nonmembers = _features_1d(nonmember_features, "nonmember_features")
    queries = _features_1d(query_features, "query_features")
    features = np.concatenate([members, nonmembers])[:, None]
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs", C=C, max_iter=max_iter)
    clf.fit(features, labels)
    return float(np.mean(clf.predict(queries[:, None])))


def entropy_mia(
    logits_fn: LogitsFn,
    params: Any,
    retain_train: Any,
    test: Any,
    forget_train: Any,
    *,
    batch_size: int = 1024,
    C: float = 2.0,
) -> float:
    """The SSD / JiT entropy attack (module doc): fraction of ``forget_train`` predicted member.

    ``retain_train``, ``test`` (the *whole* test set, forget class included, as in
    the original) and ``forget_train`` are ``Dataset`` objects, ``(x, y)`` pairs
    or bare input arrays ``[N, ...]``; only the inputs are used (``ValueError`` naming the
    argument when they do not fit the model).
    """

    def features(data, name):
        x = as_xy(data, name)[0] if not hasattr(data, "shape") else data
        check_classifier_data(logits_fn, params, x, name=name)
        return np.asarray(entropy(predict_probs(logits_fn, params, x, batch_size=batch_size)))

    return entropy_attack_from_features(
        features(retain_train, "retain_train"), features(test, "test"), features(forget_train, "forget_train"), C=C
    )


class ThresholdAttack(NamedTuple):
    """``threshold``: tau; ``attack_accuracy``: the balanced accuracy credited to it on members vs non-members."""

    threshold: jax.Array
    attack_accuracy: jax.Array


def _check_confidences(c: Any, name: str) -> jax.Array:
    c = jnp.asarray(c, dtype=jnp.float32)
    if c.ndim != 1 or c.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of confidences, got shape {c.shape}.")
    return c


def fit_confidence_threshold(member_conf: Any, nonmember_conf: Any) -> ThresholdAttack:
    """Threshold ``tau`` maximising the balanced attack accuracy (module doc); ``[N_m], [N_t]`` -> scalars.

    Confidences are compared in float32, as in the original. Jittable.
    """
    members = _check_confidences(member_conf, "member_conf")
    nonmembers = _check_confidences(nonmember_conf, "nonmember_conf")
    n_m, n_t = members.shape[0], nonmembers.shape[0]
    candidates = jnp.sort(jnp.concatenate([members, nonmembers]))
    tpr = (n_m - jnp.searchsorted(jnp.sort(members), candidates, side="left")) / n_m
    tnr = jnp.searchsorted(jnp.sort(nonmembers), candidates, side="left") / n_t
    acc = 0.5 * (tpr + tnr)
    best = jnp.argmax(acc)  # first maximiser: the smallest threshold
    return ThresholdAttack(candidates[best], acc[best])


def confidence_mia(
    logits_fn: LogitsFn,
    params: Any,
    retain_train: Any,
    test: Any,
    forget_train: Any,
    *,
    batch_size: int = 1024,
) -> dict[str, float]:
    """The MCMC-unlearning confidence-threshold attack (module doc) on three labelled datasets.

    Returns ``{"forget_nonmember_fraction": |{c in D_f: c < tau}| / |D_f|,
    "threshold": tau, "attack_accuracy": acc(tau)}``. Raises ``ValueError`` naming the argument
    when its inputs do not fit the model or a label lies outside ``0..C-1`` (``C`` the width of the logits).
    """

    def confidences(data, name):
        x, y = as_xy(data, name)
        check_classifier_data(logits_fn, params, x, y, name)
        return true_class_confidence(predict_probs(logits_fn, params, x, batch_size=batch_size), y)

    fit = fit_confidence_threshold(confidences(retain_train, "retain_train"), confidences(test, "test"))
    forget = confidences(forget_train, "forget_train").astype(jnp.float32)
    return {
        "forget_nonmember_fraction": float(jnp.mean(forget < fit.threshold)),
        "threshold": float(fit.threshold),
        "attack_accuracy": float(fit.attack_accuracy),
    }
