"""Forgetting quality from many models: the epsilon score of the NeurIPS 2023 machine-unlearning challenge.

Triantafillou et al., "Are we making progress in unlearning? Findings from the first NeurIPS unlearning
competition", arXiv 2406.09073. For one forget set of ``F`` examples there are ``N`` models retrained from
scratch without it and ``N`` models produced by the unlearning method; each example gets an ``eps_i`` telling
how well a hypothesis test separates the two samples of ``N`` confidences, and the forget score rewards small
``eps_i``.

**Confidence** (:func:`logit_scaled_confidence`): ``conf = log(p_y + 1e-45) - log(sum_{k != y} p_k + 1e-45)``
with ``p = softmax(logits)``.

**Per example** (:func:`per_example_epsilon`). The *positive* sample is the one with the larger median
(the retrained one only when its median is strictly larger). With ``r_pos, r_neg`` the two ranges
(max - min): when ``min(r) / max(r) < 0.01`` (one sample is a spike) ``eps_i = 50``. Otherwise two families of
decision rules give, per threshold, the rates over the ``N`` models (TPR, FNR of the positive sample; FPR, TNR
of the negative one):

* single threshold ``t``, predict positive when ``conf >= t``, for ``t`` in
  ``linspace(lo, hi, ceil((hi - lo) * 100))``, ``lo, hi`` the pooled min and max;
* double threshold ``(t_l, t_r)``, predict positive when ``t_l <= conf <= t_r``, the positive sample being
  here the peakier one (the smaller range ``w``; on a tie, the negative sample of the median rule). Right
  thresholds ``linspace(min + w - 2, max + 2, ceil(range * 100))`` (min, max of the peakier sample, range that
  of the grid), and for each right threshold the 400 left thresholds ``linspace(t_r - w - 2, t_r - w + 2, 400)``.

Per threshold ``eps_t = inf`` when FPR = FNR = 0 and TPR = TNR = 1; the threshold is discarded when exactly
one of FPR, FNR is 0, or when both logarithms below are undefined (FPR = FNR = 1); otherwise

    eps_t = max(0, log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR)),   delta = 1e-5,

the larger of the defined terms. ``eps_i`` is the maximum over the kept thresholds, clipped to ``[0, 50]``.
An example with no kept threshold (for example both samples the same constant) raises ``ValueError``: the
epsilon is undefined there.

**Forget score** (:func:`forget_score`): ``max_eps = ceil(log(N - 1))``; an example with ``eps_i`` in
``[b/2, (b+1)/2)`` earns ``2^-b`` points while ``(b+1)/2 <= max_eps`` and 0 beyond; the score is the mean over
the ``F`` examples (1: indistinguishable from retraining, 0: fully distinguishable). Small ``N`` is noisy:
two independent samples of 32 draws of N(0, 1) score about 0.2 (``benchmarks/forgetting_quality.py`` measures
this ceiling), so report the score of two sets of retrained models beside a method's. **Final score**
(:func:`final_score`) multiplies it by the retain- and test-accuracy ratios of unlearned to retrained models.

**Computation.** No threshold grid is materialised. A threshold's rates depend only on where it falls among
the ``2N`` pooled sorted confidences ``s_1 <= ... <= s_2N``: a threshold with ``k`` values below it predicts
``N - below[k]`` of a side positive, a window ``[t_l, t_r]`` with ``k`` values below ``t_l`` and ``m`` values
``<= t_r`` holds ``below[m] - below[k]`` of a side, and a per-``N`` table gives ``eps_t`` for every pair of
counts. So each family only needs to know which gaps ``(s_k, s_{k+1}]`` hold a point of its grids: the first
grid point above ``s_k`` has index ``#{points <= s_k}``, located by the grid's closed form and settled by one
exact comparison with the grid point nearest to ``s_k``. Grid points are rounded exactly as
``numpy.linspace`` rounds them (``start + i * step``, the last one ``stop``; the product is split so that a
fused multiply-add cannot change it). For the double family this is ``401 x (2N + 1)`` gaps per example
(one row per right threshold), whose hits are or-ed over the right thresholds sharing ``m`` into a
``[2N + 1, 2N + 1]`` table of windows, instead of ``N x 160,400`` comparisons per side; the numbers are the
same. Examples are vectorised, in chunks of ``chunk_size`` through ``jax.lax.map``; memory grows as
``chunk_size * 401 * (2N + 1)``.

**Precision.** The grid sizes ``ceil(range * 100)`` and the grid points are float64 quantities (400 or 401
right thresholds depending on the last bit of a range). Called on concrete arrays, every public function here
computes in float64 under a scoped ``jax.enable_x64`` (whatever the global setting) and returns numpy values:
these agree with a float64 numpy port of the rules to 1e-6 (``tests/metrics/test_metrics_forgetting_quality.py``).
Traced inside a caller's ``jax.jit`` the computation runs in the traced dtype: exact in float64 (with
``jax_enable_x64``), in float32 the same rules on float32 grids, which can shift a grid point past a confidence
and change ``eps_i`` by one step of the table. The rates are the exact fractions ``k / N`` in the computation's
dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn._validation import check_labels, check_number, check_positive_int, is_concrete, raise_if
from jaxunlearn.curvature.chunks import chunked_map

DELTA = 1e-5
EPSILON_CAP = 50.0
SPIKE_RATIO = 0.01  # min(range) / max(range) below this: eps = EPSILON_CAP
_THRESHOLDS_PER_UNIT = 100
_BUFFER = 2.0  # double family: right thresholds reach 2 beyond the peakier sample, left ones +-2 around t_r - w
_NUM_LEFT = 400  # ceil(2 * buffer * 100)
_RIGHT_SLOTS = 401  # ceil((4 + rounding) * 100) is 400 or 401 for confidences far below 1e12
_LOG_TINY = math.log(1e-45)


class ForgettingQuality(NamedTuple):
    """Result of :func:`forgetting_quality`."""

    epsilons: Any  # [F] eps_i in [0, 50]
    forget_score: Any  # [] in [0, 1]


def _in_float64(fn: Callable, arrays: tuple, *static: Any) -> Any:
    """``fn(*arrays, *static)``; concrete arrays run in float64 under ``jax.enable_x64`` and return numpy values.

    Floating arrays are converted to float64, integer ones keep their dtype. Traced arrays are passed as they
    are (the computation then follows their dtype).
    """
    if not is_concrete(arrays):
        return fn(*arrays, *static)
    with jax.enable_x64(True):
        converted = []
        for a in arrays:
            a = np.asarray(a)
            converted.append(jnp.asarray(a, jnp.float64 if np.issubdtype(a.dtype, np.inexact) else a.dtype))
        return jax.device_get(fn(*converted, *static))


def _float_dtype(*arrays: Any) -> Any:
    """The floating dtype of the computation: that of the inputs, at least float32."""
    return jnp.result_type(*arrays, jnp.float32)


# --------------------------------------------------------------------------------------------------------------
# Logit-scaled confidence


def _confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim < 1:
        raise ValueError(f"logits must have a trailing class axis [..., C]; got shape {logits.shape}.")
    num_classes = logits.shape[-1]
    labels = jnp.asarray(labels)
    try:
        labels = jnp.broadcast_to(labels, logits.shape[:-1])
    except ValueError:
        raise ValueError(
            f"labels of shape {labels.shape} do not broadcast to the logits' leading shape {logits.shape[:-1]}."
        ) from None
    check_labels(labels, num_classes)
    z = logits.astype(_float_dtype(logits))
    z = z - jnp.max(z, axis=-1, keepdims=True)
    is_label = jnp.arange(num_classes) == labels[..., None]
    log_total = jax.nn.logsumexp(z, axis=-1)
    log_p_label = jnp.sum(jnp.where(is_label, z, 0.0), axis=-1) - log_total
    log_p_rest = jax.nn.logsumexp(jnp.where(is_label, -jnp.inf, z), axis=-1) - log_total
    return jnp.logaddexp(log_p_label, _LOG_TINY) - jnp.logaddexp(log_p_rest, _LOG_TINY)


def logit_scaled_confidence(logits: Any, labels: Any) -> Any:
    """Logit-scaled confidence of the label, ``log(p_y + 1e-45) - log(sum_{k != y} p_k + 1e-45)``.

    ``p = softmax(logits)``. Computed as ``logaddexp(log p_y, log 1e-45) - logaddexp(log p_rest, log 1e-45)``
    with the log-probabilities from log-sum-exps of the max-shifted logits, so neither a saturated softmax nor
    an underflowing tail loses precision; the confidence is bounded by ``|log 1e-45| ~ 103.6``.

    Args:
        logits: ``[..., C]`` (for example ``[N models, F examples, C]``).
        labels: integer ``[...]``, broadcastable to ``logits.shape[:-1]`` (for example ``[F]``).

    Returns:
        ``[...]``: float64 numpy array for concrete inputs (see the module's *Precision*), else a JAX array of the
        logits' floating dtype.
    """
    return _in_float64(_confidence, (logits, labels))


# --------------------------------------------------------------------------------------------------------------
# Per-example epsilon


def _epsilon_table(num_models: int, delta: Any, dtype: Any) -> jax.Array:
    """``[N + 1, N + 1]``: ``eps_t`` (before the cap) when ``a`` positives and ``b`` negatives are predicted
    positive; ``inf`` on perfect separation, ``-inf`` for a discarded threshold."""
    a = jnp.arange(num_models + 1)[:, None]
    b = jnp.arange(num_models + 1)[None, :]
    fpr = (b / num_models).astype(dtype)
    fnr = ((num_models - a) / num_models).astype(dtype)
    separated = (b == 0) & (a == num_models)  # FPR = FNR = 0, TPR = TNR = 1
    one_zero = ((b == 0) | (a == num_models)) & ~separated
    eps = jnp.fmax(jnp.log(1 - delta - fpr) - jnp.log(fnr), jnp.log(1 - delta - fnr) - jnp.log(fpr))
    discarded = one_zero | jnp.isnan(eps)  # NaN: both terms undefined (FPR = FNR = 1)
    return jnp.where(separated, jnp.inf, jnp.where(discarded, -jnp.inf, jnp.maximum(eps, 0.0)))


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x = hi + lo`` exactly, ``hi`` keeping the upper half of the significand, ``lo`` the rest.

    ``i * hi`` and ``i * lo`` are then exact for integers ``i`` below ``2^(half the significand)``, so
    ``i * hi + i * lo`` rounds once to the correctly rounded ``i * x`` even where the compiler fuses the
    multiply-add.
    """
    bits = jnp.finfo(x.dtype).bits
    keep = (jnp.finfo(x.dtype).nmant + 1) // 2
    int_dtype = {32: jnp.int32, 64: jnp.int64}[bits]
    mask = ~((1 << keep) - 1)
    hi = jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(x, int_dtype) & mask, x.dtype)
    return hi, x - hi


