"""1-NN KL estimator against a scikit-learn NearestNeighbors port of the original and the Gaussian closed form."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from jaxunlearn import metrics


def _sklearn_estimator(s1, s2):  # the seed's skl_estimator_efficient with k = 1
    n, m, d = len(s1), len(s2), float(s1.shape[1])
    rho = NearestNeighbors(n_neighbors=2, algorithm="kd_tree").fit(s1).kneighbors(s1, 2)[0][:, -1]
    nu = NearestNeighbors(n_neighbors=1, algorithm="kd_tree").fit(s2).kneighbors(s1, 1)[0][:, -1]
    return (d / n) * np.sum(np.log(nu / rho)) + np.log(m / (n - 1))


class KnnKLTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_sklearn_on_random_arrays(self):
        rng = np.random.default_rng(0)
        p = rng.normal(size=(40, 6))
        q = rng.normal(0.3, 1.2, size=(35, 6))
        fn = self.variant(lambda a, b: metrics.knn_kl_divergence(a, b, chunk_size=16))
        got = float(fn(p.astype(np.float32), q.astype(np.float32)))
        assert got == pytest.approx(_sklearn_estimator(p, q), rel=1e-3, abs=1e-3)

    def test_large_common_offset_does_not_cancel(self):
        # parameter samples of consecutive SG-MCMC steps: a large vector plus small moves
        rng = np.random.default_rng(1)
        base = rng.normal(size=(1, 50)) * 100.0
        p, q = base + 0.01 * rng.normal(size=(20, 50)), base + 0.012 * rng.normal(size=(20, 50))
        got = float(metrics.knn_kl_divergence(p.astype(np.float32), q.astype(np.float32)))
        assert got == pytest.approx(_sklearn_estimator(p - base, q - base), rel=1e-2, abs=1e-2)


def test_gaussian_closed_form():
    rng = np.random.default_rng(2)
    n, d = 2000, 2
    mu, s1, s2 = np.array([0.7, -0.4]), 1.0, 1.5
    p = rng.normal(size=(n, d)) * s1
    q = mu + rng.normal(size=(n, d)) * s2
    # KL(N(0, s1^2 I) || N(mu, s2^2 I))
    exact = 0.5 * (d * s1**2 / s2**2 + mu @ mu / s2**2 - d + 2 * d * np.log(s2 / s1))
    got = float(metrics.knn_kl_divergence(p.astype(np.float32), q.astype(np.float32), chunk_size=512))
    assert got == pytest.approx(exact, abs=0.08)


def test_pytree_samples_are_flattened():
    rng = np.random.default_rng(3)
    tree_p = {"a": rng.normal(size=(10, 2, 3)), "b": rng.normal(size=(10, 4))}
    tree_q = {"a": rng.normal(size=(12, 2, 3)), "b": rng.normal(size=(12, 4))}
    flat_p = np.concatenate([tree_p["a"].reshape(10, -1), tree_p["b"]], axis=1)
    flat_q = np.concatenate([tree_q["a"].reshape(12, -1), tree_q["b"]], axis=1)
    got = float(metrics.knn_kl_divergence(jax.tree.map(jnp.float32, tree_p), jax.tree.map(jnp.float32, tree_q)))
    assert got == pytest.approx(_sklearn_estimator(flat_p, flat_q), rel=1e-3, abs=1e-3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same dimension"):
        metrics.knn_kl_divergence(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="n >= 2"):
        metrics.knn_kl_divergence(np.zeros((1, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="chunk_size"):
        metrics.knn_kl_divergence(np.zeros((3, 2)), np.zeros((5, 2)), chunk_size=0)
