"""Newton / influence removal on L2-regularised logistic regression against dense solves and the retrained optimum."""

import functools
import importlib

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import jaxunlearn as ju
from jaxunlearn import curvature

I = importlib.import_module("jaxunlearn.methods.influence")  # the package exports a function of the same name

C = 0.1  # L2 strength on all parameters


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def apply_fn(params, batch):
    return batch[0] @ params["w"] + params["b"]


def output_loss(z, batch):
    return jnp.mean(jax.nn.softplus(-(2.0 * batch[1] - 1.0) * z))


def loss_fn(params, batch):
    l2 = jnp.sum(params["w"] ** 2) + params["b"] ** 2
    return output_loss(apply_fn(params, batch), batch) + 0.5 * C * l2


def _newton_optimum(params, data, steps=30):
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    @jax.jit
    def newton(flat, data):
        f = lambda v: loss_fn(unravel(v), data)  # noqa: E731
        step = lambda _, v: v - jnp.linalg.solve(jax.hessian(f)(v), jax.grad(f)(v))  # noqa: E731
        return jax.lax.fori_loop(0, steps, step, flat)

    return unravel(newton(flat, data))


@functools.lru_cache(maxsize=None)
def _problem():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        n, d = 120, 4
        x = rng.normal(size=(n, d))
        y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.5 * rng.normal(size=n) > 0).astype(np.float64)
        # forget 12 examples of label 1, the ones pushing hardest on w[0]
        forget_idx = np.argsort(-x[:, 0] * (y == 1))[:12]
        keep = np.setdiff1d(np.arange(n), forget_idx)
        full, forget, retain = (x, y), (x[forget_idx], y[forget_idx]), (x[keep], y[keep])
        zero = {"w": jnp.zeros(d), "b": jnp.zeros(())}
        return _newton_optimum(zero, full), _newton_optimum(zero, retain), full, jnp.asarray(forget_idx), forget, retain


def _flat(tree):
    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])


def _dense_step(params, forget, retain, damping=0.0):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    h = np.asarray(jax.jit(jax.hessian(lambda v: loss_fn(unravel(v), retain)))(flat))
    g = np.asarray(jax.jit(jax.grad(lambda v: loss_fn(unravel(v), forget)))(flat))
    n_f, n_r = len(forget[0]), len(retain[0])
    return _flat(params) + (n_f / n_r) * np.linalg.solve(h + damping * np.eye(len(flat)), g)


KEY = jax.random.key(0)


def _run(unlearner, theta, full, request, key=KEY):
    return unlearner.update(theta, request, unlearner.init(theta, full, key=KEY), key=key)


class InfluenceTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_cg_step_matches_dense_newton_and_lands_near_the_retrained_optimum(self):
        theta, theta_r, full, request, forget, retain = _problem()
        unlearner = I.influence(loss_fn, damping=0.0)
        state = unlearner.init(theta, full, key=KEY)
        new_params, new_state, info = self.variant(unlearner.update)(theta, request, state, key=KEY)
        np.testing.assert_allclose(_flat(new_params), _dense_step(theta, forget, retain), rtol=1e-7, atol=1e-9)
        before = np.linalg.norm(_flat(theta) - _flat(theta_r))
        after = np.linalg.norm(_flat(new_params) - _flat(theta_r))
        assert before > 0.15  # the removal matters
        assert after < 0.05 * before
        assert float(info.residual) < 1e-5
        assert float(info.step_norm) == pytest.approx(np.linalg.norm(_flat(new_params) - _flat(theta)), rel=1e-6)
        assert int(np.sum(new_state.store.alive)) == 108

    def test_variants_agree(self):
        theta, _, full, request, forget, retain = _problem()
        base = I.influence(loss_fn, damping=0.01)
        want, _, _ = _run(base, theta, full, request)
        np.testing.assert_allclose(_flat(want), _dense_step(theta, forget, retain, 0.01), rtol=1e-7, atol=1e-9)
        # the retain-gradient Newton step equals the forget form at an exact optimum
        got, _, _ = _run(I.influence(loss_fn, damping=0.01, gradient="retain"), theta, full, request)
        np.testing.assert_allclose(_flat(got), _flat(want), rtol=1e-6, atol=1e-8)
        # the Hessian-vector products over chunks of 32 (last one short) equal the one-batch ones
        got, _, _ = _run(I.influence(loss_fn, damping=0.01, hessian_batch_size=32), theta, full, request)
        np.testing.assert_allclose(_flat(got), _flat(want), rtol=1e-8, atol=1e-10)
        # logistic regression: Gauss-Newton of the data term + C I (the L2 Hessian, given as damping) = Hessian
        gn = I.influence(loss_fn, damping=0.01 + C, gauss_newton=(apply_fn, output_loss))
        got, _, _ = _run(gn, theta, full, request)
        np.testing.assert_allclose(_flat(got), _flat(want), rtol=1e-7, atol=1e-9)
        # LiSSA: stochastic minibatch Hessians (4 averaged recursions), close to the exact step
        flat, unravel = jax.flatten_util.ravel_pytree(theta)
        top = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda v: loss_fn(unravel(v), retain))(flat)))[-1]
        lissa = I.influence(
            loss_fn, solver="lissa", damping=0.01, lissa_depth=300, lissa_batch_size=64, lissa_repeats=4,
            lissa_scale=1.0 / (1.1 * top),
        )
        got, _, info = _run(lissa, theta, full, request)
        step = _flat(want) - _flat(theta)
        assert np.linalg.norm(_flat(got) - _flat(want)) < 0.1 * np.linalg.norm(step)
        assert np.isnan(float(info.residual))

    def test_lissa_minibatches_are_the_retained_examples(self):
        # minibatches of 108 distinct retained examples out of 108 left: every step sees exactly D_r, so the
        # step equals LiSSA run directly on the retain data (any forgotten example drawn would change it)
        theta, _, full, request, forget, retain = _problem()
        unlearner = I.influence(loss_fn, solver="lissa", damping=0.01, lissa_depth=60, lissa_batch_size=108,
                                lissa_scale=0.5)
        got, _, _ = _run(unlearner, theta, full, request)
        v = jax.tree.map(lambda g: (12 / 108) * g, jax.grad(loss_fn)(theta, forget))
        batches = jax.tree.map(lambda a: jnp.broadcast_to(a, (60,) + a.shape), retain)
        want = curvature.lissa(loss_fn, theta, v, batches, scale=0.5, damping=0.005).ihvp
        np.testing.assert_allclose(_flat(got) - _flat(theta), _flat(want), rtol=1e-9, atol=1e-12)
        # the automatic scale (power iteration started from the key) is reproducible
        auto = I.influence(loss_fn, solver="lissa", damping=0.01, lissa_depth=50, lissa_batch_size=100)
        a, _, _ = _run(auto, theta, full, request, jax.random.key(1))
        b, _, _ = _run(auto, theta, full, request, jax.random.key(1))
        chex.assert_trees_all_equal(a, b)

    def test_gauss_newton_loss_hessian_is_the_ggn_product(self):
        rng = np.random.default_rng(1)
        params = {"w1": jnp.asarray(rng.normal(size=(3, 4))), "w2": jnp.asarray(rng.normal(size=(4, 2)))}
        batch = (jnp.asarray(rng.normal(size=(7, 3))), jnp.asarray(rng.integers(0, 2, 7)))
        v = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
        net = lambda p, b: jnp.tanh(b[0] @ p["w1"]) @ p["w2"]  # noqa: E731
        ce = lambda out, b: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), b[1][:, None], 1))  # noqa: E731
        got = curvature.hvp(I.gauss_newton_loss(net, ce, params), params, v, batch)
        chex.assert_trees_all_close(got, curvature.ggn_vp(net, ce, params, v, batch), rtol=1e-10)


