"""Bayesian layers, KL term and Gaussian-mixture energies against brute-force references."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import bayes
from jaxunlearn.models import bayesian, gmm


def _np_nll(means, x):
    k, d = means.shape
    dens = np.zeros(len(x))
    for i in range(len(x)):
        for j in range(k):
            diff = x[i] - means[j]
            dens[i] += np.exp(-0.5 * diff @ diff) / (2 * np.pi) ** (d / 2) / k
    return -np.log(dens)


def _np_vgmm_term(m, s, x):
    k, d = m.shape
    out = np.zeros(len(x))
    for i in range(len(x)):
        logits = np.array([x[i] @ m[j] - 0.5 * (m[j] @ m[j] + s[j] @ s[j]) for j in range(k)])
        phi = np.exp(logits - logits.max())
        phi /= phi.sum()
        for j in range(k):
            out[i] += phi[j] * (0.5 * (-2 * x[i] @ m[j] + m[j] @ m[j] + s[j] @ s[j]) + np.log(phi[j]))
        out[i] += 0.5 * x[i] @ x[i] + np.log(k) + d * np.log(np.sqrt(2 * np.pi))
    return out


class GMMTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_gmm_neg_log_likelihood_matches_loop(self):
        means = jax.random.normal(jax.random.key(0), (4, 2)) * 2
        x = jax.random.normal(jax.random.key(1), (7, 2)) * 2
        got = self.variant(gmm.gmm_neg_log_likelihood)(means, x)
        np.testing.assert_allclose(got, _np_nll(np.asarray(means, np.float64), np.asarray(x, np.float64)), rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_vgmm_data_term_matches_explicit_responsibility_sum(self):
        params = {"m": jax.random.normal(jax.random.key(2), (3, 2)), "rho": jax.random.normal(jax.random.key(3), (3, 2))}
        x = jax.random.normal(jax.random.key(4), (6, 2)) * 2
        got = self.variant(gmm.vgmm_data_term)(params, x)
        s = np.log1p(np.exp(np.asarray(params["rho"], np.float64)))
        want = _np_vgmm_term(np.asarray(params["m"], np.float64), s, np.asarray(x, np.float64))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    def test_vgmm_kl_is_the_gaussian_kl(self):
        params = {"m": jnp.array([[0.3, -1.0]]), "rho": jnp.array([[-1.0, 0.5]])}
        s = np.log1p(np.exp(np.array([-1.0, 0.5])))
        m = np.array([0.3, -1.0])
        sigma = 2.0
        want = np.sum(np.log(sigma / s) + (s**2 + m**2) / (2 * sigma**2) - 0.5)
        np.testing.assert_allclose(gmm.vgmm_kl(params, sigma), want, rtol=1e-6)

    def test_energy_is_prior_plus_n_times_mean(self):
        energy = bayes.gmm_energy(prior_std=1.0)
        means = jnp.arange(8.0).reshape(4, 2) / 4
        x = jax.random.normal(jax.random.key(5), (10, 2))
        want = np.sum(np.asarray(means) ** 2) / 2 + 300 * np.mean(_np_nll(np.asarray(means), np.asarray(x)))
        np.testing.assert_allclose(energy.energy(means, x, 300), want, rtol=1e-5)
        np.testing.assert_allclose(energy.forget(means, x), np.sum(_np_nll(np.asarray(means), np.asarray(x))),
                                   rtol=1e-5)

    def test_bad_shapes_raise(self):
        with pytest.raises(ValueError, match="means"):
            gmm.gmm_neg_log_likelihood(jnp.zeros((4, 3)), jnp.zeros((5, 2)))
        with pytest.raises(ValueError, match="x must be"):
            gmm.vgmm_data_term(gmm.init_vgmm(jax.random.key(0)), jnp.zeros((5,)))
        with pytest.raises(ValueError, match="prior_std"):
            bayes.gmm_energy(prior_std=0.0)


class BayesianLayerTest(chex.TestCase):
    def test_dense_local_reparameterisation_moments(self):
        layer = bayesian.MeanFieldDense(3, rho_init=math.log(0.3))
        x = jax.random.normal(jax.random.key(0), (2, 5))
        params = layer.init({"params": jax.random.key(1), "bbp": jax.random.key(2)}, x)["params"]
        outs = jax.vmap(lambda k: layer.apply({"params": params}, x, rngs={"bbp": k}))(
            jax.random.split(jax.random.key(3), 4000))
        mean = np.asarray(x) @ np.asarray(params["kernel_mu"]) + np.asarray(params["bias_mu"])
        var = (np.asarray(x) ** 2) @ np.exp(2 * np.asarray(params["kernel_rho"])) + np.exp(2 * np.asarray(params["bias_rho"]))
        np.testing.assert_allclose(outs.mean(0), mean, atol=4 * np.sqrt(var.max() / 4000))
        np.testing.assert_allclose(outs.var(0), var, rtol=0.1)

    def test_conv_mean_and_variance_match_direct_convolution(self):
        layer = bayesian.MeanFieldConv(2, kernel_size=3, padding="VALID", rho_init=math.log(0.5))
        x = jax.random.uniform(jax.random.key(0), (1, 5, 5, 2))
        params = layer.init({"params": jax.random.key(1), "bbp": jax.random.key(2)}, x)["params"]

        def direct(xx, w, b):  # explicit loop convolution, NHWC / HWIO
            xx, w = np.asarray(xx, np.float64), np.asarray(w, np.float64)
            out = np.zeros((1, 3, 3, 2))
            for i in range(3):
                for j in range(3):
                    out[0, i, j] = np.einsum("hwc,hwcf->f", xx[0, i:i + 3, j:j + 3], w) + b
            return out

        mean = direct(x, params["kernel_mu"], np.asarray(params["bias_mu"]))
        var = direct(np.asarray(x) ** 2, np.exp(2 * np.asarray(params["kernel_rho"])),
                     np.exp(2 * np.asarray(params["bias_rho"])))
        outs = jax.vmap(lambda k: layer.apply({"params": params}, x, rngs={"bbp": k}))(
            jax.random.split(jax.random.key(4), 4000))
        np.testing.assert_allclose(outs.mean(0), mean, atol=4 * np.sqrt(var.max() / 4000))
        np.testing.assert_allclose(outs.var(0), var, rtol=0.1)

    def test_init_follows_the_originals(self):
        net = bayesian.BayesMLP(num_classes=3, hidden=(400,))
        params = net.init({"params": jax.random.key(0), "bbp": jax.random.key(1)}, jnp.zeros((1, 64)))["params"]
        first = params["MeanFieldDense_0"]
        np.testing.assert_allclose(first["kernel_rho"], math.log(0.1))
        bound = 1 / 8.0
        assert float(jnp.max(jnp.abs(first["kernel_mu"]))) <= bound
        assert float(jnp.max(jnp.abs(first["kernel_mu"]))) > 0.9 * bound  # uniform fills the range

    def test_kl_divergence_matches_the_originals_formula(self):
        params = {"a": {"kernel_mu": jnp.array([1.0, -2.0]), "kernel_rho": jnp.array([0.0, -1.0])},
                  "b": {"bias_mu": jnp.array([0.5]), "bias_rho": jnp.array([-2.0])}}
        sp = 0.5
        mus, rhos = np.array([1.0, -2.0, 0.5]), np.array([0.0, -1.0, -2.0])
        want = np.sum((np.exp(2 * rhos) + mus**2) / (2 * sp**2)) - np.sum(rhos)
        np.testing.assert_allclose(bayesian.kl_divergence(params, sp), want, rtol=1e-6)
        with pytest.raises(ValueError, match="variational"):
            bayesian.kl_divergence({"kernel": jnp.ones(2)}, sp)

    def test_network_shapes_and_point_variant(self):
        # the variational convolution is checked above; here the architectures and the point variant
        x = jnp.zeros((2, 8, 8, 1))
        for net, layer, leaf in ((bayesian.BayesLeNet(10, variational=False, padding="SAME"), "PointConv_0", "kernel"),
                                 (bayesian.BayesMLP(10, hidden=(16,)), "MeanFieldDense_0", "kernel_rho")):

            @jax.jit
            def init_and_apply(key):
                params = net.init({"params": key, "bbp": key}, x)["params"]
                return params, bayesian.stochastic_logits_fn(net)(params, x, key)

            params, out = init_and_apply(jax.random.key(0))
            assert out.shape == (2, 10)
            assert leaf in params[layer]
