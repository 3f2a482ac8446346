"""Relearning check: how many fine-tuning steps on a few forget examples bring the forget accuracy back.

A model that only *suppressed* the forget data (its features still hold it) relearns it from a handful of
examples in a few steps; a model that forgot it, like the retrained one, needs many more. This is the relearning
attack of Lynch et al., "Eight Methods to Evaluate Robust Unlearning in LLMs" (arXiv 2402.16835) and Hu et al.,
"Jogging the Memory of Unlearned LLMs Through Targeted Relearning Attacks" (arXiv 2406.13356), asked of a
classifier; Golatkar et al., "Eternal Sunshine of the Spotless Net" (CVPR 2020) report a "re-learn time" in
the same spirit (epochs of fine-tuning until the forget set's loss is back).

**Procedure.** With ``perm = jax.random.permutation(key, F)`` over the ``F`` forget examples, the first ``k``
(``perm[:k]``) are the fine-tuning set and the other ``F - k`` (``perm[k:]``) the evaluation set, so the check
measures recovery of the examples the fine-tuning did not see. From ``theta_0 = params``, full-batch SGD
(``optax.sgd(learning_rate)``) on the mean cross-entropy of the ``k`` examples,

    theta_{t+1} = theta_t - lr * grad_theta (1/k) sum_{i in perm[:k]} CE(f(theta_t, x_i), y_i),

and ``a_t`` = accuracy of ``theta_t`` on the evaluation set, for ``t = 0 .. max_steps`` (one ``lax.scan``).
The threshold ``tau`` is either fixed or relative: the accuracy of ``original_params`` on the same evaluation
set minus ``margin``. **Steps to relearn** = ``min{t : a_t >= tau}`` (0 when the model already predicts the
forget set), or ``max_steps`` with ``reached = False`` when no step up to the cap gets there.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import (
    check_classifier_data,
    check_finite,
    check_key,
    check_number,
    check_positive_int,
    keep_errors,
    wait_for_errors,
)
from jaxunlearn.curvature.chunks import chunked_sum
from jaxunlearn.metrics._predict import LogitsFn, as_xy, check_batch_size
from jaxunlearn.train.classifier import as_pytree_fn
from jaxunlearn.train.loop import scan_steps


class Relearning(NamedTuple):
    """Result of :func:`relearning`.

    ``steps`` (int ``[]``): first ``t`` with ``a_t >= threshold``, or ``max_steps`` when never reached;
    ``reached`` (bool ``[]``): whether the threshold was reached within ``max_steps`` (``False``: ``steps`` is
    the cap, a lower bound); ``accuracies`` (``[max_steps + 1]``): ``a_0 .. a_max_steps`` on the evaluation
    set; ``threshold`` (``[]``): ``tau``.
    """

    steps: jax.Array
    reached: jax.Array
    accuracies: jax.Array
    threshold: jax.Array


def _accuracy(logits_fn, params, x, y, batch_size):
    def count(chunk, _):
        return jnp.sum(jnp.argmax(logits_fn(params, chunk[0]), axis=-1) == chunk[1])

    return chunked_sum(count, (x, y), min(batch_size, x.shape[0])) / x.shape[0]


def relearning(
    logits_fn: LogitsFn,
    params: Any,
    forget: Any,
    *,
    key: jax.Array,
    num_examples: int,
    learning_rate: float,
    max_steps: int,
    threshold: float | None = None,
    original_params: Any = None,
    original_logits_fn: LogitsFn | None = None,
    margin: float = 0.1,
    batch_size: int = 1024,
) -> Relearning:
    """Fine-tune on ``num_examples`` forget examples and count the steps until the forget accuracy is back.

    Formula and procedure in the module docstring. Jittable (close over ``logits_fn``; ``num_examples`` and
    ``max_steps`` fix the shapes) and vmappable over keys or stacked params. Called eagerly, it is compiled once
    per logits function, shapes, ``num_examples``, ``max_steps`` and ``batch_size``, as
    :func:`jaxunlearn.metrics.predict_logits` is: the functions of one module from
    :func:`jaxunlearn.models.logits_fn` share one program, any other callable compiles once per object.

    Args:
      logits_fn: ``(params, x[B, ...]) -> logits[B, C]`` in eval mode.
      params: the model to probe (unlearned, retrained, ...).
      forget: the forget set, ``Dataset`` or ``(x [F, ...], y [F])``.
      key: PRNG key choosing the fine-tuning examples.
      num_examples: ``k``, fine-tuning examples (``1 <= k < F``).
      learning_rate: SGD step size.
      max_steps: the cap on fine-tuning steps.
      threshold: a fixed accuracy level ``tau`` in [0, 1]; give this or ``original_params``.
      original_params: relative threshold: ``tau`` = this model's accuracy on the evaluation set - ``margin``.
      original_logits_fn: the logits function of ``original_params`` when it differs from ``logits_fn`` (other
        batch-norm statistics); default ``logits_fn``.
      margin: see ``original_params``.
      batch_size: evaluation chunk.

    Returns:
      :class:`Relearning` ``(steps, reached, accuracies, threshold)``.
    """
    check_key(key)
    k = check_positive_int(num_examples, "num_examples")
    max_steps = check_positive_int(max_steps, "max_steps")
    batch_size = check_batch_size(batch_size)
    if (threshold is None) == (original_params is None):
        raise ValueError("pass exactly one of threshold (a fixed accuracy level) and original_params "
                         "(threshold = its forget accuracy - margin).")
    x, y = as_xy(forget, "forget")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"forget labels y must be a 1-D integer array [F], got shape {y.shape}, dtype {y.dtype}.")
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"num_examples must be between 1 and F - 1 = {x.shape[0] - 1} (the rest of the forget set "
                         f"is the evaluation set); got {k}.")
    learning_rate = check_number(learning_rate, "learning_rate", low=0.0, low_inclusive=False)
    if threshold is None:
        level = check_number(margin, "margin")
        original_logits_fn = logits_fn if original_logits_fn is None else original_logits_fn
    else:
        level = check_number(threshold, "threshold", high=1.0)
    args = (params, original_params, x, y, key, learning_rate, level)
    static = {"num_examples": k, "max_steps": max_steps, "batch_size": batch_size}
    fns = (as_pytree_fn(logits_fn), None if original_logits_fn is None else as_pytree_fn(original_logits_fn))
    with keep_errors():
        try:
            return wait_for_errors(_relearning(*fns, *args, **static))
        except TypeError as err:  # an unhashable logits function: compiled for this call only
            if "hash" not in str(err):
                raise
            return wait_for_errors(jax.jit(functools.partial(_relearning.__wrapped__, logits_fn, original_logits_fn,
                                                             **static))(*args))


@functools.partial(jax.jit, static_argnames=("num_examples", "max_steps", "batch_size"))
def _relearning(logits_fn, original_logits_fn, params, original_params, x, y, key, learning_rate, level, *,
                num_examples, max_steps, batch_size):
    """:func:`relearning` after its static checks, compiled once per logits function (pytree arguments, as in
    :func:`jaxunlearn.train.classifier.as_pytree_fn`), shapes and statics;
    ``level`` is ``margin`` when ``original_params`` is given, else the fixed threshold. The value checks are
    staged with ``raise_if``."""
    check_classifier_data(logits_fn, params, x, y, "forget")
    check_finite(params)
    perm = jax.random.permutation(key, x.shape[0])
    tune, evaluate = perm[:num_examples], perm[num_examples:]
    x_tune, y_tune, x_eval, y_eval = x[tune], y[tune], x[evaluate], y[evaluate]
    if original_params is None:
        tau = jnp.asarray(level, jnp.float32)
    else:
        check_finite(original_params, "original_params")
        tau = _accuracy(original_logits_fn, original_params, x_eval, y_eval, batch_size) - level
    optimizer = optax.sgd(learning_rate)

    def loss(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_fn(p, x_tune), y_tune))

    def step(carry, _):
        p, opt_state = carry
        updates, opt_state = optimizer.update(jax.grad(loss)(p), opt_state, p)
        p = optax.apply_updates(p, updates)
        return (p, opt_state), _accuracy(logits_fn, p, x_eval, y_eval, batch_size)

    _, later = scan_steps(step, (params, optimizer.init(params)), jnp.arange(max_steps))
    accuracies = jnp.concatenate([_accuracy(logits_fn, params, x_eval, y_eval, batch_size)[None], later])
    above = accuracies >= tau
    reached = jnp.any(above)
    return Relearning(jnp.where(reached, jnp.argmax(above), max_steps), reached, accuracies, tau)
