"""VI forgetting: exact inverse-HVP on the variational mixture, closed-form conjugate removal, the contract."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
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
            hess = jax.jit(jax.hessian(lambda f: energy.energy(unravel(f), x, 240)))(flat0)
            v = jax.jit(jax.grad(lambda f: energy.forget(unravel(f), x[forget_idx])))(flat0)
            exact = jnp.linalg.solve(hess, v)
            eig = np.linalg.eigvalsh(np.asarray(hess))
            assert eig[0] > 0, "the check needs a positive-definite Hessian"  # condition number ~50 here
            forgetter = vi_forgetting(energy, scaling0=240 / eig[-1], iter_T=900, batch_size=240, bbp_T=3)
            state = forgetter.init(params, x, key=jax.random.key(0))
            new, state, info = self.variant(forgetter.update)(params, forget_idx, state, key=jax.random.key(1))
            np.testing.assert_allclose(_flat(new) - _flat(params), exact, rtol=1e-6, atol=1e-9)
            assert int(state.n) == 232 and not bool(state.store.alive[:8].any()) and bool(state.store.alive[8:].all())
            assert info.norms.shape == (900,)

    @chex.variants(with_jit=True, without_jit=True)
    def test_conjugate_gaussian_lands_on_the_closed_form_posterior(self):
        x, forget = _gaussian_data()
        mean, std = exact_posterior(x)
        mean_r, std_r = exact_posterior(np.delete(x, forget, 0))
        params = {"mu": jnp.asarray(mean, jnp.float32), "rho": jnp.full(2, np.log(std), jnp.float32)}
        # s H has eigenvalues 0.9 (mean) and 0.009 (log-std): 1500 steps converge both
        forgetter = vi_forgetting(gaussian_vi_energy(False), scaling0=0.9, iter_T=1500, batch_size=32, bbp_T=5)
        state = forgetter.init(params, jnp.asarray(x, jnp.float32), key=jax.random.key(0))
        new, _, _ = self.variant(forgetter.update)(params, jnp.asarray(forget, jnp.int32), state,
                                                   key=jax.random.key(1))
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
        new, _, _ = forgetter.update(params, jnp.asarray(forget, jnp.int32), state, key=jax.random.key(1))
        shift = np.linalg.norm(mean - mean_r)
        # the mean block of the Hessian is noise-free, so the mean lands as in the deterministic case
        assert np.linalg.norm(np.asarray(new["mu"]) - mean_r) < 0.07 * shift
        # the log-std block is estimated from reparameterised noise: it only has to stay near the answer
        np.testing.assert_allclose(np.exp(np.asarray(new["rho"])), std_r, rtol=0.25)


class VIContractTest(chex.TestCase):
    """Keys, jit/vmap, sequential requests, compile-once, injected batches and errors on a small stochastic model."""

    traces = 0

    @classmethod
    def setUpClass(cls):  # one forgetter for the class: its jitted core compiles once per request shape
        super().setUpClass()
        x, _ = _gaussian_data(n=40)
        cls.x = jnp.asarray(x, jnp.float32)
        base_energy = gaussian_vi_energy(True)

        def per_example(p, batch, key):  # counts traces: a compiled update does not call it again
            VIContractTest.traces += 1
            return base_energy.per_example(p, batch, key)

        cls.energy = bayes.Energy(base_energy.prior, per_example, stochastic=True)
        cls.params = {"mu": jnp.ones(2, jnp.float32), "rho": jnp.full(2, -1.5, jnp.float32)}
        cls.forgetter = vi_forgetting(cls.energy, scaling0=0.3, iter_T=6, batch_size=8, bbp_T=2)
        cls.state = cls.forgetter.init(cls.params, cls.x, key=jax.random.key(0))

    def test_two_requests_and_no_recompilation(self):
        f = self.forgetter
        p, s, _ = f.update(self.params, jnp.array([0, 1]), self.state, key=jax.random.key(1))
        after_first = VIContractTest.traces
        p, s, info = f.update(p, jnp.array([2, 3]), s, key=jax.random.key(2))
        assert VIContractTest.traces == after_first, "a second request of the same size recompiled"
        assert int(s.n) == 36 == int(jnp.sum(s.store.alive))
        assert not bool(s.store.alive[:4].any())
        assert info.norms.shape == (6,)

    def test_injected_batches_replay_the_drawn_ones(self):
        key = jax.random.key(7)
        k_batches, _ = jax.random.split(key)
        drawn = bayes.shuffled_batches(k_batches, self.state.store.alive, 6, 8)
        request = jnp.array([0, 1])
        a = self.forgetter.update(self.params, request, self.state, key=key)
        b = self.forgetter.update(self.params, request, self.state, key=key, batches=drawn)
        chex.assert_trees_all_close(a, b, rtol=1e-6)
        other = self.forgetter.update(self.params, request, self.state, key=key, batches=drawn[::-1])
        assert not np.allclose(a[0]["mu"], other[0]["mu"])

    def test_errors(self):
        f, p = self.forgetter, self.params
        _, s, _ = f.update(p, jnp.array([1, 2]), self.state, key=jax.random.key(0))
        bad = jnp.zeros((6, 8), jnp.int32).at[2, 3].set(1)  # point 1 is removed
        with pytest.raises(ValueError, match="no longer in the model"):
            f.update(p, jnp.array([4, 5]), s, key=jax.random.key(1), batches=bad)
        with pytest.raises(ValueError, match="once per request"):
            f.update(p, jnp.array([3, 3]), s, key=jax.random.key(1))
        with pytest.raises(ValueError, match="must lie in"):
            f.update(p, jnp.array([40, 3]), s, key=jax.random.key(1))
        with pytest.raises(TypeError, match="integer"):
            f.update(p, jnp.array([0.0, 1.0]), self.state, key=jax.random.key(0))
        with pytest.raises(TypeError, match="shape"):
            f.update(p, jnp.array([0, 1]), self.state, key=jax.random.key(0), batches=jnp.zeros((5, 8), jnp.int32))
        with pytest.raises(TypeError, match="key"):
            f.update(p, jnp.array([0, 1]), self.state, key=None)
        alive = jnp.arange(40) >= 33  # 7 alive < batch_size 8
        few = self.state._replace(store=self.state.store._replace(alive=alive), n=jnp.sum(alive).astype(jnp.int32))
        with pytest.raises(ValueError, match="fewer than batch_size"):
            f.update(p, jnp.array([35, 36]), few, key=jax.random.key(0))
        with pytest.raises(FloatingPointError):
            f.update({"mu": jnp.array([jnp.nan, 0.0]), "rho": p["rho"]}, jnp.array([0, 1]), self.state,
                     key=jax.random.key(0))

    def test_config_errors_and_divergence(self):
        x, p = self.x, self.params
        with pytest.raises(ValueError, match="scaling0"):
            vi_forgetting(gaussian_vi_energy(False), scaling0=0.0, iter_T=4, batch_size=8)
        with pytest.raises(ValueError, match="iter_T"):
            vi_forgetting(gaussian_vi_energy(False), scaling0=1.0, iter_T=0, batch_size=8)
        with pytest.raises(ValueError, match="batch_size"):
            vi_forgetting(gaussian_vi_energy(False), scaling0=0.5, iter_T=4, batch_size=500).init(
                p, x, key=jax.random.key(0))
        with pytest.raises(ValueError, match="data does not fit"):
            vi_forgetting(gaussian_vi_energy(False), scaling0=0.5, iter_T=4, batch_size=8).init(
                p, jnp.zeros((40, 3)), key=jax.random.key(0))
        with pytest.raises(curvature.LissaDivergenceError):
            f = vi_forgetting(gaussian_vi_energy(False), scaling0=50.0, iter_T=30, batch_size=8)
            f.update(p, jnp.array([0]), f.init(p, x, key=jax.random.key(0)), key=jax.random.key(1))


def test_fit_vi_reaches_the_conjugate_posterior_and_jits_once():
    x, _ = _gaussian_data()
    mean, std = exact_posterior(x)
    params = {"mu": jnp.zeros(2), "rho": jnp.zeros(2)}
    fit = jax.jit(lambda p, k: bayes.fit_vi(gaussian_vi_energy(False), p, jnp.asarray(x, jnp.float32),
                                            optimizer=optax.adam(0.05), num_steps=1500, batch_size=200, key=k))
    res = fit(params, jax.random.key(0))
    np.testing.assert_allclose(res.params["mu"], mean, atol=0.01)
    np.testing.assert_allclose(np.exp(res.params["rho"]), std, rtol=0.02)
    assert res.losses.shape == (1500,) and float(res.losses[-1]) < float(res.losses[0])
    eager = bayes.fit_vi(gaussian_vi_energy(False), params, jnp.asarray(x, jnp.float32), optimizer=optax.adam(0.05),
                         num_steps=1500, batch_size=200, key=jax.random.key(0))
    chex.assert_trees_all_close(eager.params, res.params, rtol=1e-4, atol=1e-5)
    alive = jnp.arange(200) >= 190  # 10 alive points, fewer than the batch
    with pytest.raises(ValueError, match="fewer than batch_size"):
        bayes.fit_vi(gaussian_vi_energy(False), params, jnp.asarray(x, jnp.float32), optimizer=optax.adam(0.05),
                     num_steps=3, batch_size=20, key=jax.random.key(0), alive=alive)
