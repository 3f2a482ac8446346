"""Selective Amnesia support: training the CVAE and its judge, evaluation, attacks and pictures.

The method itself is :mod:`jaxunlearn.methods.selective_amnesia`; the models
are :mod:`jaxunlearn.models.cvae` and :mod:`jaxunlearn.models.sa_classifier`.
"""

from jaxunlearn.amnesia.attacks import (
    class_centroids, latent_walk_attack, noisy_condition_attack, optimization_attack, random_latent_attack,
)
from jaxunlearn.amnesia.evaluation import ClassScores, class_scores, forgetting_report, quantize_8bit, score_samples
from jaxunlearn.amnesia.training import train_cvae, train_sa_classifier

__all__ = [
    "ClassScores", "class_centroids", "class_scores", "forgetting_report", "latent_walk_attack",
    "noisy_condition_attack", "optimization_attack", "quantize_8bit", "random_latent_attack",
    "score_samples", "train_cvae", "train_sa_classifier",
]