def _linspace_at(i: jax.Array, start: jax.Array, stop: jax.Array, num: jax.Array) -> jax.Array:
    """``numpy.linspace(start, stop, num)[i]`` for ``0 <= i < num`` (integer-valued ``i``), rounded as numpy
    rounds it."""
    step = (stop - start) / jnp.maximum(num - 1, 1)
    step_hi, step_lo = _split(step)
    fi = i.astype(step.dtype)
    value = (fi * step_hi + fi * step_lo) + start
    return jnp.where((i == num - 1) & (num > 1), stop, value)


def _count_at_most(x: jax.Array, start: jax.Array, stop: jax.Array, num: jax.Array) -> jax.Array:
    """``#{i < num : numpy.linspace(start, stop, num)[i] <= x}`` without materialising the grid (broadcasts).

    The grid is non-decreasing and ``q = (x - start) / step`` places ``x`` among its points to far better than
    half an index, so with ``k = round(q)`` every index below ``k`` counts, every index above ``k`` does not,
    and grid point ``k`` is compared exactly. Every use has ``stop > start`` whenever ``num > 1``.
    """
    step = (stop - start) / jnp.maximum(num - 1, 1)
    k = jnp.clip(jnp.round((x - start) * (1 / step)), 0, jnp.maximum(num - 1, 0))
    exact = (num >= 1) & (_linspace_at(k, start, stop, num) <= x)
    return k.astype(jnp.int32) + exact.astype(jnp.int32)


