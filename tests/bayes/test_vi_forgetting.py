"""VI forgetting: exact inverse-HVP on the variational mixture, closed-form conjugate removal, bookkeeping."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _bayes_helpers import exact_posterior, float64, gaussian_vi_energy
from jaxunlearn import bayes, curvature
from jaxunlearn.methods.vi_forgetting import vi_forgetting


def _flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def _gaussian_data(n=200, d=2, removed=10):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, (n, d))
    x[:removed] += 4.0  # the forgotten points pull the posterior away
    return x, np.arange(removed)


class VIForgettingTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_recursion_on_variational_mixture_matches_dense_inverse(self):
        with float64():
            rng = np.random.default_rng(1)
            centres = np.array([[-3.0, -3.0], [3.0, 3.0], [-3.0, 3.0], [3.0, -3.0]])
            x = jnp.asarray(centres[rng.integers(0, 4, 240)] + 0.7 * rng.normal(size=(240, 2)))
            energy = bayes.vgmm_energy(prior_std=1.0)
            params = {"m": jnp.asarray(centres), "rho": jnp.full((4, 2), -2.0)}
            forget_idx = jnp.arange(8)
            flat0, unravel = jax.flatten_util.ravel_pytree(params)
            hess = jax.hessian(lambda f: energy.energy(unravel(f), x, 240))(flat0)
            v = jax.grad(lambda f: energy.forget(unravel(f), x[forget_idx]))(flat0)
            exact = jnp.linalg.solve(hess, v)
            eig = np.linalg.eigvalsh(np.asarray(hess))
            assert eig[0] > 0, "the check needs a positive-definite Hessian"  # condition number ~50 here
            forgetter = vi_forgetting(energy, scaling0=240 / eig[-1], iter_T=900, batch_size=240, bbp_T=3)
            state = forgetter.init(params, x, key=jax.random.key(1))
            new, state = self.variant(forgetter.update)(params, forget_idx, state)
            np.testing.assert_allclose(_flat(new) - _flat(params), exact, rtol=1e-6, atol=1e-9)
            assert int(state.n) == 232 and not bool(state.alive[:8].any()) and bool(state.alive[8:].all())

    @chex.variants(with_jit=True, without_jit=True)
    def test_conjugate_gaussian_lands_on_the_closed_form_posterior(self):
        x, forget = _gaussian_data()
        mean, std = exact_posterior(x)
        mean_r, std_r = exact_posterior(np.delete(x, forget, 0))
        params = {"mu": jnp.asarray(mean, jnp.float32), "rho": jnp.full(2, np.log(std), jnp.float32)}
        # s H has eigenvalues 0.9 (mean) and 0.009 (log-std): 1500 steps converge both
        forgetter = vi_forgetting(gaussian_vi_energy(False), scaling0=0.9, iter_T=1500, batch_size=32, bbp_T=5)
        state = forgetter.init(params, jnp.asarray(x, jnp.float32), key=jax.random.key(0))
        new, _ = self.variant(forgetter.update)(params, jnp.asarray(forget, jnp.int32), state)
        shift = np.linalg.norm(mean - mean_r)
        # one Newton step with the Hessian before removal: exact up to the factor n_r / n = 0.95
        assert np.linalg.norm(np.asarray(new["mu"]) - mean_r) < 0.07 * shift
        np.testing.assert_allclose(np.exp(np.asarray(new["rho"])), std_r, rtol=2e-3)

    def test_stochastic_energy_averages_noise_draws(self):
        x, forget = _gaussian_data()
        mean, std = exact_posterior(x)
        mean_r, std_r = exact_posterior(np.delete(x, forget, 0))
        params = {"mu": jnp.asarray(mean, jnp.float32), "rho": jnp.full(2, np.log(std), jnp.float32)}
        forgetter = vi_forgetting(gaussian_vi_energy(True), scaling0=0.9, iter_T=1500, batch_size=32, bbp_T=16)
        state = forgetter.init(params, jnp.asarray(x, jnp.float32), key=jax.random.key(0))
        new, _ = jax.jit(forgetter.update)(params, jnp.asarray(forget, jnp.int32), state)
        shift = np.linalg.norm(mean - mean_r)
        # the mean block of the Hessian is noise-free, so the mean lands as in the deterministic case
        assert np.linalg.norm(np.asarray(new["mu"]) - mean_r) < 0.07 * shift
        # the log-std block is estimated from reparameterised noise: it only has to stay near the answer
        np.testing.assert_allclose(np.exp(np.asarray(new["rho"])), std_r, rtol=0.25)

    def test_bad_requests_raise(self):
        x, _ = _gaussian_data()
        params = {"mu": jnp.zeros(2), "rho": jnp.zeros(2)}
        forgetter = vi_forgetting(gaussian_vi_energy(False), scaling0=0.5, iter_T=4, batch_size=8)
        state = forgetter.init(params, jnp.asarray(x, jnp.float32), key=jax.random.key(0))
        with pytest.raises(ValueError, match="already removed"):
            forgetter.update(params, jnp.array([1, 2]), state._replace(alive=state.alive.at[1].set(False)))
        with pytest.raises(ValueError, match="already removed"):
            forgetter.update(params, jnp.array([3, 3]), state)
        with pytest.raises(TypeError, match="integer"):
            forgetter.update(params, jnp.array([0.0, 1.0]), state)
        with pytest.raises(ValueError, match="scaling0"):
            vi_forgetting(gaussian_vi_energy(False), scaling0=0.0, iter_T=4, batch_size=8)
        with pytest.raises(ValueError, match="batch_size"):
            forgetter = vi_forgetting(gaussian_vi_energy(False), scaling0=0.5, iter_T=4, batch_size=500)
            forgetter.init(params, jnp.asarray(x, jnp.float32), key=jax.random.key(0))
        with pytest.raises(curvature.LissaDivergenceError):
            forgetter = vi_forgetting(gaussian_vi_energy(False), scaling0=50.0, iter_T=30, batch_size=8)
            forgetter.update(params, jnp.array([0]), forgetter.init(params, jnp.asarray(x, jnp.float32),
                                                                     key=jax.random.key(0)))


def test_fit_vi_reaches_the_conjugate_posterior():
    import optax

    x, _ = _gaussian_data()
    mean, std = exact_posterior(x)
    params = {"mu": jnp.zeros(2), "rho": jnp.zeros(2)}
    res = bayes.fit_vi(gaussian_vi_energy(False), params, jnp.asarray(x, jnp.float32), optimizer=optax.adam(0.05),
                       num_steps=1500, batch_size=200, key=jax.random.key(0))
    np.testing.assert_allclose(res.params["mu"], mean, atol=0.01)
    np.testing.assert_allclose(np.exp(res.params["rho"]), std, rtol=0.02)
    assert res.losses.shape == (1500,) and float(res.losses[-1]) < float(res.losses[0])
