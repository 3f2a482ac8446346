"""The stronger attacks, the relearning check and the representation distance, as columns of a comparison row.

:func:`comparison_metrics` computes, for one model of a forgetting comparison (an unlearned model, or the
original or retrained model as reference rows) with the comparison's original and retrained models:

* the SalUn / sparse-unlearning SVC "MIA-efficacy" of every attack (:mod:`jaxunlearn.metrics.mia_svc`);
* the relearning check (:mod:`jaxunlearn.metrics.relearning`): steps of SGD on a few forget examples until
  the rest of the forget set is back to the original's accuracy minus a margin;
* linear CKA (:mod:`jaxunlearn.metrics.cka`) of the model's penultimate features with the retrained model's,
  on the forget set and on a random subset of the retain set.

:func:`ulira_columns` gives the U-LiRA columns (:mod:`jaxunlearn.metrics.lira`) of a many-models run.
:data:`COLUMNS` names every column with its better direction and meaning.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxunlearn._validation import check_positive_int
from jaxunlearn.metrics._predict import LogitsFn, as_xy
from jaxunlearn.metrics.cka import FeaturesFn, feature_cka
from jaxunlearn.metrics.lira import DEFAULT_FPRS, ulira_from_logits
from jaxunlearn.metrics.mia_svc import SVC_ATTACKS, svc_mia_efficacy
from jaxunlearn.metrics.relearning import relearning

#: column -> (better direction, meaning). "->retrain": best when equal to the retrained model's row.
COLUMNS: dict[str, tuple[str, str]] = {
    **{f"svc_mia_{a}": ("↑ (->retrain)", f"SVC MIA-efficacy, {a} feature: share of the forget set judged non-member")
       for a in SVC_ATTACKS},
    "relearn_steps": ("↑ (->retrain)", ("SGD steps on a few forget examples until the rest of the forget set is "
                                        "back to the original's accuracy minus a margin (the cap when never)")),
    "relearn_reached": ("↓ (->retrain)", ("1 when relearning reached the threshold within the cap, 0 when "
                                          "relearn_steps is only a lower bound")),
    "cka_forget": ("↑", "linear CKA of penultimate features with the retrained model, on the forget set"),
    "cka_retain": ("↑", "linear CKA of penultimate features with the retrained model, on retain-train examples"),
    "ulira_auc": ("->0.5", ("U-LiRA: AUC of the per-example likelihood ratio at telling the method's models from "
                            "held-out retrained ones (many-models runs)")),
    "ulira_accuracy": ("->0.5", "U-LiRA: balanced accuracy of the likelihood-ratio test (ratio > 1: unlearned)"),
    **{f"ulira_tpr_at_{f:g}_fpr": ("↓", f"U-LiRA: TPR at FPR <= {f:g}") for f in DEFAULT_FPRS},
}


def comparison_metrics(
    logits_fn: LogitsFn,
    params: Any,
    *,
    split: Any,
    test: Any,
    key: jax.Array,
    features_fn: FeaturesFn,
    original_params: Any,
    retrained_params: Any,
    original_logits_fn: LogitsFn | None = None,
    retrained_features_fn: FeaturesFn | None = None,
    attacks: tuple[str, ...] = SVC_ATTACKS,
    relearn_examples: int = 10,
    relearn_learning_rate: float = 1e-3,
    relearn_max_steps: int = 500,
    relearn_margin: float = 0.1,
    cka_retain_examples: int = 1000,
    batch_size: int = 1024,
) -> dict[str, float]:
    """The columns ``svc_mia_*``, ``relearn_*`` and ``cka_*`` of :data:`COLUMNS` for one model.

    Args:
      logits_fn: ``(params, x) -> logits`` of the model, eval mode.
      params: the model's parameters (unlearned, or the original / retrained for the reference rows).
      split: a ``jaxunlearn.data.ForgetSplit`` (its ``retain_train`` and ``forget_train`` are used).
      test: non-members of the SVC attack: the whole test set (``Dataset`` or ``(x, y)``), as in the originals.
      key: PRNG key; pass the same key for every row of a seed, so that every row is probed with the same
        SVC balancing subset, relearning examples and CKA retain subset.
      features_fn: ``(params, x) -> [B, D]`` penultimate features of the model
        (:func:`jaxunlearn.metrics.penultimate_fn`).
      original_params, retrained_params: the comparison's original and retrained models.
      original_logits_fn: the original's logits function when it differs from ``logits_fn`` (other batch-norm
        statistics); default ``logits_fn``.
      retrained_features_fn: the retrained model's features function, likewise; default ``features_fn``.
      attacks: SVC attacks to run (:data:`~jaxunlearn.metrics.mia_svc.SVC_ATTACKS`).
      relearn_examples, relearn_learning_rate, relearn_max_steps, relearn_margin: ``num_examples``,
        ``learning_rate``, ``max_steps`` and ``margin`` of :func:`~jaxunlearn.metrics.relearning` (threshold
        relative to ``original_params``).
      cka_retain_examples: size of the random retain subset of ``cka_retain`` (all of it when smaller).
      batch_size: evaluation batch.

    Returns:
      ``{column: float}`` (``relearn_reached`` as 0.0 / 1.0).

    The relearning defaults (10 examples, SGD at 1e-3, at most 500 steps, margin 0.1) are set on digits (MLP,
    class 3 forgotten): the retrained model relearns in 48 steps, SSD in 11, SCRUB in 84, fine-tuning needs
    none; the papers have no standard for classifiers. Build ``logits_fn`` and ``features_fn`` once for all
    rows that share model variables: the relearning loop and the forward passes are compiled once per function
    object, so a new closure per row recompiles them.
    """
    k_svc, k_relearn, k_cka = jax.random.split(key, 3)
    retain, forget = split.retain_train, split.forget_train
    row = {f"svc_mia_{a}": v for a, v in svc_mia_efficacy(
        logits_fn, params, retain, test, forget, key=k_svc, attacks=attacks, batch_size=batch_size).items()}

    relearned = relearning(
        logits_fn, params, forget, key=k_relearn, num_examples=relearn_examples,
        learning_rate=relearn_learning_rate, max_steps=relearn_max_steps,
        original_params=original_params, original_logits_fn=original_logits_fn, margin=relearn_margin,
        batch_size=batch_size)
    row["relearn_steps"] = float(relearned.steps)
    row["relearn_reached"] = float(relearned.reached)

    retain_x = as_xy(retain, "split.retain_train")[0]
    n = np.shape(retain_x)[0]
    m = min(check_positive_int(cka_retain_examples, "cka_retain_examples"), n)
    subset = np.sort(np.asarray(jax.random.permutation(k_cka, n)[:m]))
    for name, x in (("cka_forget", as_xy(forget, "split.forget_train")[0]), ("cka_retain", retain_x[subset])):
        row[name] = float(feature_cka(features_fn, params, retrained_params, x, features_fn_b=retrained_features_fn,
                                      batch_size=batch_size))
    return row


def ulira_columns(
    original_logits: Any, retrained_logits: Any, unlearned_logits: Any, heldout_logits: Any, labels: Any
) -> dict[str, float]:
    """The ``ulira_*`` columns of :data:`COLUMNS` from a many-models run.

    Args:
      original_logits: ``[N, F, C]`` forget-set logits of the originals (the IN models).
      retrained_logits: ``[N, F, C]`` of the retrained references (the OUT models).
      unlearned_logits: ``[M, F, C]`` of the method's unlearned models.
      heldout_logits: ``[K, F, C]`` of a second, independent set of retrained models.
      labels: integer ``[F]`` forget labels.

    Returns:
      ``{"ulira_auc", "ulira_accuracy", "ulira_tpr_at_<fpr>_fpr"...}`` as floats
      (:func:`~jaxunlearn.metrics.ulira_from_logits`, per-example variances).
    """
    result = ulira_from_logits(original_logits, retrained_logits, unlearned_logits, heldout_logits, labels)
    row = {"ulira_auc": float(result.auc), "ulira_accuracy": float(result.accuracy)}
    row.update({f"ulira_tpr_at_{f:g}_fpr": float(t) for f, t in zip(DEFAULT_FPRS, result.tpr_at_fpr)})
    return row
