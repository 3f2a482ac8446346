"""HVP, GGN-VP, CG and LiSSA against a dense jax.hessian and jnp.linalg.solve (float64)."""

import functools
import re

import chex
import jax
import jax.flatten_util  # noqa: F401
import jax.numpy as jnp
import numpy as np
import problems as P
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxunlearn as ju
from jaxunlearn import curvature as cv


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# weight decay 1.0 makes the tiny MLP's Hessian positive definite at its random initialisation
STRONG_MLP_LOSS = functools.partial(P.mlp_loss, weight_decay=1.0)


def _mlp_problem(seed=0):
    params = P.mlp_params(jax.random.key(seed))
    batch = P.classification_data(jax.random.key(seed + 1))
    return params, batch


def _gmm_problem(seed=0):
    means = jnp.array([[-1.5, 0.2], [1.8, 0.9], [0.1, -2.0]])
    return means, P.gmm_data(jax.random.key(seed))


class ProductsTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("mlp", _mlp_problem, P.mlp_loss), ("gmm", _gmm_problem, P.gmm_energy))
    def test_hvp_matches_dense_hessian(self, problem, loss_fn):
        with jax.enable_x64(True):
            params, batch = problem()
            hess, unravel = P.dense_hessian(loss_fn, params, batch)
            v = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size).reshape(a.shape) + 1.0), params)
            got = self.variant(lambda p, vv, b: cv.hvp(loss_fn, p, vv, b))(params, v, batch)
            np.testing.assert_allclose(P.flat(got), hess @ P.flat(v), rtol=1e-9, atol=1e-10)

    @chex.variants(with_jit=True, without_jit=True)
    def test_ggn_vp_matches_dense_gauss_newton(self):
        with jax.enable_x64(True):
            params, (x, y) = _mlp_problem(3)
            flat_p, unravel = jax.flatten_util.ravel_pytree(params)

            def apply_fn(p, batch):
                return P.mlp_apply(p, batch[0])

            def loss_on_outputs(logits, batch):
                return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch[1][:, None], axis=1))

            jac = jax.jit(jax.jacobian(lambda f: apply_fn(unravel(f), (x, y)).ravel()))(flat_p)  # [B*C, P]
            logits = apply_fn(params, (x, y))
            h_out = jax.jit(jax.hessian(lambda o: loss_on_outputs(o.reshape(logits.shape), (x, y))))(logits.ravel())
            ggn = jac.T @ h_out @ jac
            v = unravel(jnp.linspace(-1.0, 1.0, flat_p.size))
            got = self.variant(lambda p, vv: cv.ggn_vp(apply_fn, loss_on_outputs, p, vv, (x, y)))(params, v)
            np.testing.assert_allclose(P.flat(got), ggn @ P.flat(v), rtol=1e-9, atol=1e-11)
            assert np.min(np.linalg.eigvalsh(np.asarray(ggn))) > -1e-10  # PSD, unlike the MLP Hessian in general

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("mlp", _mlp_problem, STRONG_MLP_LOSS), ("gmm", _gmm_problem, P.gmm_energy))
    def test_cg_solves_the_linear_system(self, problem, loss_fn):
        with jax.enable_x64(True):
            params, batch = problem()
            hess, unravel = P.dense_hessian(loss_fn, params, batch)
            v = unravel(jnp.sin(jnp.arange(hess.shape[0]) + 0.5))
            damping = 0.05
            res = self.variant(lambda p, vv, b: cv.cg(loss_fn, p, vv, b, damping=damping, tol=1e-12))(params, v, batch)
            exact = jnp.linalg.solve(hess + damping * jnp.eye(hess.shape[0]), P.flat(v))
            np.testing.assert_allclose(P.flat(res.ihvp), exact, rtol=1e-6, atol=1e-8)
            assert float(res.residual) < 1e-8

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("mlp", _mlp_problem, STRONG_MLP_LOSS), ("gmm", _gmm_problem, P.gmm_energy))
    def test_lissa_converges_to_exact_inverse_hvp(self, problem, loss_fn):
        """Full-batch recursion: the only error left is the truncation (I - sH)^T, driven below 1e-6."""
        with jax.enable_x64(True):
            params, batch = problem()
            hess, unravel = P.dense_hessian(loss_fn, params, batch)
            eig = np.linalg.eigvalsh(np.asarray(hess))
            assert eig[0] > 0, "test problem must be positive definite"
            v = unravel(jnp.cos(jnp.arange(hess.shape[0]) * 0.7))
            scale = 1.0 / eig[-1]
            depth = int(np.ceil(np.log(1e-8) / np.log(1 - scale * eig[0])))
            batches = jax.tree.map(lambda a: jnp.broadcast_to(a, (depth,) + a.shape), batch)
            res = self.variant(lambda p, vv, bs: cv.lissa(loss_fn, p, vv, bs, scale=scale))(params, v, batches)
            exact = jnp.linalg.solve(hess, P.flat(v))
            np.testing.assert_allclose(P.flat(res.ihvp), exact, rtol=1e-5, atol=1e-7)

    def test_lissa_damping_solves_the_shifted_system(self):
        """Full batch, large damping d: the fixed point is (H + (d/s) I)^-1 v exactly."""
        with jax.enable_x64(True):
            params, batch = _gmm_problem(2)
            hess, unravel = P.dense_hessian(P.gmm_energy, params, batch)
            v = unravel(jnp.sin(jnp.arange(hess.shape[0]) + 1.0))
            scale, damping, depth = 1.0 / np.linalg.eigvalsh(np.asarray(hess))[-1], 0.3, 80
            batches = jax.tree.map(lambda a: jnp.broadcast_to(a, (depth,) + a.shape), batch)
            res = cv.lissa(P.gmm_energy, params, v, batches, scale=scale, damping=damping)
            exact = jnp.linalg.solve(hess + damping / scale * jnp.eye(hess.shape[0]), P.flat(v))
            np.testing.assert_allclose(P.flat(res.ihvp), exact, rtol=1e-7, atol=1e-9)

    @chex.variants(with_jit=True, without_jit=True)
    def test_lissa_minibatches_by_index_with_damping_and_repeats(self):
        """Index batches into `data`; the recursion averages Hessians of random minibatches, so compare with
        the damped solve against the full-data Hessian at a loose tolerance."""
        with jax.enable_x64(True):
            params, batch = _gmm_problem(1)
            n = batch[0].shape[0]
            hess, unravel = P.dense_hessian(P.gmm_energy, params, batch)
            v = unravel(jnp.ones(hess.shape[0]))
            depth, bs, repeats, damping = 200, 100, 4, 0.002
            idx = jax.vmap(lambda k: jax.random.randint(k, (depth, bs), 0, n))(jax.random.split(jax.random.key(0), repeats))
            scale = 0.9 / np.linalg.eigvalsh(np.asarray(hess))[-1]
            res = self.variant(
                lambda p, vv, ii: cv.lissa(P.gmm_energy, p, vv, ii, data=batch, scale=scale, damping=damping,
                                           num_repeats=repeats)
            )(params, v, idx)
            exact = jnp.linalg.solve(hess + damping / scale * jnp.eye(hess.shape[0]), P.flat(v))
            np.testing.assert_allclose(P.flat(res.ihvp), exact, rtol=0.1)  # minibatch noise, 4 repeats
            assert res.norms.shape == (repeats, depth)

    @chex.variants(with_jit=True, without_jit=True)
    def test_power_iteration_finds_top_eigenvalue(self):
        with jax.enable_x64(True):
            params, batch = _mlp_problem(2)
            hess, _ = P.dense_hessian(P.mlp_loss, params, batch)
            eig = np.linalg.eigvalsh(np.asarray(hess))
            top = eig[np.argmax(np.abs(eig))]
            res = self.variant(lambda p, b: cv.top_eigenvalue(P.mlp_loss, p, b, jax.random.key(0), num_iters=300))(
                params, batch
            )
            np.testing.assert_allclose(float(res.eigenvalue), top, rtol=1e-4)


