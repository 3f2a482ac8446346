"""MCMC forgetting: the interleaved recursion against a dense inverse Hessian, conjugate removal, baseline."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _bayes_helpers import TAU, exact_posterior, float64
from jaxunlearn import bayes, curvature
from jaxunlearn.methods.mcmc_forgetting import importance_sampling, mcmc_forgetting, mcmc_influence


def _mixture(n, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-3.0, -3.0], [3.0, 3.0], [-3.0, 3.0], [3.0, -3.0]])
    return centres, centres[rng.integers(0, 4, n)] + 0.7 * rng.normal(size=(n, 2))


def _gaussian_energy():
    """x ~ N(theta, I), prior N(0, TAU^2 I): F_hat = ||theta||^2/(2 TAU^2) + n mean ||x - theta||^2 / 2."""
    return bayes.Energy(lambda t: jnp.sum(t**2) / (2 * TAU**2),
                        lambda t, x, key: 0.5 * jnp.sum((x - t) ** 2, axis=1))


class MCMCInfluenceTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_recursion_on_gmm_converges_to_dense_inverse_hvp(self):
        with float64():
            centres, x = _mixture(200)
            x = jnp.asarray(x)
            energy = bayes.gmm_energy(prior_std=1.0)
            means = jnp.asarray(centres) * 0.97
            forget = x[:6]
            hess = jax.hessian(lambda m: energy.energy(m, x, 200))(means).reshape(8, 8)
            v = jax.grad(energy.forget)(means, forget).ravel()
            exact = jnp.linalg.solve(hess, v)
            eig = np.linalg.eigvalsh(np.asarray(hess))
            assert eig[0] > 0
            sampler = bayes.sgld(energy.energy)
            # lr = 0 freezes the chain and full batches make every HVP exact: the recursion is the
            # deterministic Neumann series, whose limit is H^{-1} v
            influence = self.variant(lambda st, key: mcmc_influence(
                energy, sampler, st, forget, x, jnp.ones(200, bool), 200, 0.0, 1.0, key,
                scaling0=200 / eig[-1], iter_T=250, samp_T=2, batch_size=200))
            res = influence(sampler.init(means), jax.random.key(0))
            np.testing.assert_allclose(res.delta.ravel(), exact, rtol=1e-6, atol=1e-10)
            np.testing.assert_allclose(res.sampler.position, means)
            assert int(res.sampler.count) == 2 * (1 + 250)

    def test_divergence_is_reported(self):
        centres, x = _mixture(64)
        energy = bayes.gmm_energy()
        sampler = bayes.sgld(energy.energy)
        with pytest.raises(curvature.LissaDivergenceError, match="scaling0"):
            mcmc_influence(energy, sampler, sampler.init(jnp.asarray(centres, jnp.float32)), jnp.asarray(x[:4]),
                           jnp.asarray(x), jnp.ones(64, bool), 64, 0.0, 1.0, jax.random.key(0),
                           scaling0=50.0, iter_T=20, samp_T=1, batch_size=16)


class MCMCForgettingTest(chex.TestCase):
    @chex.variants(with_jit=True)  # end to end; the recursion itself is checked with and without jit above
    def test_conjugate_gaussian_moves_to_the_new_posterior(self):
        rng = np.random.default_rng(0)
        x = rng.normal(1.0, 1.0, (200, 2))
        x[:16] += 5.0
        mean, std = exact_posterior(x)
        mean_r, _ = exact_posterior(x[16:])
        energy = _gaussian_energy()
        for sampler in (bayes.sgld(energy.energy), bayes.sghmc(energy.energy, alpha=0.5)):
            lr = 1e-5 / 200  # a slow chain: its own drift towards the new posterior is negligible here
            forgetter = mcmc_forgetting(energy, sampler, scaling0=0.5, iter_T=40, samp_T=2, batch_size=50)
            st = sampler.init(jnp.asarray(mean, jnp.float32))._replace(count=jnp.asarray(5, jnp.int32))
            state = forgetter.init(jnp.asarray(mean, jnp.float32), jnp.asarray(x, jnp.float32),
                                   key=jax.random.key(1), lr=lr, sampler_state=st)
            update = self.variant(forgetter.update)
            p = jnp.asarray(mean, jnp.float32)
            for chunk in np.arange(16).reshape(2, 8):
                p, state = update(p, jnp.asarray(chunk, jnp.int32), state)
            shift = np.linalg.norm(mean - mean_r)
            # each chunk is one Newton step with the Hessian before its removal (off by n_new / n_old ~ 4 %)
            assert np.linalg.norm(np.asarray(p) - mean_r) < 0.12 * shift, sampler.name
            assert int(state.n) == 184 and int(state.alive.sum()) == 184
            np.testing.assert_allclose(float(state.lr), lr * 200 / 184, rtol=1e-5)  # n_old / n_new rescaling
            np.testing.assert_allclose(state.sampler.position, p)

    def test_importance_sampling_baseline(self):
        rng = np.random.default_rng(0)
        x = rng.normal(1.0, 1.0, (100, 2))
        x[:10] += 5.0
        mean, _ = exact_posterior(x)
        mean_r, std_r = exact_posterior(x[10:])
        energy = _gaussian_energy()
        sampler = bayes.sgld(energy.energy)
        baseline = importance_sampling(sampler, num_steps=300, batch_size=90)
        state = baseline.init(jnp.asarray(mean, jnp.float32), jnp.asarray(x, jnp.float32), key=jax.random.key(0),
                              lr=0.05 / 100)
        p, state = jax.jit(baseline.update)(jnp.asarray(mean, jnp.float32), jnp.arange(10), state)
        assert np.linalg.norm(np.asarray(p) - mean_r) < 5 * std_r * np.sqrt(2)
        assert int(state.n) == 90
        np.testing.assert_allclose(float(state.lr), 0.05 / 90, rtol=1e-5)
        with pytest.raises(ValueError, match="already removed"):
            baseline.update(p, jnp.array([0]), state)
