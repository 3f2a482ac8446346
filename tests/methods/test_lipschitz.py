"""JiT (Lipschitz) unlearning against a hand-written loop with the same injected noise."""

import functools
import importlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxunlearn as ju
from jaxunlearn.train.loop import split_train_key

L = importlib.import_module("jaxunlearn.methods.lipschitz")  # the package exports a function of the same name

SIGMA, N = 0.3, 3


def mlp(params, x):
    h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
    return h @ params["w2"]


@functools.lru_cache(maxsize=None)
def _problem(n=10):
    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
        "b1": jnp.asarray(rng.normal(size=5), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
    }
    x = rng.uniform(-1, 1, size=(n, 2, 3)).astype(np.float32)
    eps = rng.normal(size=(N, n, 2, 3)).astype(np.float32)
    return params, x, eps


def _reference_loss(params, x, eps):
    """The original's loss written out: clean forward, N perturbed no-grad forwards, explicit loops."""
    lo, hi = jnp.min(x), jnp.max(x)
    out = mlp(params, x)
    total = 0.0
    for s in range(eps.shape[0]):
        x_tilde = jnp.clip(x + SIGMA * eps[s], lo, hi)
        out_tilde = jax.lax.stop_gradient(mlp(params, x_tilde))
        for i in range(x.shape[0]):
            total += jnp.linalg.norm(out[i] - out_tilde[i]) / jnp.linalg.norm((x[i] - x_tilde[i]).ravel())
    return total / eps.shape[0]


@functools.lru_cache(maxsize=None)
def _unlearner(accumulate):
    return L.lipschitz(
        mlp, sigma=SIGMA, eta=0.05, num_samples=N, batch_size=4, accumulate_grads=accumulate, train_mode=False
    )


_reference_value_and_grad = jax.jit(jax.value_and_grad(_reference_loss))


def _reference_update(params, x, eps, batch_size, eta, accumulate):
    acc = jax.tree.map(jnp.zeros_like, params)
    losses = []
    for start in range(0, len(x), batch_size):
        xb, eb = x[start : start + batch_size], eps[:, start : start + batch_size]
        loss, grads = _reference_value_and_grad(params, xb, eb)
        acc = jax.tree.map(jnp.add, acc, grads) if accumulate else grads  # no zero_grad in the original
        params = jax.tree.map(lambda p, g: p - eta * g, params, acc)
        losses.append(loss)
    return params, np.array(losses)


KEY = jax.random.key(0)


class LipschitzTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_loss_matches_loop(self):
        params, x, eps = _problem()
        forward = lambda p, xx, k: mlp(p, xx)  # noqa: E731
        got = self.variant(lambda p, xx, e: L.lipschitz_loss(forward, p, xx, e, sigma=SIGMA))(params, x, eps)
        assert float(got) == pytest.approx(float(_reference_loss(params, x, eps)), rel=1e-5)
        chunked = L.lipschitz_loss(forward, params, x, eps, sigma=SIGMA, sample_batch=2)
        assert float(chunked) == pytest.approx(float(got), rel=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_update_matches_hand_loop_with_accumulated_gradients(self):
        params, x, eps = _problem()
        unlearner = _unlearner(True)
        update = self.variant(lambda p, r, st, e: unlearner.update(p, r, st, key=KEY, noise=e))
        state = unlearner.init(params, x, key=KEY)
        new_params, new_state, info = update(params, jnp.arange(len(x)), state, eps)  # batches of 4, 4, 2
        want, want_losses = _reference_update(params, x, eps, 4, 0.05, True)
        chex.assert_trees_all_close(new_params, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(info.losses, want_losses, rtol=1e-5)
        assert not np.any(new_state.store.alive)

    def test_update_matches_hand_loop_without_accumulation(self):
        params, x, eps = _problem()
        unlearner = _unlearner(False)
        state = unlearner.init(params, x, key=KEY)
        new_params, _, _ = unlearner.update(params, jnp.arange(len(x)), state, key=KEY, noise=eps)
        want, _ = _reference_update(params, x, eps, 4, 0.05, False)
        chex.assert_trees_all_close(new_params, want, rtol=1e-4, atol=1e-6)
        # the two rules really differ from the second batch on
        accumulated, _ = _reference_update(params, x, eps, 4, 0.05, True)
        assert not np.allclose(accumulated["w2"], want["w2"])

    def test_request_order_and_noise_alignment(self):
        # the forget examples are visited in request order; noise[:, j] belongs to request[j]
        params, x, eps = _problem()
        unlearner = _unlearner(True)
        state = unlearner.init(params, (x, np.zeros(len(x), np.int32)), key=KEY)
        request = np.array([7, 2, 9, 0, 5, 1])
        new_params, state, info = unlearner.update(params, jnp.asarray(request), state, key=KEY,
                                                   noise=eps[:, :6])
        want, want_losses = _reference_update(params, x[request], eps[:, :6], 4, 0.05, True)
        chex.assert_trees_all_close(new_params, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(info.losses, want_losses, rtol=1e-5)
        np.testing.assert_array_equal(state.store.alive, ~np.isin(np.arange(10), request))

    def test_zero_epochs_is_the_identity(self):
        params, x, eps = _problem()
        unlearner = L.lipschitz(mlp, num_samples=N, batch_size=5, train_mode=False, num_epochs=0)
        labelled = (x, np.zeros(len(x), np.int32))
        new_params, _, info = unlearner.update(params, jnp.arange(len(x)), unlearner.init(params, labelled, key=KEY),
                                               key=KEY, noise=eps)
        chex.assert_trees_all_equal(new_params, params)
        assert info.losses.shape == (0,)

    def test_noise_from_key_is_reproducible_and_changes_params(self):
        params, x, _ = _problem()
        unlearner = L.lipschitz(mlp, sigma=SIGMA, eta=0.05, num_samples=N, batch_size=5, train_mode=False)
        state = unlearner.init(params, x, key=KEY)
        request = jnp.arange(len(x))
        a, _, _ = unlearner.update(params, request, state, key=jax.random.key(1))
        b, _, _ = unlearner.update(params, request, state, key=jax.random.key(1))
        c, _, _ = unlearner.update(params, request, state, key=jax.random.key(2))
        chex.assert_trees_all_equal(a, b)
        assert not np.allclose(a["w1"], c["w1"]) and not np.allclose(a["w1"], params["w1"])
        # the noise of step t is normal(fold_in(k_t, 0)) with k_t the loop's step key: inject it, same result
        _, step_key = split_train_key(jax.random.key(1))
        eps = jnp.concatenate([
            jax.random.normal(jax.random.fold_in(jax.random.fold_in(step_key, t), 0), (N, 5, 2, 3)) for t in range(2)
        ], axis=1)
        injected, _, _ = unlearner.update(params, request, state, key=jax.random.key(7), noise=eps)
        chex.assert_trees_all_close(injected, a, rtol=1e-6, atol=1e-7)

    def test_integer_inputs_are_cast_to_float(self):
        params, x, eps = _problem()
        images = np.asarray(np.round((x + 1) * 2), np.uint8)  # small values: tanh does not saturate
        unlearner = _unlearner(True)
        got, _, _ = unlearner.update(params, jnp.arange(10), unlearner.init(params, images, key=KEY), key=KEY,
                                     noise=eps)
        want, _ = _reference_update(params, images.astype(np.float32), eps, 4, 0.05, True)
        chex.assert_trees_all_close(got, want, rtol=3e-4, atol=1e-5)

    def test_train_mode_gives_each_forward_its_own_randomness(self):
        params, x, eps = _problem()

        # a stochastic layer: identical keys would cancel in f(x) - f(x~) when x~ = x's neighbour
        def noisy_apply(p, xx, key):
            return mlp(p, xx) + jax.random.uniform(key, (xx.shape[0], 3))

        forward = lambda p, xx, k: noisy_apply(p, xx, k)  # noqa: E731
        key = jax.random.key(3)
        shared = L.lipschitz_loss(lambda p, xx, k: noisy_apply(p, xx, key), params, x, eps, sigma=SIGMA, key=key)
        own = L.lipschitz_loss(forward, params, x, eps, sigma=SIGMA, key=key)
        assert float(shared) == pytest.approx(float(_reference_loss(params, x, eps)), rel=1e-5)
        assert abs(float(own) - float(shared)) > 1e-3
        assert float(L.lipschitz_loss(forward, params, x, eps, sigma=SIGMA, key=key)) == float(own)

    def test_flax_dropout_model_through_train_mode_apply(self):
        class DropNet(nn.Module):
            rate: float

            @nn.compact
            def __call__(self, x, train: bool = False):
                h = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
                return nn.Dense(3)(nn.Dropout(self.rate, deterministic=not train)(h))

        _, x, eps = _problem()
        module = DropNet(0.5)
        variables = jax.jit(module.init)(jax.random.key(0), x[:1])
        params = variables["params"]
        apply = jax.jit(L.train_mode_apply(module, variables))
        # rate 0.5 in train mode: the output depends on the dropout key
        assert not np.allclose(apply(params, x, jax.random.key(1)), apply(params, x, jax.random.key(2)))
        train = L.lipschitz(apply, sigma=SIGMA, eta=0.05, num_samples=N, batch_size=5)
        state = train.init(params, x, key=KEY)
        request = jnp.arange(len(x))
        new_a, _, _ = train.update(params, request, state, key=jax.random.key(5), noise=eps)
        new_b, _, _ = train.update(params, request, state, key=jax.random.key(5), noise=eps)
        new_c, _, _ = train.update(params, request, state, key=jax.random.key(6), noise=eps)
        chex.assert_trees_all_equal(new_a, new_b)  # reproducible given the key
        assert not np.allclose(new_a["Dense_0"]["kernel"], new_c["Dense_0"]["kernel"])  # masks follow the key
        assert not np.allclose(new_a["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


class ContractTest(chex.TestCase):
    def test_sequential_requests_jit_and_compile_once(self):
        params, x, eps = _problem()
        traces = []

        def counted(p, xx):
            traces.append(1)
            return mlp(p, xx)

        unlearner = L.lipschitz(counted, sigma=SIGMA, eta=0.05, num_samples=N, batch_size=4, train_mode=False)
        state = unlearner.init(params, x, key=KEY)
        p1, s1, _ = unlearner.update(params, jnp.arange(4), state, key=KEY)
        traced = len(traces)
        p2, s2, _ = unlearner.update(p1, jnp.arange(4, 8), s1, key=jax.random.key(1))
        assert len(traces) == traced  # the second request of the same size reuses the compiled update
        np.testing.assert_array_equal(s2.store.alive, np.arange(10) >= 8)
        jitted = ju.jit(unlearner.update)(p1, jnp.arange(4, 8), s1, key=jax.random.key(1))
        chex.assert_trees_all_close(jitted[0], p2, rtol=1e-6)
        # the second request equals JiT on its own examples, from the params the first left
        with_noise = _unlearner(True)
        a, sa, _ = with_noise.update(params, jnp.arange(4), with_noise.init(params, x, key=KEY), key=KEY,
                                     noise=eps[:, :4])
        b, _, _ = with_noise.update(a, jnp.arange(4, 8), sa, key=KEY, noise=eps[:, 4:8])
        want, _ = _reference_update(_reference_update(params, x[:4], eps[:, :4], 4, 0.05, True)[0], x[4:8],
                                    eps[:, 4:8], 4, 0.05, True)
        chex.assert_trees_all_close(b, want, rtol=1e-4, atol=1e-6)

    def test_forgotten_index_reused_raises(self):
        params, x, eps = _problem()
        unlearner = _unlearner(True)
        _, state, _ = unlearner.update(params, jnp.arange(4), unlearner.init(params, x, key=KEY), key=KEY)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            unlearner.update(params, jnp.arange(2, 6), state, key=KEY)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            ju.jit(unlearner.update)(params, jnp.arange(2, 6), state, key=KEY)

    def test_bad_input_is_named(self):
        params, x, eps = _problem()
        with pytest.raises(TypeError, match="train_mode_apply"):
            L.lipschitz(mlp)  # train_mode=True needs apply_fn(params, x, key)
        unlearner = L.lipschitz(mlp, num_samples=N, train_mode=False)
        state = unlearner.init(params, x, key=KEY)
        request = jnp.arange(len(x))
        with pytest.raises(TypeError, match="key"):
            unlearner.update(params, request, state, key=None)
        with pytest.raises(ValueError, match="noise must have shape"):
            unlearner.update(params, request, state, key=KEY, noise=eps[:, :4])
        with pytest.raises(ValueError, match="request is empty"):
            unlearner.update(params, jnp.arange(0), state, key=KEY)
        with pytest.raises(FloatingPointError, match="non-finite"):
            unlearner.update({**params, "b1": params["b1"].at[0].set(jnp.inf)}, request, state, key=KEY, noise=eps)
        with pytest.raises(TypeError, match="LipschitzState"):
            unlearner.update(params, request, None, key=KEY, noise=eps)
        with pytest.raises(ValueError, match="data does not fit the model"):
            unlearner.init(params, np.zeros((4, 7), np.float32), key=KEY)
        with pytest.raises(ValueError, match="sigma"):
            L.lipschitz(mlp, sigma=0.0, train_mode=False)
        with pytest.raises(ValueError, match="num_samples"):
            L.lipschitz(mlp, num_samples=0, train_mode=False)