def _quadratic_loss(w, batch):
    return 0.5 * w @ batch[0] @ w


SPD_DIM, SPD_DEPTH = 4, 160

# lissa is not jitted on its own: jit it once here so every hypothesis example reuses one compilation
_auto_scale_lissa = jax.jit(lambda v, batches, key: cv.lissa(_quadratic_loss, jnp.zeros(SPD_DIM), v, batches, key=key))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), log_cond=st.floats(0.0, 1.5), magnitude=st.floats(-2.0, 2.0))
def test_lissa_automatic_scale_converges_on_random_spd_problems(seed, log_cond, magnitude):
    """Quadratic losses 1/2 w^T A w with random SPD A (condition number up to e^1.5, any overall size):
    with scale=None the recursion converges to A^-1 v. Fixed shapes, so one compilation serves all examples."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(SPD_DIM, SPD_DIM)))
        eigs = np.exp(np.linspace(0.0, log_cond, SPD_DIM) + magnitude)
        a = jnp.asarray(q @ np.diag(eigs) @ q.T)
        v = jnp.asarray(rng.normal(size=SPD_DIM))
        batches = (jnp.broadcast_to(a, (SPD_DEPTH, SPD_DIM, SPD_DIM)),)
        res = _auto_scale_lissa(v, batches, jax.random.key(seed))
        np.testing.assert_allclose(res.ihvp, jnp.linalg.solve(a, v), rtol=1e-4, atol=1e-6 * np.abs(v).max() / eigs.min())
        assert 0 < float(res.scale) * eigs.max() < 2


class DivergenceTest(parameterized.TestCase):
    def _quadratic(self):
        a = jnp.diag(jnp.array([1.0, 10.0]))
        return (lambda w, batch: 0.5 * w @ batch[0] @ w), (jnp.broadcast_to(a, (50, 2, 2)),)

    def test_too_large_scale_raises_with_advice(self):
        loss, batches = self._quadratic()
        with pytest.raises(cv.LissaDivergenceError, match=r"scale must stay below .*0\.2"):
            cv.lissa(loss, jnp.zeros(2), jnp.ones(2), batches, scale=0.5)

    def test_divergence_is_reported_under_jit_too(self):
        loss, batches = self._quadratic()
        f = jax.jit(lambda v, b: cv.lissa(loss, jnp.zeros(2), v, b, scale=0.5).ihvp)
        with pytest.raises(Exception, match="LiSSA diverged"):
            jax.block_until_ready(f(jnp.ones(2), batches))

    def test_divergence_keeps_its_class_under_jaxunlearn_jit(self):
        loss, batches = self._quadratic()
        f = ju.jit(lambda v, b: cv.lissa(loss, jnp.zeros(2), v, b, scale=0.5).ihvp)
        with pytest.raises(cv.LissaDivergenceError, match="scale must stay below"):
            jax.block_until_ready(f(jnp.ones(2), batches))
        # a traced damping (as influence computes it) is accepted and checked the same way
        g = ju.jit(lambda d: cv.lissa(loss, jnp.zeros(2), jnp.ones(2), batches, scale=0.5, damping=d).ihvp)
        with pytest.raises(cv.LissaDivergenceError):
            jax.block_until_ready(g(jnp.asarray(0.1)))

    def _dense_quadratic(self, depth):
        """A dense SPD quadratic whose convergence limit is exactly 2 / lambda_max = 2 / 3."""
        rng = np.random.default_rng(0)
        q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
        a = jnp.asarray(q @ np.diag(np.linspace(0.2, 3.0, 6)) @ q.T)
        return (lambda w, batch: 0.5 * w @ batch[0] @ w), (jnp.broadcast_to(a, (depth, 6, 6)),), jnp.asarray(
            rng.normal(size=6))

    @parameterized.parameters(1.025, 1.05)
    def test_slow_divergence_just_beyond_the_limit_raises(self, factor):
        """A few percent above 2 / lambda_max, 30 steps: ||h_T|| stays far below the old bound 2 (T + 1) ||v||,
        but the increments grow; the message gives the curvature met (3) and the limit 2 / 3."""
        loss, batches, v = self._dense_quadratic(30)
        scale = factor * 2.0 / 3.0
        with pytest.raises(cv.LissaDivergenceError, match=r"lambda ~ 3\b.*stay below .* = 0\.66[67]"):
            cv.lissa(loss, jnp.zeros(6), v, batches, scale=scale)
        f = ju.jit(lambda vv, b: cv.lissa(loss, jnp.zeros(6), vv, b, scale=scale).ihvp)
        with pytest.raises(cv.LissaDivergenceError, match="grew"):
            jax.block_until_ready(f(v, batches))
        unchecked = cv.lissa(loss, jnp.zeros(6), v, batches, scale=scale, check=False)
        assert float(unchecked.norms[0, -1]) < 2 * 31 * float(jnp.linalg.norm(v))

    def test_just_below_the_limit_does_not_raise(self):
        loss, batches, v = self._dense_quadratic(30)
        res = cv.lissa(loss, jnp.zeros(6), v, batches, scale=0.999 * 2.0 / 3.0)
        assert np.all(np.isfinite(res.ihvp)) and res.increments.shape == (1, 30)
        assert np.all(np.diff(res.increments[0]) <= 1e-12)  # a convergent recursion never grows its increments

    def test_overflow_reports_the_last_finite_norm_and_curvature(self):
        """float32 overflows within 50 steps at scale 100 on eigenvalues (1, 10): no nan in the message."""
        with jax.enable_x64(False):
            loss, batches = self._quadratic()
            for fn in (cv.lissa, ju.jit(cv.lissa, static_argnums=0)):
                with pytest.raises(cv.LissaDivergenceError) as info:
                    jax.block_until_ready(fn(loss, jnp.zeros(2), jnp.ones(2), batches, scale=100.0).ihvp)
                message = str(info.value)
                assert "nan" not in message and "inf " not in message.replace("inf or NaN", ""), message
                assert re.search(r"overflowed: \|\|h\|\| reached \d\.\d+e\+\d+ before turning inf", message), message
                assert re.search(r"lambda ~ 10\b.*scale=0\.1 ", message), message

    @parameterized.parameters("params", "v")
    def test_non_finite_params_or_v_are_named_not_the_scale(self, which):
        loss, batches = self._quadratic()
        bad = jnp.array([0.0, jnp.nan])
        params, v = (bad, jnp.ones(2)) if which == "params" else (jnp.zeros(2), bad)
        for fn in (cv.lissa, ju.jit(cv.lissa, static_argnums=0)):
            with pytest.raises(FloatingPointError, match=f"^{which} holds non-finite values") as info:
                jax.block_until_ready(fn(loss, params, v, batches, scale=0.1).ihvp)
            assert not isinstance(info.value, cv.LissaDivergenceError)

    def test_automatic_scale_needs_a_key(self):
        loss, batches = self._quadratic()
        with pytest.raises(ValueError, match="key"):
            cv.lissa(loss, jnp.zeros(2), jnp.ones(2), batches)
        with pytest.raises(TypeError, match="key"):
            cv.estimate_scale(loss, jnp.zeros(2), batches, key=None)

    def test_negative_curvature_asks_for_damping(self):
        a = jnp.diag(jnp.array([1.0, -0.5]))
        loss = lambda w, batch: 0.5 * w @ batch[0] @ w  # noqa: E731
        with pytest.raises(cv.LissaDivergenceError, match="negative curvature.*damping"):
            cv.lissa(loss, jnp.zeros(2), jnp.ones(2), (jnp.broadcast_to(a, (80, 2, 2)),), scale=0.5)

    def test_scale_within_bound_does_not_raise(self):
        loss, batches = self._quadratic()
        res = cv.lissa(loss, jnp.zeros(2), jnp.ones(2), batches, scale=0.15)
        assert np.all(np.isfinite(res.ihvp))

    def test_cg_on_indefinite_problem_raises(self):
        a = jnp.diag(jnp.array([1.0, -1e-3, 2.0]))
        loss = lambda w, batch: 0.5 * w @ batch[0] @ w  # noqa: E731
        with pytest.raises(cv.CGConvergenceError, match="indefinite"):
            cv.cg(loss, jnp.zeros(3), jnp.ones(3), (a,), maxiter=2)

    def test_cg_failure_keeps_its_class_under_jaxunlearn_jit(self):
        a = jnp.diag(jnp.array([1.0, -1e-3, 2.0]))
        loss = lambda w, batch: 0.5 * w @ batch[0] @ w  # noqa: E731
        f = ju.jit(lambda v, b: cv.cg(loss, jnp.zeros(3), v, b, maxiter=2).ihvp)
        with pytest.raises(cv.CGConvergenceError, match="indefinite"):
            jax.block_until_ready(f(jnp.ones(3), (a,)))


class BadInputTest(parameterized.TestCase):
    def test_mismatched_vector_structure(self):
        params = {"a": jnp.ones(2), "b": jnp.ones(3)}
        with pytest.raises(ValueError, match="same pytree structure"):
            cv.hvp(lambda p, b: 0.0, params, {"a": jnp.ones(2)}, None)

    def test_mismatched_leaf_shape(self):
        params = {"a": jnp.ones(2)}
        with pytest.raises(ValueError, match=r"shape mismatch at \['a'\]"):
            cv.lissa(lambda p, b: 0.0, params, {"a": jnp.ones(3)}, (jnp.ones((4, 2)),), scale=1.0)

    def test_batches_of_wrong_rank_for_repeats(self):
        with pytest.raises(ValueError, match="num_repeats"):
            cv.lissa(lambda p, b: jnp.sum(p**2), jnp.ones(2), jnp.ones(2), (jnp.ones((4, 2)),), scale=0.1, num_repeats=3)