class ContractTest(chex.TestCase):
    def test_sequential_requests_use_the_shrinking_retain_set_and_compile_once(self):
        theta, _, full, request, _, _ = _problem()
        traces = []

        def counted(p, batch):
            traces.append(1)
            return loss_fn(p, batch)

        unlearner = I.influence(counted, damping=0.01)
        state = unlearner.init(theta, full, key=KEY)
        first, second = request[:6], request[6:]
        p1, s1, _ = unlearner.update(theta, first, state, key=KEY)
        traced = len(traces)
        p2, s2, _ = unlearner.update(p1, second, s1, key=KEY)
        assert len(traces) == traced  # same request size: the compiled update is reused
        # the second step inverts the Hessian of the data left after both requests, at p1
        x, y = full
        keep = np.setdiff1d(np.arange(len(x)), np.asarray(request))
        want = _dense_step(p1, (x[np.asarray(second)], y[np.asarray(second)]), (x[keep], y[keep]), 0.01)
        np.testing.assert_allclose(_flat(p2), want, rtol=1e-7, atol=1e-9)
        assert int(np.sum(s2.store.alive)) == len(keep)
        jitted = ju.jit(unlearner.update)(p1, second, s1, key=KEY)
        np.testing.assert_allclose(_flat(jitted[0]), _flat(p2), rtol=1e-10)

    def test_forgotten_index_reused_raises(self):
        theta, _, full, request, _, _ = _problem()
        unlearner = I.influence(loss_fn, damping=0.01)
        _, state, _ = _run(unlearner, theta, full, request)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            unlearner.update(theta, request, state, key=KEY)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            ju.jit(unlearner.update)(theta, request, state, key=KEY)

    def test_bad_input_is_named(self):
        theta, _, full, request, _, _ = _problem()
        unlearner = I.influence(loss_fn)
        state = unlearner.init(theta, full, key=KEY)
        with pytest.raises(ValueError, match="request is empty"):
            unlearner.update(theta, jnp.arange(0), state, key=KEY)
        with pytest.raises(FloatingPointError, match="non-finite"):
            unlearner.update({**theta, "b": jnp.asarray(jnp.nan)}, request, state, key=KEY)
        with pytest.raises(TypeError, match="InfluenceState"):
            unlearner.update(theta, request, None, key=KEY)
        with pytest.raises(TypeError, match="key"):
            unlearner.update(theta, request, state, key=None)
        with pytest.raises(ValueError, match="no example would remain"):
            unlearner.update(theta, jnp.arange(120), state, key=KEY)
        with pytest.raises(ValueError, match="data does not fit the model"):
            unlearner.init(theta, (np.zeros((5, 3)), np.zeros(5)), key=KEY)
        with pytest.raises(ValueError, match="solver"):
            I.influence(loss_fn, solver="exact")
        with pytest.raises(ValueError, match="damping"):
            I.influence(loss_fn, damping=-1.0)
        with pytest.raises(TypeError, match="gauss_newton"):
            I.influence(loss_fn, gauss_newton=apply_fn)
        # an indefinite Hessian breaks CG down: a typed error, not NaN parameters, also under jaxunlearn.jit
        saddle = lambda p, b: p["w"][0] ** 2 - p["w"][1] ** 2 + 0.0 * jnp.sum(b[0])  # noqa: E731
        bad = I.influence(saddle, damping=0.0, gradient="retain")
        w = {"w": jnp.array([1.0, 1.0])}
        bad_state = bad.init(w, full, key=KEY)
        with pytest.raises(curvature.CGConvergenceError, match="indefinite"):
            bad.update(w, request, bad_state, key=KEY)
        with pytest.raises(curvature.CGConvergenceError, match="indefinite"):
            ju.jit(bad.update)(w, request, bad_state, key=KEY)
