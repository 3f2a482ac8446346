"""MCMC forgetting: the interleaved recursion against a dense inverse Hessian, conjugate removal, baseline, contract."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _bayes_helpers import TAU, exact_posterior, float64
from jaxunlearn import bayes, curvature
from jaxunlearn.methods.mcmc_forgetting import (
    draw_mcmc_batches, importance_sampling, mcmc_forgetting, mcmc_influence,
)


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
            hess = jax.jit(jax.hessian(lambda m: energy.energy(m, x, 200)))(means).reshape(8, 8)
            v = jax.grad(energy.forget)(means, forget).ravel()
            exact = jnp.linalg.solve(hess, v)
            eig = np.linalg.eigvalsh(np.asarray(hess))
            assert eig[0] > 0
            sampler = bayes.sgld(energy.energy)
            # a vanishing step size freezes the chain and full batches make every HVP exact: the recursion
            # is the deterministic Neumann series, whose limit is H^{-1} v
            batches = draw_mcmc_batches(jax.random.key(1), jnp.ones(200, bool), 250, 2, 200)
            influence = self.variant(lambda st, key: mcmc_influence(
                energy, sampler, st, forget, x, batches, 200, 1e-30, 1.0, key, scaling0=200 / eig[-1]))
            res = influence(sampler.init(means), jax.random.key(0))
            np.testing.assert_allclose(res.delta.ravel(), exact, rtol=1e-6, atol=1e-10)
            np.testing.assert_allclose(res.sampler.position, means)
            assert int(res.sampler.count) == 2 * (1 + 250)

    def test_divergence_is_reported(self):
        centres, x = _mixture(64)
        energy = bayes.gmm_energy()
        sampler = bayes.sgld(energy.energy)
        batches = draw_mcmc_batches(jax.random.key(1), jnp.ones(64, bool), 20, 1, 16)
        with pytest.raises(curvature.LissaDivergenceError, match="scaling0"):
            mcmc_influence(energy, sampler, sampler.init(jnp.asarray(centres, jnp.float32)), jnp.asarray(x[:4]),
                           jnp.asarray(x), batches, 64, 1e-12, 1.0, jax.random.key(0), scaling0=50.0)


def test_request_batches_are_consecutive_draws_of_one_shuffled_loader():
    alive = jnp.arange(40) % 5 != 0  # 32 points alive: 4 batches of 8 per epoch
    drawn = draw_mcmc_batches(jax.random.key(3), alive, 3, 2, 8)
    rows = np.asarray(bayes.shuffled_batches(jax.random.key(3), alive, 2 * (1 + 2 * 3), 8))
    in_use_order = [drawn.sample[0, 0], drawn.sample[0, 1]] + [
        batch for t in range(3) for i in range(2) for batch in (drawn.sample[1 + t, i], drawn.hvp[t, i])]
    np.testing.assert_array_equal(np.stack(in_use_order), rows)
    assert bool(alive[rows].all())
    for t in range(3):  # here each (A, B) pair lies in one epoch: the HVP batch is a different batch
        for i in range(2):
            assert not set(np.asarray(drawn.sample[1 + t, i]).tolist()) & set(np.asarray(drawn.hvp[t, i]).tolist())


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
            forgetter = mcmc_forgetting(energy, sampler, lr=lr, scaling0=0.5, iter_T=40, samp_T=2, batch_size=50)
            st = sampler.init(jnp.asarray(mean, jnp.float32))._replace(count=jnp.asarray(5, jnp.int32))
            state = forgetter.init(jnp.asarray(mean, jnp.float32), jnp.asarray(x, jnp.float32),
                                   key=jax.random.key(1), sampler_state=st)
            update = self.variant(forgetter.update)
            p = jnp.asarray(mean, jnp.float32)
            for i, chunk in enumerate(np.arange(16).reshape(2, 8)):
                p, state, info = update(p, jnp.asarray(chunk, jnp.int32), state, key=jax.random.key(10 + i))
            shift = np.linalg.norm(mean - mean_r)
            # each chunk is one Newton step with the Hessian before its removal (off by n_new / n_old ~ 4 %)
            assert np.linalg.norm(np.asarray(p) - mean_r) < 0.12 * shift, sampler.name
            assert int(state.n) == 184 and int(state.store.alive.sum()) == 184
            np.testing.assert_allclose(float(state.lr), lr * 200 / 184, rtol=1e-5)  # n_old / n_new rescaling
            np.testing.assert_allclose(state.sampler.position, p)
            assert info.norms.shape == (40,)

    def test_importance_sampling_baseline(self):
        rng = np.random.default_rng(0)
        x = rng.normal(1.0, 1.0, (100, 2))
        x[:10] += 5.0
        mean, _ = exact_posterior(x)
        mean_r, std_r = exact_posterior(x[10:])
        energy = _gaussian_energy()
        sampler = bayes.sgld(energy.energy)
        baseline = importance_sampling(sampler, lr=0.05 / 100, num_steps=300, batch_size=90)
        state = baseline.init(jnp.asarray(mean, jnp.float32), jnp.asarray(x, jnp.float32), key=jax.random.key(0))
        p, state, info = jax.jit(baseline.update)(jnp.asarray(mean, jnp.float32), jnp.arange(10), state,
                                                  key=jax.random.key(1))
        assert np.linalg.norm(np.asarray(p) - mean_r) < 5 * std_r * np.sqrt(2)
        assert int(state.n) == 90 and info.drift.shape == (300,)
        np.testing.assert_allclose(float(state.lr), 0.05 / 90, rtol=1e-5)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            baseline.update(p, jnp.arange(10), state, key=jax.random.key(2))
        with pytest.raises(ValueError, match="fewer than batch_size"):  # 90 - 10 = 80 alive < 90
            baseline.update(p, jnp.arange(10, 20), state, key=jax.random.key(2))


class MCMCContractTest(chex.TestCase):
    """Keys, jit/vmap, sequential requests, compile-once, injected batches and errors on a small GMM."""

    traces = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        centres, x = _mixture(48)
        cls.x = jnp.asarray(x, jnp.float32)
        gmm = bayes.gmm_energy(prior_std=1.0)

        def per_example(m, batch, key):
            MCMCContractTest.traces += 1
            return gmm.per_example(m, batch, key)

        energy = bayes.Energy(gmm.prior, per_example)
        cls.sampler = bayes.sghmc(energy.energy, alpha=0.5)
        cls.params = jnp.asarray(centres, jnp.float32)
        cls.forgetter = mcmc_forgetting(energy, cls.sampler, lr=1e-3 / 48, scaling0=0.2, iter_T=4, samp_T=2,
                                        batch_size=8)
        cls.state = cls.forgetter.init(cls.params, cls.x, key=jax.random.key(0))

    def test_vmap_over_keys_and_injected_batches(self):
        f, request = self.forgetter, jnp.array([0, 1])
        keys = jax.random.split(jax.random.key(6), 2)
        params, states, _ = jax.vmap(lambda k: f.update(self.params, request, self.state, key=k))(keys)
        want, _, _ = f.update(self.params, request, self.state, key=keys[1])
        np.testing.assert_allclose(params[1], want, rtol=1e-5, atol=1e-6)
        k_batches, _ = jax.random.split(keys[1])
        drawn = draw_mcmc_batches(k_batches, self.state.store.alive, 4, 2, 8)
        replay, _, _ = f.update(self.params, request, self.state, key=keys[1], batches=drawn)
        np.testing.assert_allclose(replay, want, rtol=1e-6)
        bad = drawn._replace(hvp=drawn.hvp.at[0, 0, 0].set(48))
        with pytest.raises(ValueError, match="batches.hvp"):
            f.update(self.params, request, self.state, key=keys[1], batches=bad)

    def test_errors(self):
        f, p = self.forgetter, self.params
        _, s, _ = f.update(p, jnp.array([1, 2]), self.state, key=jax.random.key(0))
        with pytest.raises(TypeError, match="MCMCBatches"):
            f.update(p, jnp.array([3, 4]), s, key=jax.random.key(1), batches=jnp.zeros((4, 8), jnp.int32))
        with pytest.raises(ValueError, match="lr"):
            mcmc_forgetting(bayes.gmm_energy(), self.sampler, lr=0.0, scaling0=1.0, iter_T=2, samp_T=1, batch_size=4)
        with pytest.raises(ValueError, match="decay"):
            importance_sampling(self.sampler, lr=1e-3, decay=-1.0, num_steps=2, batch_size=4)
        with pytest.raises(ValueError, match="stochastic"):
            mcmc_forgetting(bayes.Energy(lambda t: 0.0, lambda t, x, k: x, stochastic=True), self.sampler, lr=1.0,
                            scaling0=1.0, iter_T=2, samp_T=1, batch_size=4)
        with pytest.raises(ValueError, match="sampler_state.position"):
            f.init(p, self.x, key=jax.random.key(0), sampler_state=self.sampler.init(jnp.zeros(3)))
