"""Classification accuracy, and the four numbers of a forgetting scenario.

Two reductions over a dataset of ``N`` examples split into consecutive
batches ``B_1..B_M`` of ``batch_size`` (the last possibly short):

* ``"sample"`` (default): ``(1/N) sum_i [argmax_c f(x_i)_c = y_i]``.
* ``"batch_mean"``: ``(1/M) sum_j acc(B_j)``, the mean of per-batch
  accuracies that the SSD / JiT evaluation code reports (``evaluate`` in
  Foster et al.'s repositories; it is not sample-weighted, so a short last batch
  counts as much as a full one). The originals print it in percent: pass
  ``percent=True``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn._validation import check_classifier_data, num_examples
from jaxunlearn.metrics._predict import LogitsFn, as_xy, check_batch_size, predict_logits

REDUCTIONS = ("sample", "batch_mean")
SPLIT_PARTS = ("retain_train", "forget_train", "retain_test", "forget_test")


def accuracy(
    logits_fn: LogitsFn,
    params: Any,
    data: Any,
    *,
    batch_size: int = 1024,
    reduction: str = "sample",
    percent: bool = False,
) -> jax.Array:
    """Accuracy of ``argmax logits_fn(params, x)`` against ``y`` (module doc); a scalar in [0, 1] (or [0, 100]).

    Args:
      logits_fn: ``(params, x[B, ...]) -> logits[B, C]`` in eval mode.
      data: a ``jaxunlearn.data.Dataset`` or an ``(x [N, ...], y [N])`` pair.
      batch_size: evaluation batch; it defines the batches of ``"batch_mean"``.
      reduction: ``"sample"`` or ``"batch_mean"``.
      percent: multiply by 100.

    Returns:
      The accuracy, a scalar array. Raises ``ValueError`` when ``x`` does not fit the model
      or a label lies outside ``0..C-1`` (``C`` the width of the logits).
    """
    return _accuracy(logits_fn, params, data, batch_size, reduction, percent, "data")


def _accuracy(logits_fn, params, data, batch_size, reduction, percent, name):
    """:func:`accuracy`, its errors naming the argument ``name``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    batch_size = check_batch_size(batch_size)
    x, y = as_xy(data, name)
    n = num_examples((x, y), name)
    y = jnp.asarray(y)
    if y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"{name} labels y must be a 1-D integer array [N], got shape {y.shape} and dtype {y.dtype}.")
    check_classifier_data(logits_fn, params, x, y, name)
    correct = jnp.argmax(predict_logits(logits_fn, params, x, batch_size=batch_size), axis=-1) == y
    if reduction == "sample":
        value = jnp.mean(correct)
    else:
        b = min(batch_size, n)
        value = jnp.mean(jnp.stack([jnp.mean(correct[i : i + b]) for i in range(0, n, b)]))
    return value * (100.0 if percent else 1.0)


def split_accuracies(
    logits_fn: LogitsFn,
    params: Any,
    split: Any,
    *,
    batch_size: int = 1024,
    reduction: str = "sample",
    percent: bool = False,
) -> dict[str, float]:
    """Accuracies on the four parts of a ``jaxunlearn.data.ForgetSplit``.

    Returns ``{"retain_train", "forget_train", "retain_test", "forget_test"}`` as
    floats; a part that is ``None`` or has no examples (for example ``forget_test``
    in random forgetting) gives ``nan``.
    """
    missing = [name for name in SPLIT_PARTS if not hasattr(split, name)]
    if missing:
        raise TypeError(
            f"split must be a jaxunlearn.data.ForgetSplit (with {', '.join(SPLIT_PARTS)}); "
            f"{type(split).__name__} lacks {', '.join(missing)}."
        )
    out = {}
    for name in SPLIT_PARTS:
        part = getattr(split, name)
        if part is None or len(part.x if hasattr(part, "x") else part[0]) == 0:
            out[name] = math.nan
        else:
            out[name] = float(_accuracy(logits_fn, params, part, batch_size, reduction, percent, f"split.{name}"))
    return out
