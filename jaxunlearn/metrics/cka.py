"""Linear CKA between two models' penultimate features: a representation-level distance to the retrained model.

Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited" (ICML 2019). With
features ``X [N, D1]`` and ``Y [N, D2]`` of the same ``N`` examples, centred per feature
(``X <- X - 1 mean(X)``),

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),

which equals ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for the linear kernels ``K = X X^T``, ``L = Y Y^T``.
It lies in [0, 1], is 1 for identical features, and is invariant to orthogonal transforms and isotropic scaling
of either side (not to arbitrary invertible maps). Logit-level metrics can look good while the features still
hold the forget data: the CKA of an unlearned model's forget-set features with the retrained model's says how
far the representation itself moved.

:func:`penultimate_fn` reads the penultimate features of any flax classifier whose logits are the output of
its last ``nn.Dense`` call (every model of :mod:`jaxunlearn.models`: MLP, LeNet, SmallCNN, VGG, ResNet-18, ViT)
without changing the model: ``nn.intercept_methods`` records the input of that call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn._validation import check_classifier_data, keep_errors, raise_if, wait_for_errors
from jaxunlearn.metrics._predict import check_batch_size
from jaxunlearn.models.classifier import split_variables
from jaxunlearn.train.classifier import batched_logits

FeaturesFn = Callable[[Any, Any], jax.Array]


def _check_features(a: Any, name: str) -> jax.Array:
    a = jnp.asarray(a)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a [N, D] array of features with N >= 2 examples, got shape {a.shape}.")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"{name} must hold floating-point features, got dtype {a.dtype}.")
    return a


def linear_cka(x: Any, y: Any) -> jax.Array:
    """Linear CKA ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` of centred features (module doc).

    Args:
      x: ``[N, D1]`` features of ``N`` examples under one model.
      y: ``[N, D2]`` features of the same examples under another.

    Returns:
      ``[]`` in [0, 1]. Jittable. Raises ``ValueError`` when a side's features are constant over the examples
      (CKA is undefined there).
    """
    x, y = _check_features(x, "x"), _check_features(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same N examples; got {x.shape[0]} and {y.shape[0]}.")
    with keep_errors():
        return wait_for_errors(_linear_cka(x, y))


@jax.jit
def _linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
    x = x - jnp.mean(x, axis=0)
    y = y - jnp.mean(y, axis=0)
    norm_x, norm_y = jnp.linalg.norm(x.T @ x), jnp.linalg.norm(y.T @ y)
    raise_if((norm_x == 0) | (norm_y == 0), lambda: ValueError(
        "linear_cka is undefined for features that are constant over the examples (x or y is zero once centred); "
        "check that the model's features vary over the inputs."))
    return jnp.sum(jnp.square(y.T @ x)) / (norm_x * norm_y)


def penultimate_fn(module: nn.Module, variables: Any) -> FeaturesFn:
    """``f(params, x) -> features [B, D]``: the input of ``module``'s last ``nn.Dense`` call, in eval mode.

    The counterpart of :func:`jaxunlearn.models.logits_fn` (non-``params`` collections of ``variables`` bound).
    For an MLP it is the last hidden activation; for ViT the normalised class token; for LeNet, SmallCNN and
    ResNet-18 the input of the final fully connected layer (84, 384 and 512 wide); for the JiT VGG the 1000-way
    output of the torchvision backbone that feeds ``fc``. Raises ``ValueError`` when the model's output is not that call's output
    (then the recorded input would not be the penultimate layer).

    Like that function, ``f`` is a ``jax.tree_util.Partial`` over the model state (:class:`PenultimateForward`),
    so jitted evaluations compile once for every model of the same module and shapes.
    """
    _, model_state = split_variables(variables)
    return jax.tree_util.Partial(PenultimateForward(module), model_state)


@dataclasses.dataclass(frozen=True)
class PenultimateForward:
    """``forward(model_state, params, x) -> features [B, D]`` of :func:`penultimate_fn`; equal for equal modules."""

    module: nn.Module

    def __call__(self, model_state: dict, params: Any, x: Any) -> jax.Array:
        module = self.module
        calls = []

        def record(next_fun, args, kwargs, ctx):
            out = next_fun(*args, **kwargs)
            if isinstance(ctx.module, nn.Dense) and ctx.method_name == "__call__":
                calls.append((args[0], out))
            return out

        with nn.intercept_methods(record):
            logits = module.apply({"params": params, **model_state}, x, train=False)
        if not calls or calls[-1][1] is not logits:
            raise ValueError(f"{type(module).__name__}'s output is not the output of an nn.Dense call: "
                             "penultimate_fn needs a classifier ending in a Dense layer; write a features function "
                             "for this model instead.")
        return calls[-1][0].reshape(calls[-1][0].shape[0], -1)


def feature_cka(
    features_fn: FeaturesFn,
    params_a: Any,
    params_b: Any,
    x: Any,
    *,
    features_fn_b: FeaturesFn | None = None,
    batch_size: int = 1024,
) -> jax.Array:
    """Linear CKA between the features of two models on the same inputs.

    Args:
      features_fn: ``(params, x[B, ...]) -> features[B, D]`` (for example :func:`penultimate_fn`).
      params_a, params_b: the two models (for example unlearned and retrained).
      x: ``[N, ...]`` inputs, ``N >= 2``.
      features_fn_b: the features function of ``params_b`` when it differs (other batch-norm statistics);
        default ``features_fn``.
      batch_size: evaluation chunk; the features are computed as :func:`jaxunlearn.metrics.predict_logits` computes
        logits (jitted, one program for the functions of one module from :func:`penultimate_fn`).

    Returns:
      ``[]`` :func:`linear_cka` of ``features_fn(params_a, x)`` and ``features_fn_b(params_b, x)``.
    """
    batch_size = check_batch_size(batch_size)
    features_fn_b = features_fn if features_fn_b is None else features_fn_b
    feats = []
    for name, fn, params in (("params_a", features_fn, params_a), ("params_b", features_fn_b, params_b)):
        check_classifier_data(fn, params, x, name=f"x (with {name})")
        feats.append(batched_logits(fn, params, x, batch_size))
    return linear_cka(*feats)
