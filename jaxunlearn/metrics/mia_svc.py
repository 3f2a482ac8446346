"""The SVC membership-inference attack of the SalUn / sparse-unlearning evaluations: "MIA-efficacy".

Jia et al., "Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023) and Fan et al., "SalUn: Empowering
Machine Unlearning via Gradient-based Weight Saliency" (ICLR 2024), after Song & Mittal, "Systematic Evaluation
of Privacy Risks of Machine Learning Models" (USENIX Security 2021); ``SVC_MIA`` in their code.

**Shadow set.** The model's softmax outputs ``p`` on retain-train examples (members, label 1) and on test
examples (non-members, label 0), balanced: the larger group is cut to the size ``m`` of the smaller one by a
random subset (``sort(numpy.random.default_rng(s).permutation(n)[:m])`` with the seed
``s = jax.random.bits(key, (), uint32)``, data order kept; the originals take the first ``len(test)`` retain
examples, which for a class-ordered retain set is a biased subset).

**Features** of an example ``(p, y)``, one attack each (:data:`SVC_ATTACKS`):

* ``"correctness"``: ``1[argmax_c p_c = y]``;
* ``"confidence"``: ``p_y``;
* ``"entropy"``: ``H(p) = -sum_c p_c log p_c`` (``0 log 0 = 0``);
* ``"m_entropy"``, Song & Mittal's modified entropy:
  ``Mentr(p, y) = -(1 - p_y) log p_y - sum_{c != y} p_c log(1 - p_c)``, each log's argument floored at
  ``1e-30`` as in the originals (so a zero probability costs ``log 1e-30`` instead of ``-inf``);
* ``"prob"``: the ``C`` probabilities themselves.

**Attack.** ``sklearn.svm.SVC(C=3, gamma="auto", kernel="rbf")`` (the originals' settings; ``gamma="auto"`` is
``1 / num_features``) fitted on the shadow set. **MIA-efficacy** = the fraction of the forget examples the SVC
predicts as non-members, ``1 - mean_{x in D_f} svc(x)``: higher means more forgotten (the retrained model on a
forgotten class scores near 1; the original near 0). The SalUn paper's table reports the ``"confidence"``
attack. In full-class forgetting the ``"prob"`` attack misleads: the members (retain set) hold no example of
the forgotten class while the non-members (the whole test set) do, so the SVC calls the forgotten class's
corner of the simplex non-member and even the original model scores near 1 (digits, class 3: 1.0).

Departure from the originals: their ``m_entropy`` indexes ``p[:, labels]`` (every row at every label of the
batch, not ``p[i, y_i]``) and in some versions takes ``log p`` where ``log(1 - p)`` is meant; here it is the
paper's formula, per example.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from jaxunlearn._validation import check_classifier_data, check_key, check_labels, check_number, keep_errors
from jaxunlearn.metrics._predict import LogitsFn, as_xy, check_probs, predict_probs

SVC_ATTACKS = ("correctness", "confidence", "entropy", "m_entropy", "prob")
LOG_FLOOR = 1e-30  # the originals' floor inside the logarithms of the modified entropy


def _label_array(probs: jax.Array, labels: Any, name: str) -> jax.Array:
    """``labels`` as an array, after checking that it is integer ``[N]`` for ``probs`` ``[N, C]``."""
    labels = jnp.asarray(labels)
    if labels.shape != probs.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{name} must be an integer array of shape [N] = {probs.shape[:1]}, got shape {labels.shape} "
            f"and dtype {labels.dtype}."
        )
    return labels


def _labels_for(probs: jax.Array, labels: Any, name: str) -> jax.Array:
    """:func:`_label_array`, and every label in ``0..C-1`` (also under ``jit``)."""
    labels = _label_array(probs, labels, name)
    check_labels(labels, probs.shape[1], name)
    return labels


def modified_entropy(probs: Any, labels: Any) -> jax.Array:
    """Song & Mittal's modified entropy ``-(1 - p_y) log p_y - sum_{c != y} p_c log(1 - p_c)`` (module doc).

    Args:
      probs: ``[N, C]`` class probabilities.
      labels: integer ``[N]`` true labels.

    Returns:
      ``[N]``; small for a confident correct prediction, large for a confident wrong one. Jittable.
    """
    probs = check_probs(probs, "probs")
    return _modified_entropy(probs, _labels_for(probs, labels, "labels"))


def _modified_entropy(probs: jax.Array, labels: jax.Array) -> jax.Array:
    is_label = jnp.arange(probs.shape[1]) == labels[:, None]
    log_p = jnp.log(jnp.maximum(probs, LOG_FLOOR))
    log_rest = jnp.log(jnp.maximum(1.0 - probs, LOG_FLOOR))
    return -jnp.sum(jnp.where(is_label, (1.0 - probs) * log_p, probs * log_rest), axis=-1)


def svc_attack_features(probs: Any, labels: Any, attack: str) -> jax.Array:
    """The features of one attack (module doc): ``[N, 1]``, or ``[N, C]`` for ``"prob"``. Jittable.

    Args:
      probs: ``[N, C]`` softmax outputs of the model.
      labels: integer ``[N]`` true labels.
      attack: one of :data:`SVC_ATTACKS`.
    """
    if attack not in SVC_ATTACKS:
        raise ValueError(f"attack must be one of {SVC_ATTACKS}, got {attack!r}.")
    probs = check_probs(probs, "probs")
    return _features(probs, _labels_for(probs, labels, "labels"), attack)


def _features(probs: jax.Array, labels: jax.Array, attack: str) -> jax.Array:
    if attack == "prob":
        return probs
    if attack == "correctness":
        feature = (jnp.argmax(probs, axis=-1) == labels).astype(probs.dtype)
    elif attack == "confidence":
        feature = jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]
    elif attack == "entropy":
        feature = -jnp.sum(xlogy(probs, probs), axis=-1)
    else:
        feature = _modified_entropy(probs, labels)
    return feature[:, None]


@functools.partial(jax.jit, static_argnums=(2, 3))
def _stacked_features(probs: jax.Array, labels: jax.Array, sizes: tuple[int, ...], attacks: tuple[str, ...]):
    """Every attack's features of the stacked member, non-member and forget groups (``sizes`` examples each)."""
    for name, start, size in zip(("member", "nonmember", "forget"), np.cumsum((0,) + sizes), sizes):
        check_labels(labels[start:start + size], probs.shape[1], f"{name}_labels")
    return [_features(probs, labels, attack) for attack in attacks]


