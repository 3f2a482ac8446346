"""jaxunlearn.train.loop: a step is the hand-computed update, epochs match a brute-force numpy loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn.train import TrainState, batch_sizes, fit, init_train_state, make_step, params_only, torch_sgd

RNG = np.random.default_rng(0)
X = RNG.normal(size=(23, 3)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5]) + 0.1 * RNG.normal(size=23)).astype(np.float32)
W0 = np.array([0.3, 0.1, -0.2], np.float32)


def squared_loss(w, batch):
    x, y = batch
    return jnp.mean((x @ w - y) ** 2)


def numpy_grad(w, x, y):
    return 2.0 / len(y) * x.T @ (x @ w - y)


def numpy_torch_sgd(w, batches, lr, momentum, wd):
    """PyTorch SGD, written out: g = grad + wd w; b = mu b + g (b = g at first); w -= lr b."""
    buf = None
    for x, y in batches:
        g = numpy_grad(w, x, y) + wd * w
        buf = g if buf is None else momentum * buf + g
        w = w - lr * buf
    return w


class TestStep(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_two_steps_equal_hand_computed_sgd(self):
        opt = torch_sgd(0.05, momentum=0.9, weight_decay=0.01)
        step = self.variant(make_step(params_only(squared_loss), opt))
        state = init_train_state(jnp.asarray(W0), opt)
        batches = [(X[:8], Y[:8]), (X[8:16], Y[8:16])]
        for b in batches:
            state, loss = step(state, b, jax.random.key(0))
        np.testing.assert_allclose(state.params, numpy_torch_sgd(W0, batches, 0.05, 0.9, 0.01), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(loss, squared_loss(jnp.asarray(numpy_torch_sgd(W0, batches[:1], 0.05, 0.9, 0.01)), batches[1]), rtol=1e-5)
        assert int(state.step) == 2

    @chex.variants(with_jit=True, without_jit=True)
    def test_adam_step_equals_formula(self):
        opt = optax.adam(0.1)
        state = init_train_state(jnp.asarray(W0), opt)
        state, _ = self.variant(make_step(params_only(squared_loss), opt))(state, (X, Y), jax.random.key(0))
        g = numpy_grad(W0, X, Y)
        m_hat, v_hat = g, g * g  # bias-corrected first moments after one step
        np.testing.assert_allclose(state.params, W0 - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-5, atol=1e-6)


def brute_force_fit(key, num_epochs, batch_size, lr, shuffle=True):
    """Plain SGD in numpy over the documented batch order: epoch e permutes with fold_in(shuffle_key, e)."""
    shuffle_key, _ = jax.random.split(key)
    w = W0.astype(np.float64)
    for e in range(num_epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, e), len(Y))) if shuffle else np.arange(len(Y))
        for start in range(0, len(Y), batch_size):
            idx = order[start : start + batch_size]
            w = w - lr * numpy_grad(w, X[idx].astype(np.float64), Y[idx].astype(np.float64))
    return w


class TestFit(chex.TestCase):
    def _fit(self, scan, key=jax.random.key(3), shuffle=True, num_epochs=3):
        opt = optax.sgd(0.05)
        return fit(params_only(squared_loss), opt, init_train_state(jnp.asarray(W0), opt), (X, Y),
                   batch_size=5, num_epochs=num_epochs, key=key, shuffle=shuffle, progress=False, scan=scan)

    def test_scan_path_matches_numpy_loop(self):
        state, hist = self._fit(scan=True)
        np.testing.assert_allclose(state.params, brute_force_fit(jax.random.key(3), 3, 5, 0.05), rtol=1e-4, atol=1e-5)
        assert hist["step_loss"].shape == (3, 5) and hist["loss"].shape == (3,)
        assert int(state.step) == 15  # 23 examples, batch 5: four full batches and one of 3, three epochs
        np.testing.assert_allclose(hist["loss"], hist["step_loss"] @ np.array([5, 5, 5, 5, 3]) / 23, rtol=1e-6)

    def test_host_path_equals_scan_path(self):
        a, ha = self._fit(scan=True)
        b, hb = self._fit(scan=False)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ha["step_loss"], hb["step_loss"], rtol=1e-6)

    def test_unshuffled_matches_numpy_loop(self):
        state, _ = self._fit(scan=True, shuffle=False, num_epochs=2)
        np.testing.assert_allclose(state.params, brute_force_fit(jax.random.key(3), 2, 5, 0.05, shuffle=False), rtol=1e-4, atol=1e-5)

    def test_shuffling_is_seeded(self):
        a, ha = self._fit(scan=True, key=jax.random.key(7))
        b, hb = self._fit(scan=True, key=jax.random.key(7))
        c, hc = self._fit(scan=True, key=jax.random.key(8))
        np.testing.assert_array_equal(a.params, b.params)
        np.testing.assert_array_equal(ha["step_loss"], hb["step_loss"])
        assert not np.allclose(ha["step_loss"], hc["step_loss"])

    def test_fit_under_jit_equals_eager(self):
        opt = optax.sgd(0.05)
        loss = params_only(squared_loss)

        @jax.jit
        def run(w, x, y, key):
            state, hist = fit(loss, opt, init_train_state(w, opt), (x, y), batch_size=5, num_epochs=3, key=key)
            return state.params, hist["loss"]

        w, losses = run(jnp.asarray(W0), X, Y, jax.random.key(3))
        eager, hist = self._fit(scan=True)
        np.testing.assert_allclose(w, eager.params, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(losses, hist["loss"], rtol=1e-5)

    def test_zero_epochs_is_identity(self):
        state, hist = self._fit(scan=True, num_epochs=0)
        np.testing.assert_array_equal(state.params, W0)
        assert hist["loss"].shape == (0,) and hist["step_loss"].shape == (0, 5)

    def test_model_state_and_per_step_keys_are_threaded(self):
        """model_state counts steps; each step sees a distinct key, fold_in(step_key, step)."""

        def loss(w, count, batch, key):
            noise = jax.random.normal(key, ())
            return squared_loss(w, batch) + 0.0 * noise, {"count": count["count"] + 1, "last": noise}

        opt = optax.sgd(0.01)
        state = init_train_state(jnp.asarray(W0), opt, {"count": jnp.zeros((), jnp.int32), "last": jnp.zeros(())})
        key = jax.random.key(5)
        state, _ = fit(loss, opt, state, (X, Y), batch_size=10, num_epochs=2, key=key, progress=False)
        assert int(state.model_state["count"]) == 6 == int(state.step)
        _, step_key = jax.random.split(key)
        np.testing.assert_allclose(state.model_state["last"], jax.random.normal(jax.random.fold_in(step_key, 5), ()))

    def test_eval_fn_and_drop_remainder(self):
        opt = optax.sgd(0.05)
        calls = []

        def eval_fn(params, model_state):
            calls.append(1)
            return {"w0": params[0]}

        state, hist = fit(params_only(squared_loss), opt, init_train_state(jnp.asarray(W0), opt), (X, Y), batch_size=5,
                          num_epochs=2, key=jax.random.key(0), progress=False, drop_remainder=True, eval_fn=eval_fn)
        assert len(calls) == 2 and hist["w0"].shape == (2,) and int(state.step) == 8
        np.testing.assert_allclose(hist["w0"][-1], state.params[0])


def test_batch_sizes():
    np.testing.assert_array_equal(batch_sizes(23, 5, False), [5, 5, 5, 5, 3])
    np.testing.assert_array_equal(batch_sizes(23, 5, True), [5, 5, 5, 5])


def test_bad_inputs_raise_clear_errors():
    opt = optax.sgd(0.1)
    state = init_train_state(jnp.asarray(W0), opt)
    kw = dict(batch_size=4, num_epochs=1, key=jax.random.key(0), progress=False)
    loss = params_only(squared_loss)
    with pytest.raises(ValueError, match="batch_size"):
        fit(loss, opt, state, (X, Y), **{**kw, "batch_size": 0})
    with pytest.raises(ValueError, match="num_epochs"):
        fit(loss, opt, state, (X, Y), **{**kw, "num_epochs": -1})
    with pytest.raises(TypeError, match="TrainState"):
        fit(loss, opt, (W0,), (X, Y), **kw)
    with pytest.raises(TypeError, match="optimizer"):
        fit(loss, "sgd", state, (X, Y), **kw)
    with pytest.raises(TypeError, match="key"):
        fit(loss, opt, state, (X, Y), **{**kw, "key": 0})
    with pytest.raises(ValueError, match="disagree"):
        fit(loss, opt, state, (X, Y[:5]), **kw)
    with pytest.raises(ValueError, match="empty"):
        fit(loss, opt, state, (X[:0], Y[:0]), **kw)
    assert isinstance(state, TrainState)


def test_masked_epochs_equal_training_on_the_kept_examples():
    """``fit(mask=m)`` (static shapes, weighted batches) == ``fit`` on ``data[m]``, in data order."""
    from jaxunlearn.train.loop import weighted_mean

    x = jax.random.normal(jax.random.key(0), (50, 3))
    y = (x[:, 0] > 0).astype(jnp.int32)

    def loss(p, b):
        return optax.softmax_cross_entropy_with_integer_labels(b[0] @ p, b[1]).mean()

    opt, p0, mask = optax.sgd(0.1), jnp.zeros((3, 2)), jnp.arange(50) % 3 != 0
    kw = dict(batch_size=16, num_epochs=2, key=jax.random.key(1), shuffle=False, progress=False)
    masked, h_masked = fit(params_only(weighted_mean(loss)), opt, init_train_state(p0, opt), (x, y), mask=mask, **kw)
    kept, h_kept = fit(params_only(loss), opt, init_train_state(p0, opt), (x[mask], y[mask]), **kw)
    np.testing.assert_allclose(masked.params, kept.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h_masked["loss"], h_kept["loss"], rtol=1e-6)
    assert int(masked.step) == int(kept.step) == 6
    jitted = jax.jit(lambda m: fit(params_only(weighted_mean(loss)), opt, init_train_state(p0, opt), (x, y),
                                   mask=m, **kw)[0].params)
    np.testing.assert_allclose(jitted(mask), masked.params, rtol=1e-6, atol=1e-7)
