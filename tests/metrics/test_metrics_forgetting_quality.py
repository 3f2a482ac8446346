"""Forgetting quality (the NeurIPS 2023 challenge's epsilon score) against a brute-force numpy port of its rules.

The port below materialises every threshold of both families per example, exactly as the rules state them;
the library computes the same numbers from the sorted confidences without grids.
"""

import functools
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from forgetting_quality_reference import ref_confidence, ref_epsilons, ref_forget_score

from jaxunlearn import metrics

DELTA = 1e-5


# ---------------------------------------------------------------------------------------------------- data


def mixed_confidences(seed, n, f):
    """[n, f] unlearned and retrained confidences: Gaussian shifts and spreads, ties, integer grids, spikes."""
    rng = np.random.default_rng(seed)
    u, r = np.empty((n, f)), np.empty((n, f))
    for i in range(f):
        kind = i % 5
        r[:, i] = rng.normal(rng.normal() * 3, rng.uniform(0.2, 3), n)
        u[:, i] = rng.normal(r[:, i].mean() + rng.normal() * rng.choice([0.3, 1.5, 6]), rng.uniform(0.2, 3), n)
        if kind == 1:  # ties inside and across the two sides
            u[:, i], r[:, i] = np.round(u[:, i] * 2) / 2, np.round(r[:, i] * 2) / 2
        elif kind == 2:  # small integers: ties, equal medians or ranges, confidences on the grids' end points
            u[:, i], r[:, i] = (rng.integers(0, 4, n), rng.integers(0, 4, n)) if i % 2 else (
                rng.integers(-3, 4, n), rng.integers(-2, 3, n))
        elif kind == 3 and i % 2:  # a spike
            u[:, i] = 1.25
        elif kind == 3:  # ranges near the spike ratio
            u[:, i] = r[:, i].mean() + (r[:, i] - r[:, i].mean()) * rng.choice([0.009, 0.011, 0.05])
    return u, r


# ---------------------------------------------------------------------------------------------------- tests