def _balanced(n_members: int, n_nonmembers: int, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Indices keeping ``m = min(n_members, n_nonmembers)`` of each group: all of the smaller group, a random
    subset of the larger one in data order (module doc)."""
    m = min(n_members, n_nonmembers)
    seed = int(jax.random.bits(key, (), jnp.uint32))  # one compiled draw whatever the sizes

    def keep(n):
        return np.arange(n) if n == m else np.sort(np.random.default_rng(seed).permutation(n)[:m])

    return keep(n_members), keep(n_nonmembers)


def svc_mia_efficacy_from_probs(
    member_probs: Any,
    member_labels: Any,
    nonmember_probs: Any,
    nonmember_labels: Any,
    forget_probs: Any,
    forget_labels: Any,
    *,
    key: jax.Array,
    attacks: tuple[str, ...] = SVC_ATTACKS,
    C: float = 3.0,
) -> dict[str, float]:
    """MIA-efficacy of each attack from softmax outputs (module doc).

    Args:
      member_probs, member_labels: ``[N_m, C]``, ``[N_m]``: the model on retain-train examples (members).
      nonmember_probs, nonmember_labels: ``[N_t, C]``, ``[N_t]``: the model on test examples (non-members).
      forget_probs, forget_labels: ``[N_f, C]``, ``[N_f]``: the model on the forget examples.
      key: PRNG key of the balancing subset (unused when ``N_m == N_t``).
      attacks: names from :data:`SVC_ATTACKS`.
      C: the SVC's inverse regularisation (3 in the originals).

    Returns:
      ``{attack: efficacy}``, each the fraction of forget examples predicted non-member, in [0, 1].
    """
    from sklearn.svm import SVC

    check_key(key)
    C = check_number(C, "C", low=0.0, low_inclusive=False)
    unknown = [a for a in attacks if a not in SVC_ATTACKS]
    if isinstance(attacks, str) or not attacks or unknown:
        raise ValueError(f"attacks must be a non-empty tuple of names from {SVC_ATTACKS}; got {attacks!r}.")
    named = (("member", member_probs, member_labels), ("nonmember", nonmember_probs, nonmember_labels),
             ("forget", forget_probs, forget_labels))
    probs = [check_probs(p, f"{name}_probs") for name, p, _ in named]
    widths = {f"{name}_probs": p.shape[1] for (name, _, _), p in zip(named, probs)}
    if len(set(widths.values())) != 1:
        raise ValueError(f"member, nonmember and forget probabilities must have the same number of classes; "
                         f"got {widths}.")
    labels = [_label_array(p, y, f"{name}_labels") for (name, _, y), p in zip(named, probs)]
    sizes = tuple(p.shape[0] for p in probs)
    with keep_errors():  # one compiled program for every group and attack; label errors keep their class
        stacked = _stacked_features(jnp.concatenate(probs), jnp.concatenate(labels), sizes, tuple(attacks))
    keep_m, keep_t = _balanced(sizes[0], sizes[1], key)
    out = {}
    for attack, feats in zip(attacks, stacked):
        member, nonmember, forget = np.split(np.asarray(feats, np.float64), np.cumsum(sizes)[:-1])
        x = np.concatenate([member[keep_m], nonmember[keep_t]])
        y = np.concatenate([np.ones(len(keep_m)), np.zeros(len(keep_t))])
        clf = SVC(C=C, gamma="auto", kernel="rbf").fit(x, y)
        out[attack] = float(1.0 - np.mean(clf.predict(forget)))
    return out


def svc_mia_efficacy(
    logits_fn: LogitsFn,
    params: Any,
    retain_train: Any,
    test: Any,
    forget_train: Any,
    *,
    key: jax.Array,
    attacks: tuple[str, ...] = SVC_ATTACKS,
    C: float = 3.0,
    batch_size: int = 1024,
) -> dict[str, float]:
    """MIA-efficacy (module doc) of a model on three labelled datasets.

    Args:
      logits_fn: ``(params, x[B, ...]) -> logits[B, C]`` in eval mode.
      retain_train: members (``Dataset`` or ``(x, y)``).
      test: non-members: the whole test set, as in the originals.
      forget_train: the forget examples whose efficacy is reported.
      key, attacks, C: as in :func:`svc_mia_efficacy_from_probs`.
      batch_size: evaluation batch.

    Returns:
      ``{attack: fraction of forget_train predicted non-member}`` (higher: more forgotten). Raises
      ``ValueError`` naming the argument when its inputs do not fit the model or a label lies outside
      ``0..C-1``.
    """

    def outputs(data, name):
        x, y = as_xy(data, name)
        check_classifier_data(logits_fn, params, x, y, name)
        return predict_probs(logits_fn, params, x, batch_size=batch_size), jnp.asarray(y)

    return svc_mia_efficacy_from_probs(
        *outputs(retain_train, "retain_train"), *outputs(test, "test"), *outputs(forget_train, "forget_train"),
        key=key, attacks=attacks, C=C)
