"""Fisher estimators and per-example gradients against brute-force Python loops over examples and batches."""

import warnings

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import problems as P
from jaxunlearn import curvature as cv


def _loss(params, batch):
    return P.mlp_loss(params, batch, weight_decay=0.0)


def _logits(params, x):
    return P.mlp_apply(params, x)


def _setup(n=23):
    params = P.mlp_params(jax.random.key(0))
    return params, P.classification_data(jax.random.key(1), n=n)


def _example(data, i):
    return jax.tree.map(lambda a: a[i : i + 1], data)


_grad = jax.jit(jax.grad(_loss))  # compiled once; the loops below call it example by example


def _brute_empirical(params, data):
    n = data[0].shape[0]
    grads = [_grad(params, _example(data, i)) for i in range(n)]
    return jax.tree.map(lambda *g: sum(x * x for x in g) / n, *grads)


class FisherTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(5, 23, 64)
    def test_empirical_matches_loop_for_any_chunk(self, chunk):
        params, data = _setup()
        got = self.variant(lambda p, d: cv.fisher_diagonal(_loss, p, d, batch_size=chunk))(params, data)
        chex.assert_trees_all_close(got, _brute_empirical(params, data), rtol=1e-5, atol=1e-8)

    @chex.variants(with_jit=True, without_jit=True)
    def test_batch_squared_matches_loop_with_short_last_batch(self):
        params, data = _setup(23)
        bs = 5  # batches of 5,5,5,5,3: the short one weighs like the others (the SSD reference)
        starts = range(0, 23, bs)
        grads = [_grad(params, jax.tree.map(lambda a: a[s : s + bs], data)) for s in starts]
        expected = jax.tree.map(lambda *g: sum(x * x for x in g) / len(grads), *grads)
        got = self.variant(lambda p, d: cv.fisher_diagonal(_loss, p, d, estimator="batch_squared", batch_size=bs))(
            params, data
        )
        chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-9)

    def test_batch_squared_depends_on_order_and_empirical_does_not(self):
        params, (x, y) = _setup(24)
        order = jnp.argsort(y)
        a = cv.fisher_diagonal(_loss, params, (x, y), estimator="batch_squared", batch_size=6)
        b = cv.fisher_diagonal(_loss, params, (x[order], y[order]), estimator="batch_squared", batch_size=6)
        assert not np.allclose(P.flat(a), P.flat(b), rtol=1e-3)
        e1 = cv.fisher_diagonal(_loss, params, (x, y), batch_size=6)
        e2 = cv.fisher_diagonal(_loss, params, (x[order], y[order]), batch_size=6)
        chex.assert_trees_all_close(e1, e2, rtol=1e-5, atol=1e-9)

    @chex.variants(with_jit=True, without_jit=True)
    def test_true_fisher_matches_loop_with_the_same_draws(self):
        params, data = _setup(23)
        key, chunk = jax.random.key(7), 10
        sample_fn = cv.sample_categorical_labels(_logits)
        got = self.variant(
            lambda p, d, k: cv.fisher_diagonal(_loss, p, d, estimator="true", batch_size=chunk, key=k,
                                               sample_fn=sample_fn)
        )(params, data, key)
        # brute force: the labels each chunk draws, then a loop over examples
        labels = []
        for c, s in enumerate(range(0, 23, chunk)):
            x = data[0][s : s + chunk]
            labels.append(jax.random.categorical(jax.random.fold_in(key, c), _logits(params, x), axis=-1))
        sampled = (data[0], jnp.concatenate(labels))
        assert not np.array_equal(sampled[1], data[1])
        chex.assert_trees_all_close(got, _brute_empirical(params, sampled), rtol=1e-5, atol=1e-8)

    def test_true_fisher_is_unbiased_for_the_expected_fisher(self):
        """Averaged over many draws it approaches sum_y p(y|x) g_y^2 computed exactly."""
        params, data = _setup(6)
        probs = jax.nn.softmax(_logits(params, data[0]))
        exact = None
        for c in range(4):
            w = probs[:, c]
            per = [jax.tree.map(lambda g: g * w[i], _brute_empirical(params, (data[0][i : i + 1], jnp.full((1,), c))))
                   for i in range(6)]
            term = jax.tree.map(lambda *g: sum(g) / 6, *per)
            exact = term if exact is None else jax.tree.map(jnp.add, exact, term)
        sample_fn = cv.sample_categorical_labels(_logits)
        draws = jax.vmap(
            lambda k: cv.fisher_diagonal(_loss, params, data, estimator="true", key=k, sample_fn=sample_fn)
        )(jax.random.split(jax.random.key(0), 2000))
        mean = jax.tree.map(lambda a: a.mean(0), draws)
        np.testing.assert_allclose(P.flat(mean), P.flat(exact), rtol=0.1, atol=1e-3 * float(jnp.max(P.flat(exact))))


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(3, (3, 3), padding="SAME")(x))
        x = nn.relu(nn.Conv(4, (2, 2), strides=2, padding="VALID")(x))
        x = nn.LayerNorm()(x.reshape(x.shape[0], -1))
        x = nn.relu(nn.Dense(6)(x))
        return nn.Dense(3)(x)


def _ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


class LayerwiseTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_fast_path_equals_vmap_path_on_a_cnn(self):
        x = jax.random.normal(jax.random.key(0), (13, 6, 6, 2))
        y = jnp.arange(13) % 3
        model = CNN()
        params = model.init(jax.random.key(1), x[:1])["params"]
        loss = cv.LayerwiseLoss(model, _ce)
        fast = self.variant(lambda p, d: cv.fisher_diagonal(loss, p, d, batch_size=5))(params, (x, y))
        slow = cv.fisher_diagonal(lambda p, b: loss(p, b), params, (x, y), batch_size=5)
        chex.assert_trees_all_close(fast, slow, rtol=1e-4, atol=1e-9)
        assert float(jnp.max(fast["Conv_0"]["kernel"])) > 0

    def test_layerwise_loss_is_the_mean_loss(self):
        x = jax.random.normal(jax.random.key(0), (7, 6, 6, 2))
        y = jnp.arange(7) % 3
        model = CNN()
        params = model.init(jax.random.key(1), x[:1])["params"]
        expected = jnp.mean(_ce(model.apply({"params": params}, x), y))
        np.testing.assert_allclose(cv.LayerwiseLoss(model, _ce)(params, (x, y)), expected, rtol=1e-6)

    def test_dense_applied_to_tokens_and_shared_modules(self):
        class Tokens(nn.Module):
            @nn.compact
            def __call__(self, x, train: bool = False):
                dense = nn.Dense(5)
                h = nn.tanh(dense(x)) + nn.tanh(dense(2.0 * x))  # shared layer, 4 tokens per example
                return nn.Dense(3)(h.mean(axis=1))

        x = jax.random.normal(jax.random.key(0), (9, 4, 5))
        y = jnp.arange(9) % 3
        model = Tokens()
        params = model.init(jax.random.key(1), x[:1])["params"]
        loss = cv.LayerwiseLoss(model, _ce)
        chex.assert_trees_all_close(
            loss.squared_grad_sum(params, (x, y)), cv.squared_grad_sum(loss, params, (x, y)), rtol=1e-4, atol=1e-9
        )


def test_chunked_sum_with_remainder_matches_plain_sum():
    data = (jnp.arange(23.0), jnp.ones(23))
    got = cv.chunked_sum(lambda c, i: {"s": jnp.sum(c[0]), "n": jnp.sum(c[1])}, data, 5)
    assert float(got["s"]) == sum(range(23)) and float(got["n"]) == 23


def test_an_eager_chunked_sum_is_one_program_that_takes_its_closed_over_arrays_as_arguments():
    from conftest import CompileCounter

    w = jax.random.normal(jax.random.key(0), (64, 48))  # 12 KiB that fn closes over
    x = jax.random.normal(jax.random.key(1), (23, 64))  # chunks of 5: four full ones and a short one of 3
    old = jax.config.jax_captured_constants_warn_bytes
    jax.config.update("jax_captured_constants_warn_bytes", 4096)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            CompileCounter.count, CompileCounter.active = 0, True
            try:
                got = cv.chunked_sum(lambda c, i: jnp.sum(jnp.tanh(c @ w) ** 2), x, 5)
            finally:
                CompileCounter.active = False
            assert CompileCounter.count == 1  # not the short chunk's operations one by one
            assert not [m for m in caught if "constants were captured" in str(m.message)]
            jax.jit(lambda d: jnp.sum(jnp.tanh(d @ w) ** 2))(x)  # the control: a jitted closure embeds w
            assert [m for m in caught if "constants were captured" in str(m.message)]
    finally:
        jax.config.update("jax_captured_constants_warn_bytes", old)
    np.testing.assert_allclose(got, np.sum(np.tanh(np.asarray(x, np.float64) @ np.asarray(w, np.float64)) ** 2),
                               rtol=1e-5)


def test_per_example_grads_chunked_equals_unchunked_and_loop():
    params, data = _setup(11)
    a = cv.per_example_grads(_loss, params, data)
    b = cv.per_example_grads(_loss, params, data, chunk_size=4)
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
    g3 = _grad(params, _example(data, 3))
    chex.assert_trees_all_close(jax.tree.map(lambda t: t[3], a), g3, rtol=1e-5, atol=1e-7)


class BadInputTest(parameterized.TestCase):
    def test_empty_data(self):
        params, _ = _setup()
        with pytest.raises(ValueError, match="empty"):
            cv.fisher_diagonal(_loss, params, (jnp.zeros((0, 3)), jnp.zeros((0,), int)))

    def test_ragged_data(self):
        params, _ = _setup()
        with pytest.raises(ValueError, match="disagree on the number of examples"):
            cv.fisher_diagonal(_loss, params, (jnp.zeros((4, 3)), jnp.zeros((5,), int)))

    def test_non_finite_params(self):
        params, data = _setup()
        params["layer0"]["w"] = params["layer0"]["w"].at[0, 0].set(jnp.nan)
        with pytest.raises(FloatingPointError, match=r"params\['layer0'\]\['w'\] holds non-finite"):
            cv.fisher_diagonal(_loss, params, data)

    def test_unknown_estimator_and_missing_key(self):
        params, data = _setup()
        with pytest.raises(ValueError, match="estimator must be one of"):
            cv.fisher_diagonal(_loss, params, data, estimator="exact")
        with pytest.raises(ValueError, match="sample_fn"):
            cv.fisher_diagonal(_loss, params, data, estimator="true")

    @parameterized.parameters(0, -3, 2.5)
    def test_chunk_and_batch_sizes_must_be_positive_integers(self, size):
        params, data = _setup()
        with pytest.raises(ValueError, match=f"chunk_size must be a positive integer; got {size}"):
            cv.per_example_grads(_loss, params, data, chunk_size=size)
        with pytest.raises(ValueError, match=f"^batch_size must be a positive integer; got {size}"):
            cv.fisher_diagonal(_loss, params, data, batch_size=size)
