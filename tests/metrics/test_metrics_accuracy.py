"""Accuracy reductions and the four split accuracies against a brute-force numpy loop."""

import math
from typing import NamedTuple

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import metrics


def linear_logits(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def _problem(n=53, d=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(d, c)), jnp.float32), "b": jnp.zeros(c, jnp.float32)}
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, c, size=n).astype(np.int32)
    return params, x, y


def _reference(params, x, y, batch_size, reduction):
    pred = np.argmax(x @ np.asarray(params["w"]) + np.asarray(params["b"]), axis=1)
    correct = pred == y
    if reduction == "sample":
        return correct.mean()
    batches = [correct[i : i + batch_size].mean() for i in range(0, len(y), batch_size)]
    return float(np.mean(batches))


class AccuracyTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy_loop(self):
        params, x, y = _problem()
        for reduction in ("sample", "batch_mean"):
            for batch_size in (8, 100):
                fn = self.variant(
                    lambda p, xx, yy, r=reduction, b=batch_size: metrics.accuracy(
                        linear_logits, p, (xx, yy), batch_size=b, reduction=r
                    )
                )
                got = float(fn(params, x, y))
                want = _reference(params, x, y, batch_size, reduction)
                assert got == pytest.approx(want, abs=1e-6), (reduction, batch_size)

    def test_batch_mean_differs_from_sample_weighting_with_a_short_last_batch(self):
        # 9 examples in batches of 8: batch 1 all correct (8/8), batch 2 wrong (0/1)
        params = {"w": jnp.eye(2, dtype=jnp.float32), "b": jnp.zeros(2, jnp.float32)}
        x = np.tile(np.array([[1.0, 0.0]], np.float32), (9, 1))
        y = np.array([0] * 8 + [1], np.int32)
        assert float(metrics.accuracy(linear_logits, params, (x, y), batch_size=8)) == pytest.approx(8 / 9)
        got = metrics.accuracy(linear_logits, params, (x, y), batch_size=8, reduction="batch_mean", percent=True)
        assert float(got) == pytest.approx(50.0)


class _DS(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    num_classes: int = 3
    name: str = "toy"


class _Split(NamedTuple):
    forget_train: _DS
    retain_train: _DS
    forget_test: _DS
    retain_test: _DS


def test_split_accuracies_uses_each_part_and_nan_for_empty():
    params, x, y = _problem(n=60)
    split = _Split(_DS(x[:10], y[:10]), _DS(x[10:40], y[10:40]), _DS(x[:0], y[:0]), _DS(x[40:], y[40:]))
    got = metrics.split_accuracies(linear_logits, params, split, batch_size=16)
    assert got["forget_train"] == pytest.approx(_reference(params, x[:10], y[:10], 16, "sample"))
    assert got["retain_train"] == pytest.approx(_reference(params, x[10:40], y[10:40], 16, "sample"))
    assert got["retain_test"] == pytest.approx(_reference(params, x[40:], y[40:], 16, "sample"))
    assert math.isnan(got["forget_test"])


def test_bad_input_is_named():
    params, x, y = _problem()
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy(linear_logits, params, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="disagree"):
        metrics.accuracy(linear_logits, params, (x, y[:5]))
    with pytest.raises(ValueError, match="reduction"):
        metrics.accuracy(linear_logits, params, (x, y), reduction="mean")
    with pytest.raises(ValueError, match="batch_size"):
        metrics.accuracy(linear_logits, params, (x, y), batch_size=0)
    with pytest.raises(TypeError, match="Dataset"):
        metrics.accuracy(linear_logits, params, x)
    with pytest.raises(TypeError, match="ForgetSplit"):
        metrics.split_accuracies(linear_logits, params, (x, y))
    bad = {"w": params["w"].at[0, 0].set(jnp.nan), "b": params["b"]}
    with pytest.raises(FloatingPointError, match="non-finite"):
        metrics.accuracy(linear_logits, bad, (x, y))


def test_labels_outside_the_classes_and_misfit_features_are_named():
    """C = 3 logits: label 3 or -1 is rejected with its values and the valid range; so is a part of a split."""
    params, x, y = _problem()
    for bad in (3, -1):
        with pytest.raises(ValueError, match=rf"data labels y hold values from {min(bad, 0)} to {max(bad, 2)}.*0\.\.2"):
            metrics.accuracy(linear_logits, params, (x, _set(y, bad)))
    split = _Split(_DS(x[:10], _set(y[:10], 7)), _DS(x[10:40], y[10:40]), _DS(x[:0], y[:0]), _DS(x[40:], y[40:]))
    with pytest.raises(ValueError, match=r"split\.forget_train labels y hold values from 0 to 7"):
        metrics.split_accuracies(linear_logits, params, split)
    with pytest.raises(ValueError, match=r"data does not fit the model: per-example shapes \(5,\)"):
        metrics.accuracy(linear_logits, params, (np.ones((53, 5), np.float32), y))


def _set(y, value):
    """A copy of ``y`` with its first entry set to ``value``."""
    y = np.array(y)
    y[0] = value
    return y
