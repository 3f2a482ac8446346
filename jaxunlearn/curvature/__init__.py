"""Curvature: Hessian- and Gauss-Newton-vector products, inverse-HVPs, per-example gradients, Fisher diagonals.

Pure, jittable functions over any parameter pytree and any
``loss_fn(params, batch) -> scalar``. Knows nothing about unlearning.
"""

from jaxunlearn.curvature.cg import CGConvergenceError, CGResult, cg
from jaxunlearn.curvature.chunks import chunked_sum
from jaxunlearn.curvature.eigen import EigenResult, top_eigenvalue
from jaxunlearn.curvature.fisher import ESTIMATORS, fisher_diagonal, sample_categorical_labels
from jaxunlearn.curvature.layerwise import LayerwiseLoss
from jaxunlearn.curvature.lissa import (
    GROWTH_LIMIT, LissaDivergenceError, LissaResult, estimate_scale, increment_growth, lissa,
)
from jaxunlearn.curvature.per_example import per_example_grads, squared_grad_sum
from jaxunlearn.curvature.products import ggn_vp, hvp

__all__ = [
    "CGConvergenceError", "CGResult", "ESTIMATORS", "EigenResult", "GROWTH_LIMIT", "LayerwiseLoss", "LissaDivergenceError",
    "LissaResult", "cg", "chunked_sum", "estimate_scale", "fisher_diagonal", "ggn_vp", "hvp", "increment_growth", "lissa",
    "per_example_grads", "sample_categorical_labels", "squared_grad_sum", "top_eigenvalue",
]