def test_logit_scaled_confidence_matches_float64_numpy():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(5, 7, 10)) * np.array([1, 3, 10, 60, 400])[:, None, None]).astype(np.float32)
    labels = rng.integers(0, 10, 7)
    want = ref_confidence(logits, labels)
    got = metrics.logit_scaled_confidence(logits, labels)
    assert got.dtype == np.float64 and got.shape == (5, 7)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.abs(want).max() > 100  # saturated softmax: p_rest underflows to 0 and the 1e-45 decides
    # traced in float32: the same log-sum-exp form, float32 rounding
    f32 = jax.jit(metrics.logit_scaled_confidence)(logits[:3], labels)
    assert f32.dtype == jnp.float32
    np.testing.assert_allclose(f32, want[:3], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("seed,n", [(0, 8), (1, 13), (2, 32), (3, 32), (4, 21)])
def test_epsilons_match_bruteforce_port(seed, n):
    u, r = mixed_confidences(seed, n, 10)
    want = ref_epsilons(u, r)
    got = metrics.per_example_epsilon(u, r)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert 0 < np.sum((want > 0) & (want < 50))  # the comparison covers finite, capped and zero epsilons


def test_boundary_rules():
    # columns 0-1, equal medians: the unlearned side is positive; column 2, equal ranges: the negative side is
    # the peakier one (the other choices give 0.693 and 0.405 instead of 0.693, 0.693 instead of 1.386);
    # column 3, range ratio exactly 0.01: no spike; column 4, a window holding all of one side and none of the
    # other (FPR = FNR = 1, both logarithms undefined) is discarded beside perfect separation
    u = np.array([[2, 2, 2, 3, 1, 3, 2, 0], [3, 1, 1, 2, 0, 0, 1, 0], [1, 2, 3, 1, 1, 3, 3, 3],
                  [0, 0.2, 0.4, 0.5, 0.6, 0.8, 0.9, 1], np.linspace(0, 0.5, 8)]).T
    r = np.array([[1, 3, 2, 0, 3, 2, 3, 0], [2, 1, 0, 3, 1, 2, 0, 1], [1, 2, 3, 2, 3, 2, 2, 1],
                  [0, 0.3, 0.7, 1, 30, 60, 90, 100], np.linspace(1, 2, 8)]).T
    want = ref_epsilons(u, r)
    np.testing.assert_allclose(want, [0.6931072, 0.6931072, 1.3862744, 1.6094219, 50], atol=1e-6)
    np.testing.assert_allclose(metrics.per_example_epsilon(u, r), want, rtol=0, atol=1e-6)


def test_right_grid_sizes_400_and_401_both_covered():
    # the number of right thresholds, ceil((max + 2 - (min + w - 2)) * 100), is 400 or 401 by rounding alone
    rng = np.random.default_rng(7)
    u, r = rng.normal(0, 1, (16, 12)) * 3.1, rng.normal(0.3, 1, (16, 12)) * 2.7
    sizes = set()
    for i in range(12):
        peak = u[:, i] if np.ptp(u[:, i]) < np.ptp(r[:, i]) else r[:, i]
        w = np.ptp(peak)
        sizes.add(int(np.ceil((peak.max() + 2 - (peak.min() + w - 2)) * 100)))
    assert sizes == {400, 401}
    np.testing.assert_allclose(metrics.per_example_epsilon(u, r), ref_epsilons(u, r), rtol=0, atol=1e-6)


def test_grid_counts_match_numpy_linspace_exactly():
    # thresholds placed exactly on grid points and on the floats next to them: a grid point rounded
    # differently from numpy.linspace (for example by a fused multiply-add) would be counted on the wrong side
    fq = importlib.import_module("jaxunlearn.metrics.forgetting_quality")
    rng = np.random.default_rng(11)
    starts = rng.normal(size=48) * 30
    stops = starts + np.where(np.arange(48) % 2, 4 + rng.normal(size=48) * 1e-13, rng.uniform(0.005, 20, 48))
    nums = np.ceil((stops - starts) * 100).astype(np.int32)
    xs, want_counts = [], []
    for start, stop, num in zip(starts, stops, nums):
        grid = np.linspace(start, stop, num)
        on = grid[rng.choice(num, 20)]
        x = np.concatenate([on, np.nextafter(on, -np.inf), np.nextafter(on, np.inf), [start - 1, stop + 1]])
        xs.append(x)
        want_counts.append(np.sum(grid[None, :] <= x[:, None], axis=1))
    with jax.enable_x64(True):
        count = jax.jit(fq._count_at_most)(jnp.asarray(np.stack(xs)), starts[:, None], stops[:, None], nums[:, None])
        points = jax.jit(fq._linspace_at)(jnp.arange(nums.max())[None, :], starts[:, None], stops[:, None],
                                          nums[:, None])
    np.testing.assert_array_equal(count, np.stack(want_counts))
    for row, (start, stop, num) in zip(np.asarray(points), zip(starts, stops, nums)):
        np.testing.assert_array_equal(row[:num], np.linspace(start, stop, num))


def test_identical_samples_score_one():
    u = np.random.default_rng(1).normal(size=(16, 6))
    eps = metrics.per_example_epsilon(u, u.copy())
    np.testing.assert_array_equal(eps, 0.0)
    assert metrics.forget_score(eps, 16) == 1.0


def test_separated_samples_capped_and_score_zero():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(16, 5)) + 10
    r = rng.normal(size=(16, 5)) * 1.2
    eps = metrics.per_example_epsilon(u, r)
    np.testing.assert_array_equal(eps, 50.0)
    assert metrics.forget_score(eps, 16) == 0.0


def test_spike_gives_cap():
    r = np.random.default_rng(3).normal(size=(12, 4))
    u = np.full((12, 4), 0.3)
    np.testing.assert_array_equal(metrics.per_example_epsilon(u, r), 50.0)
    np.testing.assert_array_equal(metrics.per_example_epsilon(r, u), 50.0)