def _gaps_hit(sorted_values: jax.Array, start: jax.Array, stop: jax.Array, num: jax.Array) -> jax.Array:
    """``[..., 2N + 1]``: whether a point of the grid lies in ``(s_k, s_{k+1}]`` (``s_0 = -inf``,
    ``s_{2N+1} = inf``), i.e. whether some threshold has exactly ``k`` values below it.

    The first grid point above ``s_k`` has index ``#{points <= s_k}``; the gap holds it when it is ``<= s_{k+1}``.
    """
    infinity = jnp.full((1,), jnp.inf, sorted_values.dtype)
    lower = jnp.concatenate([-infinity, sorted_values])
    upper = jnp.concatenate([sorted_values, infinity])
    start, stop, num = start[..., None], stop[..., None], num[..., None]
    first_above = _count_at_most(lower, start, stop, num)
    return (first_above < num) & (_linspace_at(first_above, start, stop, num) <= upper)


def _grid_size(low: jax.Array, high: jax.Array) -> jax.Array:
    return jnp.ceil((high - low) * _THRESHOLDS_PER_UNIT).astype(jnp.int32)


def _median(sorted_values: jax.Array) -> jax.Array:
    n = sorted_values.shape[0]
    return (sorted_values[(n - 1) // 2] + sorted_values[n // 2]) / 2


def _example_epsilon(unlearned: jax.Array, retrained: jax.Array, table: jax.Array):
    """``(eps_i, problem)`` for one example from its ``[N]`` confidences on each side (``problem``: one of
    ``_PROBLEMS``' indices, 0 for none)."""
    n = unlearned.shape[0]
    u, r = jnp.sort(unlearned), jnp.sort(retrained)
    retrained_positive = _median(r) > _median(u)
    range_u, range_r = u[-1] - u[0], r[-1] - r[0]
    range_pos = jnp.where(retrained_positive, range_r, range_u)
    range_neg = jnp.where(retrained_positive, range_u, range_r)
    smallest, largest = jnp.minimum(range_pos, range_neg), jnp.maximum(range_pos, range_neg)
    spike = smallest / largest < SPIKE_RATIO  # 0 / 0 is NaN: two constant samples are no spike

    # the 2N pooled values in order, and how many of each side lie among the k smallest (k = 0..2N)
    pooled, from_u = jax.lax.sort(
        (jnp.concatenate([u, r]), jnp.concatenate([jnp.ones(n, jnp.int32), jnp.zeros(n, jnp.int32)])), num_keys=1
    )
    below_u = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(from_u)])
    below_r = jnp.arange(2 * n + 1, dtype=jnp.int32) - below_u

    # single threshold: k values below t leave n - below_pos[k] positives and n - below_neg[k] negatives above
    below_pos = jnp.where(retrained_positive, below_r, below_u)
    below_neg = jnp.where(retrained_positive, below_u, below_r)
    single_hit = _gaps_hit(pooled, pooled[0], pooled[-1], _grid_size(pooled[0], pooled[-1]))
    single = jnp.where(single_hit, table[n - below_pos, n - below_neg], -jnp.inf)

    # double threshold, the peakier side positive: with m values <= t_r and k values < t_l the window holds
    # below[m] - below[k] of each side; window_eps[m, k] is its eps
    peak_is_pos = range_pos < range_neg
    peak_is_r = jnp.where(peak_is_pos, retrained_positive, ~retrained_positive)
    peak_min = jnp.where(peak_is_r, r[0], u[0])
    peak_max = jnp.where(peak_is_r, r[-1], u[-1])
    below_peak = jnp.where(peak_is_r, below_r, below_u)
    below_other = jnp.where(peak_is_r, below_u, below_r)
    in_peak = jnp.maximum(below_peak[:, None] - below_peak[None, :], 0)
    in_other = jnp.maximum(below_other[:, None] - below_other[None, :], 0)
    window_eps = table[in_peak, in_other]  # [2N + 1, 2N + 1]
    right_low, right_high = (peak_min + smallest) - _BUFFER, peak_max + _BUFFER
    right_num = _grid_size(right_low, right_high)
    slots = jnp.arange(_RIGHT_SLOTS)
    rights = _linspace_at(slots, right_low, right_high, right_num)  # [401]
    at_most_right = jnp.sum(pooled[None, :] <= rights[:, None], axis=1, dtype=jnp.int32)  # [401]
    centres = rights - smallest
    left_hit = _gaps_hit(pooled, centres - _BUFFER, centres + _BUFFER, jnp.asarray(_NUM_LEFT))  # [401, 2N + 1]
    left_hit &= (slots < right_num)[:, None]
    # the (m, k) that some threshold pair realises: hits of the right thresholds with m_j = m, or-ed
    realised = jnp.zeros((2 * n + 1, 2 * n + 1), bool).at[at_most_right].max(left_hit, indices_are_sorted=True)
    double = jnp.where(realised, window_eps, -jnp.inf)

    best = jnp.maximum(jnp.max(single), jnp.max(double))  # -inf: no threshold kept
    eps = jnp.where(spike, EPSILON_CAP, jnp.clip(best, 0.0, EPSILON_CAP))
    finite = jnp.all(jnp.isfinite(unlearned)) & jnp.all(jnp.isfinite(retrained))
    problem = jnp.select([~finite, spike, right_num > _RIGHT_SLOTS, best == -jnp.inf], [1, 0, 2, 3], 0)
    return eps, problem


