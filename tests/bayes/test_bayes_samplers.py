"""SG-MCMC samplers: one step against the originals' update formulas on fixed noise; SGLD on a Gaussian posterior."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.util import generate_gaussian_noise

import jaxunlearn as ju
from jaxunlearn import bayes

PRIOR_STD = 2.0


def energy_fn(theta, x, n):
    """F_hat = ||theta||^2/(2 tau^2) + n mean_i ||x_i - theta||^2 / 2 for a Gaussian mean theta [d]."""
    return jnp.sum(theta**2) / (2 * PRIOR_STD**2) + n * jnp.mean(0.5 * jnp.sum((x - theta) ** 2, axis=1))


def grad_f(theta, x, n):  # analytic gradient, independent of jax.grad
    return theta / PRIOR_STD**2 + n * (theta - x.mean(0))


class SamplerStepTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_sgld_step_is_the_originals_update(self):
        sampler = bayes.sgld(energy_fn)
        theta = jnp.array([0.3, -1.2, 2.0])
        x = jax.random.normal(jax.random.key(0), (8, 3))
        key = jax.random.key(1)
        lr, decay, n = 1e-3, 0.5, 100
        new = self.variant(sampler.step)(key, sampler.init(theta), x, n, lr, decay)
        eta = lr * decay
        want = theta - eta * grad_f(theta, x, n) + jnp.sqrt(2 * eta) * generate_gaussian_noise(key, theta)
        np.testing.assert_allclose(new.position, want, rtol=1e-5, atol=1e-6)
        assert int(new.count) == 1

    @chex.variants(with_jit=True, without_jit=True)
    def test_sghmc_first_and_later_steps_are_the_originals_update(self):
        alpha = 0.4
        sampler = bayes.sghmc(energy_fn, alpha=alpha)
        theta = jnp.array([0.3, -1.2, 2.0])
        x = jax.random.normal(jax.random.key(0), (8, 3))
        lr, decay, n = 1e-3, 0.25, 100
        eta, a = lr * decay, alpha * np.sqrt(decay)
        k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
        step = self.variant(sampler.step)
        s1 = step(k1, sampler.init(theta), x, n, lr, decay)
        v1 = np.sqrt(eta) * generate_gaussian_noise(k1, theta)  # v ~ N(0, eta), no gradient
        np.testing.assert_allclose(s1.momentum, v1, rtol=1e-5)
        np.testing.assert_allclose(s1.position, theta + v1, rtol=1e-5)
        s2 = step(k2, s1, x, n, lr, decay)
        th1 = theta + v1
        v2 = v1 - eta * grad_f(th1, x, n) - a * v1 + np.sqrt(2 * a * eta) * generate_gaussian_noise(k2, theta)
        np.testing.assert_allclose(s2.momentum, v2, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(s2.position, th1 + v2, rtol=1e-5, atol=1e-6)
        s3 = step(k3, s2, x, n, lr, decay)  # momentum persists: v3 depends on v2
        v3 = v2 - eta * grad_f(th1 + v2, x, n) - a * v2 + np.sqrt(2 * a * eta) * generate_gaussian_noise(k3, theta)
        np.testing.assert_allclose(s3.momentum, v3, rtol=1e-4, atol=1e-7)

    def test_schedules_and_config_errors(self):
        np.testing.assert_allclose(bayes.power_decay(-0.5)(jnp.arange(4)), np.arange(1, 5) ** -0.5, rtol=1e-6)
        np.testing.assert_allclose(bayes.step_decay(0.1, 4000)(jnp.array([0, 3999, 4000, 8001])),
                                   [1, 1, 0.1, 0.01], rtol=1e-5)
        for alpha in (0.0, 1.5, -0.2):
            with pytest.raises(ValueError, match="alpha"):
                bayes.sghmc(energy_fn, alpha=alpha)
        with pytest.raises(ValueError, match="every"):
            bayes.step_decay(0.1, 0)
        theta, x = jnp.zeros(3), jnp.zeros((4, 3))
        for sampler in (bayes.sgld(energy_fn), bayes.sghmc(energy_fn, alpha=0.4)):
            with pytest.raises(ValueError, match="lr"):
                sampler.step(jax.random.key(0), sampler.init(theta), x, 10, 0.0)
            with pytest.raises(ValueError, match="decay"):
                sampler.step(jax.random.key(0), sampler.init(theta), x, 10, 1e-3, -1.0)
        with pytest.raises(ValueError, match="lr"):
            bayes.run_chain(bayes.sgld(energy_fn), jax.random.key(0), bayes.sgld(energy_fn).init(theta), x,
                            lr=-1e-3, num_steps=2, batch_size=2)


class SGLDPosteriorTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_sgld_recovers_gaussian_posterior(self):
        x = 1.5 + jax.random.normal(jax.random.key(0), (50, 1))
        n = x.shape[0]
        precision = 1 / PRIOR_STD**2 + n
        post_mean = float(x.sum() / precision)
        post_var = 1 / precision
        sampler = bayes.sgld(energy_fn)
        lr = 0.02 / n  # eta * precision ~ 0.02: discretisation bias ~1 %

        def chain(key):
            st, trace = bayes.run_chain(sampler, key, sampler.init(jnp.zeros(1)), x, lr=lr, num_steps=400,
                                        batch_size=n, record=True, progress=True)
            return trace.positions[-200::50, 0]  # 4 nearly independent draws per chain

        finals = self.variant(jax.vmap(chain))(jax.random.split(jax.random.key(1), 500)).ravel()
        np.testing.assert_allclose(finals.mean(), post_mean, atol=4 * np.sqrt(post_var / 500))
        np.testing.assert_allclose(finals.var(), post_var, rtol=0.12)

    def test_chain_only_sees_alive_points_and_compiles_once(self):
        x = jnp.concatenate([jnp.zeros((20, 1)), 100 * jnp.ones((20, 1))])
        alive = jnp.arange(40) < 20
        traces = []

        def counted(theta, batch, n):
            traces.append(None)
            return energy_fn(theta, batch, n)

        sampler = bayes.sgld(counted)
        chain = jax.jit(functools.partial(bayes.run_chain, sampler, schedule=bayes.power_decay(-0.1)),
                        static_argnames=("num_steps", "batch_size", "record", "progress"))
        st, trace = chain(jax.random.key(0), sampler.init(jnp.zeros(1)), x, lr=0.01 / 20, num_steps=200,
                          batch_size=5, alive=alive)
        assert abs(float(st.position[0])) < 1.0  # the removed points at 100 would pull it far away
        assert trace.step_sizes.shape == (200,)
        np.testing.assert_allclose(trace.step_sizes[:2], 0.01 / 20 * np.array([1.0, 2.0 ** -0.1]), rtol=1e-5)
        count = len(traces)
        chain(jax.random.key(1), st, x, lr=0.02 / 20, num_steps=200, batch_size=5, alive=~alive)
        assert len(traces) == count, "a second chain of the same shapes recompiled"
        with pytest.raises(ValueError, match="fewer than batch_size"), ju.keep_errors():
            chain(jax.random.key(1), st, x, lr=0.02 / 20, num_steps=2, batch_size=5,
                          alive=jnp.arange(40) < 3)
