"""Evaluation of unlearning: accuracy, membership inference (entropy, confidence threshold, the SalUn SVC
"MIA-efficacy", the per-example likelihood-ratio attack U-LiRA), ZRF, distances to the retrained model, linear
CKA of penultimate features, the relearning check, the 1-NN KL estimator, the NeurIPS 2023 challenge's
forgetting-quality score (per-example epsilon from many unlearned and retrained models), and wall-clock timing.
:func:`comparison_metrics` computes the newer attacks, relearning and CKA for one row of a comparison.

Every data-level function takes a ``logits_fn(params, x) -> logits`` (eval
mode) and parameters; the array-level functions (``js_divergence``,
``fit_confidence_threshold``, ``knn_kl_divergence``, ...) take predictions or
samples and are jittable.
"""

from jaxunlearn.metrics._predict import predict_logits, predict_probs
from jaxunlearn.metrics.accuracy import accuracy, split_accuracies
from jaxunlearn.metrics.cka import feature_cka, linear_cka, penultimate_fn
from jaxunlearn.metrics.comparison import COLUMNS, comparison_metrics, ulira_columns
from jaxunlearn.metrics.distance import (
    activation_distance,
    distance_to_retrained,
    js_divergence,
    kl_categorical,
    prediction_l1,
)
from jaxunlearn.metrics.forgetting_quality import (
    ForgettingQuality,
    final_score,
    forget_score,
    forgetting_quality,
    logit_scaled_confidence,
    per_example_epsilon,
)
from jaxunlearn.metrics.kl import flatten_samples, knn_kl_divergence, nearest_neighbour_distances
from jaxunlearn.metrics.lira import ULiRA, lira_scores, ulira, ulira_from_logits
from jaxunlearn.metrics.membership import (
    ThresholdAttack,
    confidence_mia,
    entropy,
    entropy_attack_from_features,
    entropy_mia,
    fit_confidence_threshold,
    true_class_confidence,
)
from jaxunlearn.metrics.mia_svc import (
    SVC_ATTACKS,
    modified_entropy,
    svc_attack_features,
    svc_mia_efficacy,
    svc_mia_efficacy_from_probs,
)
from jaxunlearn.metrics.relearning import Relearning, relearning
from jaxunlearn.metrics.timing import Stopwatch, speedup, timed
from jaxunlearn.metrics.zrf import zrf, zrf_score

__all__ = [
    "COLUMNS", "SVC_ATTACKS", "ForgettingQuality", "Relearning", "Stopwatch", "ThresholdAttack", "ULiRA", "accuracy",
    "activation_distance", "comparison_metrics", "confidence_mia", "distance_to_retrained", "entropy",
    "entropy_attack_from_features", "entropy_mia", "feature_cka", "final_score", "fit_confidence_threshold",
    "flatten_samples", "forget_score", "forgetting_quality", "js_divergence", "kl_categorical",
    "knn_kl_divergence", "linear_cka", "lira_scores", "logit_scaled_confidence", "modified_entropy",
    "nearest_neighbour_distances", "penultimate_fn", "per_example_epsilon", "predict_logits", "predict_probs",
    "prediction_l1", "relearning", "speedup", "split_accuracies", "svc_attack_features", "svc_mia_efficacy",
    "svc_mia_efficacy_from_probs", "timed", "true_class_confidence", "ulira", "ulira_columns",
    "ulira_from_logits", "zrf", "zrf_score",
]
