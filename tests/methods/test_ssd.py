"""SSD / LFSSD: hand-computed dampening, importances against brute-force loops, untouched unselected params."""

import functools
import importlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxunlearn as ju
from jaxunlearn import curvature

S = importlib.import_module("jaxunlearn.methods.ssd")  # the package exports a function of the same name


class BNNet(nn.Module):
    """Dense -> BatchNorm -> relu -> Dense: every trainable kind SSD must touch."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(8)(x)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
        return nn.Dense(3)(nn.relu(h))


@functools.lru_cache(maxsize=None)
def _ssd(loss_fn, alpha, batch_size):  # shared across tests, so are its compilations
    return S.ssd(loss_fn, alpha=alpha, lambda_=1.0, batch_size=batch_size)


@functools.lru_cache(maxsize=None)
def _problem(seed=0, n=64):
    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, 3, size=n)).astype(np.int32)  # class-sorted, like SSD's full-train loader
    x = (rng.normal(size=(n, 4)) + y[:, None]).astype(np.float32)
    model = BNNet()
    variables = jax.jit(model.init)(jax.random.key(seed), x[:2])
    # non-trivial running statistics, held fixed in eval mode
    variables = {
        "params": variables["params"],
        "batch_stats": jax.tree.map(lambda a: a + 0.3, variables["batch_stats"]),
    }
    rest = {"batch_stats": variables["batch_stats"]}

    def logits_fn(params, xb):
        return model.apply({"params": params, **rest}, xb, train=False)

    def loss_fn(params, batch):
        xb, yb = batch
        logp = jax.nn.log_softmax(logits_fn(params, xb))
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    return variables["params"], (x, y), logits_fn, loss_fn


def _batch_importance_loop(loss_fn, params, data, batch_size, transform):
    """(1/M) sum_j transform(grad L(B_j)) with a plain Python loop over consecutive batches."""
    n = len(data[0])
    grad_fn = jax.jit(jax.grad(loss_fn))
    grads = [
        jax.tree.map(transform, grad_fn(params, (data[0][i : i + batch_size], data[1][i : i + batch_size])))
        for i in range(0, n, batch_size)
    ]
    return jax.tree.map(lambda *g: np.mean(np.stack(g), axis=0), *grads)


class DampenTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_computed_rules(self):
        params = {"a": jnp.array([1.0, 2.0, 3.0, 4.0]), "b": jnp.array([[-5.0]])}
        i_f = {"a": jnp.array([0.0, 5.0, 30.0, 2.0]), "b": jnp.array([[1.0]])}
        i_d = {"a": jnp.array([1.0, 1.0, 2.0, 0.0]), "b": jnp.array([[0.05]])}

        def run(rule, alpha, lam):
            fn = self.variant(lambda p, f, d: S.dampen(p, f, d, alpha=alpha, lambda_=lam, rule=rule))
            new, mask = fn(params, i_f, i_d)
            return np.asarray(new["a"]), np.asarray(new["b"]), np.asarray(mask["a"])

        # selected where I_f > 10 I_D: positions 2 (30 > 20), 3 (2 > 0), b (1 > 0.5)
        a, b, m = run("dampen", 10.0, 1.0)
        np.testing.assert_array_equal(m, [False, False, True, True])
        np.testing.assert_allclose(a, [1.0, 2.0, 3.0 * 2.0 / 30.0, 0.0], rtol=1e-6)
        np.testing.assert_allclose(b, [[-5.0 * 0.05]], rtol=1e-6)
        # lambda = 20: min(20 * 2 / 30, 1) = 1 keeps position 2; b: min(20 * 0.05 / 1, 1) = 1
        a, b, _ = run("dampen", 10.0, 20.0)
        np.testing.assert_allclose(a, [1.0, 2.0, 3.0, 0.0])
        np.testing.assert_allclose(b, [[-5.0]])
        # prune: zero where I_f > I_D
        a, b, _ = run("prune", 10.0, 1.0)
        np.testing.assert_allclose(a, [1.0, 0.0, 0.0, 0.0])
        np.testing.assert_allclose(b, [[0.0]])
        # binary, lambda = 6: zero where I_f > 6 I_D: 5 > 6 no, 30 > 12 yes, 2 > 0 yes, 1 > 0.3 yes
        a, b, _ = run("binary", 10.0, 6.0)
        np.testing.assert_allclose(a, [1.0, 2.0, 0.0, 0.0])
        np.testing.assert_allclose(b, [[0.0]])

    def test_equal_importances_select_nothing_strictly(self):
        params = {"a": jnp.array([1.0, 2.0])}
        imp = {"a": jnp.array([0.0, 3.0])}
        new, mask = S.dampen(params, imp, imp, alpha=1.0)
        assert not np.any(np.asarray(mask["a"]))
        np.testing.assert_array_equal(new["a"], params["a"])


KEY = jax.random.key(0)


class SSDTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_update_matches_bruteforce_and_leaves_unselected_params_untouched(self):
        params, full, logits_fn, loss_fn = _problem()
        request = jnp.arange(16)  # the first examples of the class-sorted data
        forget = (full[0][:16], full[1][:16])
        unlearner = _ssd(loss_fn, 2.0, 16)
        state = unlearner.init(params, full, key=KEY)
        new_params, new_state, info = self.variant(unlearner.update)(params, request, state, key=KEY)

        square = lambda g: np.asarray(g) ** 2  # noqa: E731
        i_d = _batch_importance_loop(loss_fn, params, full, 16, square)
        i_f = _batch_importance_loop(loss_fn, params, forget, 16, square)
        chex.assert_trees_all_close(state.full_importance, i_d, rtol=1e-4, atol=1e-10)
        chex.assert_trees_all_close(info.forget_importance, i_f, rtol=1e-4, atol=1e-10)
        # batch-norm scale and bias are part of the importances and of the dampening
        assert set(state.full_importance["BatchNorm_0"]) == {"scale", "bias"}

        selected = 0
        for p, new, f, d in zip(*(jax.tree.leaves(t) for t in (params, new_params, i_f, i_d))):
            p, new = np.asarray(p), np.asarray(new)
            mask = f > 2.0 * d
            selected += mask.sum()
            np.testing.assert_array_equal(new[~mask], p[~mask])  # bit-for-bit untouched
            want = np.minimum(d[mask] / f[mask], 1.0) * p[mask]
            np.testing.assert_allclose(new[mask], want, rtol=1e-4, atol=1e-7)
        total = sum(np.size(p) for p in jax.tree.leaves(params))
        assert 0 < selected < total
        assert int(info.num_selected) == selected
        assert float(info.selected_fraction) == pytest.approx(selected / total)
        np.testing.assert_array_equal(new_state.store.alive, np.arange(64) >= 16)
        # I_D is computed once and carried to the next request unchanged
        chex.assert_trees_all_equal(new_state.full_importance, state.full_importance)

    def test_forget_importance_follows_request_order(self):
        # batch_squared batches the forget examples in request order: a request listing the examples
        # of two classes interleaved gives other batches than one listing them class by class
        params, full, _, loss_fn = _problem()
        unlearner = _ssd(loss_fn, 2.0, 16)
        state = unlearner.init(params, full, key=KEY)
        request = jnp.asarray(np.r_[0:8, 56:64, 8:16, 48:56])
        forget = jax.tree.map(lambda a: a[np.asarray(request)], full)
        _, _, info = unlearner.update(params, request, state, key=KEY)
        want = _batch_importance_loop(loss_fn, params, forget, 16, lambda g: np.asarray(g) ** 2)
        chex.assert_trees_all_close(info.forget_importance, want, rtol=1e-4, atol=1e-10)

    def test_empirical_estimator_matches_per_example_loop(self):
        params, full, _, loss_fn = _problem()
        state = S.ssd(loss_fn, estimator="empirical", batch_size=32).init(params, full, key=KEY)
        grad_fn = jax.jit(jax.grad(loss_fn))
        grads = [grad_fn(params, (full[0][i : i + 1], full[1][i : i + 1])) for i in range(len(full[0]))]
        want = jax.tree.map(lambda *g: np.mean(np.stack(g) ** 2, axis=0), *grads)
        chex.assert_trees_all_close(state.full_importance, want, rtol=1e-4, atol=1e-10)

    def test_true_estimator_draws_labels_from_the_key(self):
        params, full, logits_fn, loss_fn = _problem()
        sample_fn = curvature.sample_categorical_labels(logits_fn)
        unlearner = S.ssd(loss_fn, alpha=2.0, estimator="true", batch_size=16, sample_fn=sample_fn)
        state = unlearner.init(params, full, key=jax.random.key(1))
        request = jnp.arange(16)
        a = unlearner.update(params, request, state, key=jax.random.key(2))
        b = unlearner.update(params, request, state, key=jax.random.key(2))
        c = unlearner.update(params, request, state, key=jax.random.key(3))
        chex.assert_trees_all_equal(a, b)
        assert not np.allclose(a[2].forget_importance["Dense_0"]["kernel"], c[2].forget_importance["Dense_0"]["kernel"])

    @chex.variants(with_jit=True, without_jit=True)
    def test_lfssd_uses_abs_grad_of_squared_logit_norm(self):
        params, full, logits_fn, _ = _problem()
        inputs = full[0]  # inputs only: label-free
        unlearner = S.lfssd(logits_fn, alpha=1.5, batch_size=16)
        state = unlearner.init(params, inputs, key=KEY)

        def lf_loss(p, batch):
            return jnp.mean(jnp.sum(logits_fn(p, batch[0]) ** 2, axis=1))

        absolute = lambda g: np.abs(np.asarray(g))  # noqa: E731
        want_d = _batch_importance_loop(lf_loss, params, full, 16, absolute)
        chex.assert_trees_all_close(state.full_importance, want_d, rtol=1e-4, atol=1e-10)
        new_params, _, info = self.variant(unlearner.update)(params, jnp.arange(16), state, key=KEY)
        forget = inputs[:16]
        want_f = _batch_importance_loop(lf_loss, params, (forget, forget), 16, absolute)
        chex.assert_trees_all_close(info.forget_importance, want_f, rtol=1e-4, atol=1e-10)
        for p, new, f, d in zip(*(jax.tree.leaves(t) for t in (params, new_params, want_f, want_d))):
            mask = f > 1.5 * d
            np.testing.assert_array_equal(np.asarray(new)[~mask], np.asarray(p)[~mask])
        # labelled data give the same importances (labels ignored)
        chex.assert_trees_all_equal(unlearner.init(params, full, key=KEY).full_importance, state.full_importance)

    def test_forgetting_the_full_data_selects_nothing(self):
        # I_f = I_D (same data, same batches): I_f > 2 I_D never holds
        params, full, _, loss_fn = _problem()
        unlearner = _ssd(loss_fn, 2.0, 16)
        new_params, state, info = unlearner.update(params, jnp.arange(64), unlearner.init(params, full, key=KEY),
                                                   key=KEY)
        assert int(info.num_selected) == 0
        assert not np.any(state.store.alive)
        chex.assert_trees_all_equal(new_params, params)


class ContractTest(chex.TestCase):
    def test_sequential_requests_reuse_full_importance_and_compile_once(self):
        params, full, _, loss_fn = _problem()
        traces = []

        def counted_loss(p, batch):
            traces.append(1)
            return loss_fn(p, batch)

        unlearner = S.ssd(counted_loss, alpha=2.0, batch_size=16)
        state = unlearner.init(params, full, key=KEY)
        p1, s1, _ = unlearner.update(params, jnp.arange(8), state, key=KEY)
        traced = len(traces)
        p2, s2, info2 = unlearner.update(p1, jnp.arange(8, 16), s1, key=KEY)
        assert len(traces) == traced  # a second request of the same size does not retrace
        chex.assert_trees_all_equal(s2.full_importance, state.full_importance)
        np.testing.assert_array_equal(s2.store.alive, np.arange(64) >= 16)
        # the second request is SSD on its own examples, at the params the first one left
        want = _batch_importance_loop(loss_fn, p1, jax.tree.map(lambda a: a[8:16], full), 16,
                                      lambda g: np.asarray(g) ** 2)
        chex.assert_trees_all_close(info2.forget_importance, want, rtol=1e-4, atol=1e-10)

    def test_forgotten_index_reused_raises(self):
        params, full, _, loss_fn = _problem()
        unlearner = _ssd(loss_fn, 2.0, 16)
        _, state, _ = unlearner.update(params, jnp.arange(16), unlearner.init(params, full, key=KEY), key=KEY)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            unlearner.update(params, jnp.arange(8, 24), state, key=KEY)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            ju.jit(unlearner.update)(params, jnp.arange(8, 24), state, key=KEY)

    def test_bad_input_is_named(self):
        params, full, logits_fn, loss_fn = _problem()
        unlearner = _ssd(loss_fn, 2.0, 16)
        state = unlearner.init(params, full, key=KEY)
        with pytest.raises(ValueError, match="request is empty"):
            unlearner.update(params, jnp.arange(0), state, key=KEY)
        with pytest.raises(ValueError, match="invalid"):
            unlearner.update(params, jnp.array([3, 64]), state, key=KEY)
        with pytest.raises(ValueError, match="state.full_importance"):
            unlearner.update(params, jnp.arange(4), state._replace(full_importance={"other": jnp.zeros(3)}), key=KEY)
        bad = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), params)
        with pytest.raises(FloatingPointError, match="non-finite"):
            unlearner.update(bad, jnp.arange(4), state, key=KEY)
        with pytest.raises(FloatingPointError, match="non-finite"):
            ju.jit(unlearner.update)(bad, jnp.arange(4), state, key=KEY)
        with pytest.raises(TypeError, match="SSDState"):
            unlearner.update(params, jnp.arange(4), None, key=KEY)
        with pytest.raises(TypeError, match="key"):
            unlearner.update(params, jnp.arange(4), state, key=None)
        with pytest.raises(ValueError, match="data does not fit the model"):
            unlearner.init(params, (np.zeros((8, 5), np.float32), full[1][:8]), key=KEY)
        with pytest.raises(ValueError, match="data labels"):
            unlearner.init(params, (full[0], full[1] - 1), key=KEY)
        for alpha in (-1.0, 0.0, float("nan")):  # alpha = 0 would select every parameter the forget set touches
            with pytest.raises(ValueError, match="alpha"):
                S.ssd(loss_fn, alpha=alpha)
        with pytest.raises(ValueError, match="rule"):
            S.ssd(loss_fn, rule="zero")
        with pytest.raises(ValueError, match="estimator"):
            S.ssd(loss_fn, estimator="kfac")
        with pytest.raises(ValueError, match="sample_fn"):
            S.ssd(loss_fn, estimator="true")
        with pytest.raises(ValueError, match="estimator"):
            S.lfssd(logits_fn, estimator="true")
