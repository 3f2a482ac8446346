"""JS / KL / L1 / activation distance and ZRF against numpy formulas written out term by term."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import metrics


def linear_logits(params, x):
    return x @ params["w"]


def _probs(rng, n=9, c=4, scale=2.0):
    z = rng.normal(size=(n, c)) * scale
    e = np.exp(z - z.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _np_kl(p, q):  # scalar KL over one row, explicit loop with 0 log 0 = 0
    return sum(pi * (np.log(pi) - np.log(qi)) for pi, qi in zip(p, q) if pi > 0)


class DistanceTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_against_numpy(self):
        rng = np.random.default_rng(0)
        p, q = _probs(rng), _probs(rng)
        p[0] = [1.0, 0.0, 0.0, 0.0]
        p64, q64 = p.astype(np.float64), q.astype(np.float64)
        m = 0.5 * (p64 + q64)
        js = [0.5 * _np_kl(a, c) + 0.5 * _np_kl(b, c) for a, b, c in zip(p64, q64, m)]
        np.testing.assert_allclose(self.variant(metrics.js_divergence)(p, q), js, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            self.variant(metrics.kl_categorical)(p, q), [_np_kl(a, b) for a, b in zip(p64, q64)], rtol=1e-5, atol=1e-6
        )
        assert float(self.variant(metrics.prediction_l1)(p, q)) == pytest.approx(np.abs(p64 - q64).sum(1).mean(), 1e-5)
        want = np.sqrt(((p64 - q64) ** 2).sum(1)).mean()
        assert float(self.variant(metrics.activation_distance)(p, q)) == pytest.approx(want, 1e-5)
        assert np.all(np.asarray(metrics.js_divergence(p, q)) <= np.log(2) + 1e-6)
        np.testing.assert_allclose(metrics.js_divergence(p, p), 0.0, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_zrf_reductions_and_original_divergence(self):
        rng = np.random.default_rng(1)
        p, q = _probs(rng, n=11, c=5), _probs(rng, n=11, c=5)
        p64, q64 = p.astype(np.float64), q.astype(np.float64)
        m = 0.5 * (p64 + q64)
        js = np.array([0.5 * _np_kl(a, c) + 0.5 * _np_kl(b, c) for a, b, c in zip(p64, q64, m)])
        # F.kl_div(log p, m) = sum m (log m - log p) = KL(m || p), averaged over N * C elements
        original = np.array([0.5 * _np_kl(c, a) + 0.5 * _np_kl(c, b) for a, b, c in zip(p64, q64, m)])
        zrf = self.variant(lambda a, b, r, d: metrics.zrf_score(a, b, reduction=r, divergence=d), static_argnums=(2, 3))
        assert float(zrf(p, q, "example", "js")) == pytest.approx(1 - js.mean(), 1e-5)
        assert float(zrf(p, q, "element", "js")) == pytest.approx(1 - js.sum() / p.size, 1e-5)
        assert float(zrf(p, q, "element", "original")) == pytest.approx(1 - original.sum() / p.size, 1e-5)
        assert float(zrf(p, q, "example", "original")) == pytest.approx(1 - original.mean(), 1e-5)


def test_data_level_wrappers_match_array_functions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(13, 3)).astype(np.float32)
    a = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
    b = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
    p, q = metrics.predict_probs(linear_logits, a, x), metrics.predict_probs(linear_logits, b, x)
    got = metrics.distance_to_retrained(linear_logits, a, b, x, batch_size=5)
    assert got["js"] == pytest.approx(float(jnp.mean(metrics.js_divergence(p, q))), 1e-6)
    assert got["l1"] == pytest.approx(float(metrics.prediction_l1(p, q)), 1e-6)
    assert got["activation"] == pytest.approx(float(metrics.activation_distance(p, q)), 1e-6)
    assert metrics.zrf(linear_logits, a, b, x, batch_size=4) == pytest.approx(float(metrics.zrf_score(p, q)), 1e-6)
    assert metrics.zrf(linear_logits, a, a, x) == pytest.approx(1.0, abs=1e-6)


def test_bad_input_is_named():
    p = np.full((3, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="same shape"):
        metrics.js_divergence(p, np.full((4, 2), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        metrics.prediction_l1(p[0], p[0])
    with pytest.raises(TypeError, match="floating"):
        metrics.activation_distance(np.ones((3, 2), np.int32), np.ones((3, 2), np.int32))
    with pytest.raises(ValueError, match="reduction"):
        metrics.zrf_score(p, p, reduction="mean")
    with pytest.raises(ValueError, match="divergence"):
        metrics.zrf_score(p, p, divergence="kl")


def test_inputs_that_do_not_fit_the_model_are_named():
    rng = np.random.default_rng(3)
    a = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
    x = rng.normal(size=(5, 2)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^x does not fit the model: per-example shapes \(2,\)"):
        metrics.zrf(linear_logits, a, a, x)
    with pytest.raises(ValueError, match=r"^x does not fit the model"):
        metrics.distance_to_retrained(linear_logits, a, a, x)