_PROBLEMS = (
    None,
    "its confidences are not all finite (NaN or inf)",
    (
        f"its right-threshold grid needs more than {_RIGHT_SLOTS} points (confidences of |conf| ~ 1e12 and beyond "
        "round the grid's range)"
    ),
    (
        "no decision threshold is kept (each has exactly one of FPR, FNR equal to 0, e.g. both samples are the "
        "same constant), so its epsilon is undefined"
    ),
)


@functools.partial(jax.jit, static_argnames="chunk_size")
def _epsilon_kernel(unlearned: jax.Array, retrained: jax.Array, delta: Any, chunk_size: int):
    """``(eps [F], first, problem)`` from ``[N, F]`` confidences: the first example with a problem and its
    index in ``_PROBLEMS`` (0, 0 when there is none)."""
    dtype = _float_dtype(unlearned, retrained)
    table = _epsilon_table(unlearned.shape[0], delta, dtype)
    per_chunk = jax.vmap(_example_epsilon, in_axes=(0, 0, None))
    eps, problems = chunked_map(
        lambda chunk: per_chunk(chunk[0], chunk[1], table), (unlearned.T.astype(dtype), retrained.T.astype(dtype)),
        chunk_size,
    )
    first = jnp.argmax(problems > 0)
    return eps, first, problems[first]


