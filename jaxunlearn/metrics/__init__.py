"""Evaluation of unlearning: accuracy, membership inference, ZRF, distances to the retrained model,
the 1-NN KL estimator, the NeurIPS 2023 challenge's forgetting-quality score (per-example epsilon from many
unlearned and retrained models), and wall-clock timing.

Every data-level function takes a ``logits_fn(params, x) -> logits`` (eval
mode) and parameters; the array-level functions (``js_divergence``,
``fit_confidence_threshold``, ``knn_kl_divergence``, ...) take predictions or
samples and are jittable.
"""

from jaxunlearn.metrics._predict import predict_logits, predict_probs
from jaxunlearn.metrics.accuracy import accuracy, split_accuracies
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
from jaxunlearn.metrics.membership import (
    ThresholdAttack,
    confidence_mia,
    entropy,
    entropy_attack_from_features,
    entropy_mia,
    fit_confidence_threshold,
    true_class_confidence,
)
from jaxunlearn.metrics.timing import Stopwatch, speedup, timed
from jaxunlearn.metrics.zrf import zrf, zrf_score

__all__ = [
    "ForgettingQuality", "Stopwatch", "ThresholdAttack", "accuracy", "activation_distance", "confidence_mia",
    "distance_to_retrained", "entropy", "entropy_attack_from_features", "entropy_mia", "final_score",
    "fit_confidence_threshold", "flatten_samples", "forget_score", "forgetting_quality", "js_divergence",
    "kl_categorical", "knn_kl_divergence", "logit_scaled_confidence", "nearest_neighbour_distances",
    "per_example_epsilon", "predict_logits", "predict_probs", "prediction_l1", "speedup", "split_accuracies",
    "timed", "true_class_confidence", "zrf", "zrf_score",
]
