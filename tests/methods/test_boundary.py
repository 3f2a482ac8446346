"""Boundary unlearning: FGSM labels equal a numpy computation; Expanding equals training an explicitly widened head."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _baselines_testbed import NUM_CLASSES, REQUEST, logits_fn, train_data, trained_setup

from jaxunlearn.methods.boundary import boundary_expand, find_head, nearest_incorrect_labels


def test_shrink_labels_are_the_fgsm_argmax_of_a_linear_model():
    x = trained_setup()[1][0]
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(64, NUM_CLASSES)).astype(np.float32) / 8, "b": np.zeros(NUM_CLASSES, np.float32)}

    def linear(p, v):
        return v @ p["w"] + p["b"]

    z = x @ params["w"]
    y = z.argmax(1).astype(np.int32)  # labels the model gets right
    got = jax.jit(lambda p: nearest_incorrect_labels(linear, p, x, y, 0.1, chunk_size=20))(params)  # 2 chunks + 8
    prob = np.exp(z - z.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    grad_x = (prob - np.eye(NUM_CLASSES)[y]) @ params["w"].T  # d CE / d x of a linear softmax model
    expected = np.argmax((x + 0.1 * np.sign(grad_x)) @ params["w"], axis=1)
    np.testing.assert_array_equal(got, expected)
    assert 0 < np.mean(expected != y) < 1  # some steps cross the boundary, some do not


def test_expand_equals_training_a_widened_head_then_pruning_it():
    params, forget, _, _ = trained_setup()
    lr, key = 0.5, jax.random.key(6)
    un = boundary_expand(logits_fn, optax.sgd(lr), num_classes=NUM_CLASSES, num_epochs=1, batch_size=480)
    new, _, _ = un.update(params, REQUEST, un.init(params, train_data(), key=key), key=key)

    @jax.jit
    def widened_step(p, k):  # the head explicitly widened by a Xavier-normal shadow row, one SGD step, pruned
        w_s = jax.random.normal(jax.random.split(k)[0], (32,)) * np.sqrt(2.0 / (32 + NUM_CLASSES + 1))
        wide = {"hidden": p["hidden"], "head": {"w": jnp.concatenate([p["head"]["w"], w_s[:, None]], 1),
                                                "b": jnp.concatenate([p["head"]["b"], jnp.zeros(1)])}}
        grad = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(
            logits_fn(q, forget[0]), jnp.full((48,), NUM_CLASSES)).mean())(wide)
        stepped = jax.tree.map(lambda a, g: a - lr * g, wide, grad)
        return {"hidden": stepped["hidden"], "head": {n: v[..., :NUM_CLASSES] for n, v in stepped["head"].items()}}

    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new, widened_step(params, key))
    assert np.abs(np.asarray(new["hidden"]["w"]) - params["hidden"]["w"]).max() > 1e-3  # the features moved


def test_find_head_needs_a_unique_output_layer():
    two = {"a": {"kernel": jnp.zeros((5, 3)), "bias": jnp.zeros(3)}, "b": {"kernel": jnp.zeros((3, 3))}}
    with pytest.raises(ValueError, match="head="):
        find_head(two, 3)
    kernel, bias = find_head(two, 3, head=("a",))
    assert jax.tree_util.keystr(kernel) == "['a']['kernel']" and jax.tree_util.keystr(bias) == "['a']['bias']"
    assert find_head(two, 3, head=("b",))[1] is None