def _epsilons(unlearned_conf: Any, retrained_conf: Any, delta: float, chunk_size: int) -> jax.Array:
    shapes = jnp.shape(unlearned_conf), jnp.shape(retrained_conf)
    if len(shapes[0]) != 2 or shapes[0] != shapes[1]:
        raise ValueError(
            "unlearned and retrained confidences must both be [N models, F examples] of the same shape; got "
            f"{shapes[0]} and {shapes[1]}."
        )
    num_models, num_examples = shapes[0]
    if num_models < 2 or num_examples < 1:
        raise ValueError(f"need at least 2 models and 1 example; got N = {num_models}, F = {num_examples}.")
    eps, first, problem = _epsilon_kernel(unlearned_conf, retrained_conf, delta, chunk_size)
    raise_if(problem > 0, lambda i, p: ValueError(f"forget example {int(i)}: {_PROBLEMS[int(p)]}."), first, problem)
    return eps


def per_example_epsilon(
    unlearned_conf: Any, retrained_conf: Any, *, delta: float = DELTA, chunk_size: int = 32
) -> Any:
    """``eps_i`` per forget example from the confidences of ``N`` unlearned and ``N`` retrained models.

    The hypothesis-testing epsilon of the module docstring: larger-median side positive, spike rule
    (``min(r) / max(r) < 0.01 -> 50``), the single- and double-threshold families on the specification's
    grids, ``eps_t = max(0, log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)`` (``inf`` on
    perfect separation, a threshold with exactly one of FPR, FNR zero discarded), maximum over the kept
    thresholds, clipped to ``[0, 50]``. Independent of the order of the models.

    Args:
        unlearned_conf: ``[N, F]`` logit-scaled confidences (:func:`logit_scaled_confidence`) of the forget
            examples under the ``N`` unlearned models.
        retrained_conf: ``[N, F]`` the same under ``N`` models retrained without the forget set.
        delta: the ``delta`` of ``(eps, delta)``; the challenge used ``1e-5``.
        chunk_size: examples per step of ``jax.lax.map``; memory grows as
            ``chunk_size * 401 * (2N + 1)`` table entries.

    Returns:
        ``[F]`` ``eps_i`` in ``[0, 50]``: float64 numpy for concrete inputs (see the module's *Precision*),
        else a JAX array of the inputs' floating dtype.

    Raises:
        ValueError: on mismatched shapes, ``N < 2``, non-finite confidences, or an example where no threshold
            is kept (under ``jax.jit`` staged as a run-time error; see :func:`jaxunlearn.keep_errors`).
    """
    delta = check_number(delta, "delta", low=0.0, high=1.0)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    return _in_float64(_epsilons, (unlearned_conf, retrained_conf), delta, chunk_size)


# --------------------------------------------------------------------------------------------------------------
# Scores