def test_epsilon_grows_with_gaussian_shift():
    rng = np.random.default_rng(4)
    r = rng.normal(size=(32, 24))
    means = [metrics.per_example_epsilon(rng.normal(size=(32, 24)) + mu, r).mean() for mu in (0.0, 0.5, 1.0, 2.0, 3.0)]
    assert np.all(np.diff(means) > 0), means


def test_invariant_to_model_order():
    u, r = mixed_confidences(5, 16, 10)
    rng = np.random.default_rng(5)
    base = metrics.per_example_epsilon(u, r)
    shuffled = metrics.per_example_epsilon(u[rng.permutation(16)], r[rng.permutation(16)])
    np.testing.assert_array_equal(base, shuffled)


def test_chunk_size_does_not_change_results():
    u, r = mixed_confidences(6, 12, 10)
    results = [metrics.per_example_epsilon(u, r, chunk_size=c) for c in (1, 3, 10, 64)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_and_no_jit_agree_in_float64(self):
        u, r = mixed_confidences(8, 13, 10)
        want = ref_epsilons(u, r)
        with jax.enable_x64(True):
            fn = self.variant(functools.partial(metrics.per_example_epsilon, chunk_size=4))
            got = fn(jnp.asarray(u), jnp.asarray(r))
            score = self.variant(functools.partial(metrics.forget_score, num_models=13))(jnp.asarray(want))
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-6)
        assert float(score) == pytest.approx(ref_forget_score(want, 13))


def test_float32_under_jit_follows_the_same_rules():
    # traced in float32 the grids are float32: the same rules, so equal on these data up to float32 rounding
    u, r = mixed_confidences(9, 16, 10)
    got = jax.jit(metrics.per_example_epsilon)(u.astype(np.float32), r.astype(np.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref_epsilons(u.astype(np.float32), r.astype(np.float32)), rtol=0, atol=1e-4)


@pytest.mark.parametrize("num_models", [2, 3, 8, 32, 512])
def test_forget_score_buckets_match_loop(num_models):
    eps = np.array([0.0, 0.2, 0.4999, 0.5, 0.99, 1.0, 1.7, 2.0, 2.5, 3.49, 3.5, 3.999, 4.0, 5.5, 7.0, 50.0])
    assert metrics.forget_score(eps, num_models) == pytest.approx(ref_forget_score(eps, num_models), abs=1e-15)


def test_final_score():
    assert metrics.final_score(0.5, 0.9, 0.95, 0.8, 0.85) == pytest.approx(0.5 * 0.9 / 0.95 * 0.8 / 0.85)


def test_forgetting_quality_end_to_end_matches_port():
    rng = np.random.default_rng(10)
    n, f, c = 16, 6, 10
    labels = rng.integers(0, c, f)
    retrained = rng.normal(size=(n, f, c)).astype(np.float32) * 2
    unlearned = (rng.normal(size=(n, f, c)) * 2 + 1.5 * (np.arange(c) == labels[:, None])).astype(np.float32)
    out = metrics.forgetting_quality(unlearned, retrained, labels)
    want = ref_epsilons(ref_confidence(unlearned, labels), ref_confidence(retrained, labels))
    np.testing.assert_allclose(out.epsilons, want, rtol=0, atol=1e-6)
    assert out.forget_score == pytest.approx(ref_forget_score(want, n))


def test_errors():
    both = np.c_[np.arange(8.0), np.ones(8), np.zeros(8)]  # example 1: both sides the same constant
    with pytest.raises(ValueError, match="example 1: no decision threshold"):
        metrics.per_example_epsilon(both, both.copy())
    with pytest.raises(ValueError, match="same shape"):
        metrics.per_example_epsilon(np.zeros((8, 3)), np.zeros((9, 3)))
    with pytest.raises(ValueError, match="example 0: its confidences are not all finite"):
        metrics.per_example_epsilon(np.full((8, 3), np.nan), np.zeros((8, 3)))
    with pytest.raises(ValueError, match="labels"):
        metrics.forgetting_quality(np.zeros((4, 3, 5)), np.zeros((4, 3, 5)), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="num_models"):
        metrics.forget_score(np.zeros(3), 1)