def _forget_score(epsilons: Any, num_models: int) -> jax.Array:
    epsilons = jnp.asarray(epsilons)
    max_eps = math.ceil(math.log(num_models - 1))
    num_buckets = 2 * max_eps  # buckets [b/2, (b+1)/2) with (b+1)/2 <= max_eps
    bucket = jnp.maximum(jnp.floor(2 * epsilons), 0)
    points = jnp.where(bucket < num_buckets, 0.5**bucket, 0.0)  # NaN or beyond the last bucket: 0
    return jnp.mean(points)


def forget_score(epsilons: Any, num_models: int) -> Any:
    """Forget score: mean over examples of ``2^-b`` for ``eps_i`` in ``[b/2, (b+1)/2)``, ``(b+1)/2 <= max_eps``.

    ``max_eps = ceil(log(N - 1))`` (8 buckets at ``N = 32``: ``eps_i < 0.5`` scores 1, ``[0.5, 1)`` 1/2, ...,
    ``[3.5, 4)`` 1/128, ``eps_i >= 4`` 0).

    Args:
        epsilons: ``[F]`` ``eps_i`` (:func:`per_example_epsilon`).
        num_models: ``N``, the number of models per side (at least 2).

    Returns:
        ``[]`` score in ``[0, 1]``: a numpy float64 for concrete inputs, else a JAX scalar.
    """
    num_models = check_positive_int(num_models, "num_models")
    if num_models < 2:
        raise ValueError(f"num_models must be at least 2; got {num_models}.")
    return _in_float64(_forget_score, (epsilons,), num_models)


def final_score(
    forget_score: Any,
    retain_acc_unlearned: Any,
    retain_acc_retrained: Any,
    test_acc_unlearned: Any,
    test_acc_retrained: Any,
) -> Any:
    """Utility-adjusted score ``forget_score * (RA_u / RA_r) * (TA_u / TA_r)``.

    Args:
        forget_score: ``[]`` from :func:`forget_score`.
        retain_acc_unlearned, retain_acc_retrained: ``[]`` retain-set accuracies, each averaged over the ``N``
            unlearned (resp. retrained) models.
        test_acc_unlearned, test_acc_retrained: ``[]`` test accuracies, averaged likewise.

    Returns:
        ``[]`` the final score (same type as the inputs' arithmetic: float, numpy or JAX scalar).
    """
    return forget_score * (retain_acc_unlearned / retain_acc_retrained) * (test_acc_unlearned / test_acc_retrained)


def _forgetting_quality(unlearned_logits, retrained_logits, labels, delta, chunk_size):
    unlearned_logits, retrained_logits = jnp.asarray(unlearned_logits), jnp.asarray(retrained_logits)
    if unlearned_logits.ndim != 3 or unlearned_logits.shape != retrained_logits.shape:
        raise ValueError(
            "unlearned and retrained logits must both be [N models, F examples, C classes] of the same shape; "
            f"got {unlearned_logits.shape} and {retrained_logits.shape}."
        )
    if jnp.shape(labels) != unlearned_logits.shape[1:2]:
        raise ValueError(f"labels must be [F] = {unlearned_logits.shape[1:2]}; got shape {jnp.shape(labels)}.")
    eps = _epsilons(_confidence(unlearned_logits, labels), _confidence(retrained_logits, labels), delta, chunk_size)
    return ForgettingQuality(eps, _forget_score(eps, unlearned_logits.shape[0]))


def forgetting_quality(
    unlearned_logits: Any, retrained_logits: Any, labels: Any, *, delta: float = DELTA, chunk_size: int = 32
) -> ForgettingQuality:
    """The challenge's forgetting quality of one forget set: per-example ``eps_i`` and the forget score.

    :func:`logit_scaled_confidence` of each model's logits, :func:`per_example_epsilon`, then
    :func:`forget_score` with ``N`` models.

    Args:
        unlearned_logits: ``[N, F, C]`` logits of the ``F`` forget examples under the ``N`` unlearned models.
        retrained_logits: ``[N, F, C]`` the same under ``N`` models retrained without the forget set.
        labels: integer ``[F]`` labels of the forget examples.
        delta, chunk_size: as in :func:`per_example_epsilon`.

    Returns:
        :class:`ForgettingQuality` ``(epsilons [F], forget_score [])``: numpy float64 for concrete inputs, else
        JAX arrays.
    """
    delta = check_number(delta, "delta", low=0.0, high=1.0)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    return _in_float64(_forgetting_quality, (unlearned_logits, retrained_logits, labels), delta, chunk_size)
