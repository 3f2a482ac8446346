"""classifier_loss / per_example_cross_entropy / logits_fn / training_loss and the per-layer Fisher fast path."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models_numpy_reference as ref
from jaxunlearn import curvature
from jaxunlearn import models as M


def _model(name, shape, num_classes=5, seed=0, **kwargs):
    module = M.build(name, num_classes=num_classes, input_shape=shape, **kwargs)
    return module, ref.numpy_variables(M.abstract_variables(module, shape), seed=seed)


def _numpy_cross_entropy(logits, labels):
    z = np.asarray(logits, np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return lse - z[np.arange(len(z)), np.asarray(labels)]


class TestCrossEntropy(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_per_example_matches_numpy(self):
        logits = jax.random.normal(jax.random.key(0), (6, 4)) * 5
        labels = jnp.array([0, 3, 1, 2, 2, 0])
        got = self.variant(M.per_example_cross_entropy)(logits, labels)
        np.testing.assert_allclose(got, _numpy_cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_classifier_loss_is_mean_of_per_example_with_batch_stats_bound(self):
        module, variables = _model("resnet18", (8, 8, 3), stage_widths=(2, 2, 4, 4))
        x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
        y = jnp.array([0, 4, 2, 2])
        loss = M.classifier_loss(module, variables)
        f = M.logits_fn(module, variables)
        logits = self.variant(f)(variables["params"], x)
        expected_logits = module.apply(variables, x, train=False)
        np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-6)
        per_example = self.variant(loss.per_example_losses)(variables["params"], (x, y))
        np.testing.assert_allclose(per_example, _numpy_cross_entropy(expected_logits, y), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(self.variant(loss)(variables["params"], (x, y)), np.mean(per_example), rtol=1e-5)
        # the batch statistics are bound: other running statistics give other logits
        shifted = {**variables, "batch_stats": jax.tree.map(lambda a: a + 1.0, variables["batch_stats"])}
        other = M.logits_fn(module, shifted)(variables["params"], x)
        assert not np.allclose(other, logits, atol=1e-3)


def test_cross_entropy_rejects_bad_labels():
    logits = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="one-hot"):
        M.per_example_cross_entropy(logits, jnp.eye(3, 4))
    with pytest.raises(TypeError, match="integer"):
        M.per_example_cross_entropy(logits, jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        M.per_example_cross_entropy(jnp.zeros(4), jnp.array([1]))


def test_training_loss_uses_batch_statistics_and_returns_new_state():
    module, variables = _model("resnet18", (8, 8, 3), stage_widths=(2, 2, 4, 4), seed=1)
    params, state = M.split_variables(variables)
    x = jax.random.normal(jax.random.key(2), (4, 8, 8, 3))
    y = jnp.array([1, 0, 3, 4])
    loss_fn = jax.jit(M.training_loss(module))
    value, new_state = loss_fn(params, state, (x, y), jax.random.key(3))
    logits, expected_state = M.apply_model(module, params, state, x, train=True)
    np.testing.assert_allclose(value, _numpy_cross_entropy(logits, y).mean(), rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new_state, expected_state)
    grads, _ = jax.grad(loss_fn, has_aux=True)(params, state, (x, y), jax.random.key(3))
    assert jax.tree.structure(grads) == jax.tree.structure(params)


def _brute_force_squared_grads(loss, params, x, y):
    total = jax.tree.map(jnp.zeros_like, params)
    g = jax.jit(jax.grad(loss))
    for i in range(len(y)):
        gi = g(params, (x[i:i + 1], y[i:i + 1]))
        total = jax.tree.map(lambda t, a: t + a * a, total, gi)
    return total


@pytest.mark.parametrize(
    "name,shape,kwargs",
    [
        ("lenet", (16, 16, 2), {}),
        ("small_cnn", (12, 12, 3), {"channels": 4, "hidden": 8, "padding": 2}),
        ("vit", (8, 8, 1), {"hidden": 8, "depth": 1, "num_heads": 2, "mlp_dim": 8}),
    ],
)
def test_layerwise_fisher_fast_path_matches_generic_and_brute_force(name, shape, kwargs):
    module, variables = _model(name, shape, **kwargs)
    loss = M.classifier_loss(module, variables)
    params = variables["params"]
    x = jax.random.normal(jax.random.key(4), (5,) + shape)
    y = jnp.array([0, 1, 4, 3, 1])
    fast = jax.jit(loss.squared_grad_sum)(params, (x, y))
    generic = jax.jit(lambda p, b: curvature.squared_grad_sum(loss, p, b))(params, (x, y))
    brute = _brute_force_squared_grads(loss, params, x, y)
    assert jax.tree.structure(fast) == jax.tree.structure(params)
    for a, b, c in zip(jax.tree.leaves(fast), jax.tree.leaves(generic), jax.tree.leaves(brute)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-7)
        np.testing.assert_allclose(a, c, rtol=2e-4, atol=1e-7)
    # the fast path really covers the conv and dense layers of these models
    covered = loss._layers(params, x[:1])
    kinds = {path[-1] if len(path) == 1 else "/".join(path): kind for path, (kind, _, _) in covered.items()}
    if name == "lenet":
        assert kinds == {"conv1": "conv", "conv2": "conv", "fc1": "dense", "fc2": "dense", "fc3": "dense"}
    if name == "vit":
        assert kinds["patch_embed"] == "conv" and kinds["block_0/attn/qkv"] == "dense" and kinds["head"] == "dense"


def test_resnet_fisher_fast_path_with_batch_norm_in_eval_mode():
    module, variables = _model("resnet18", (8, 8, 3), stage_widths=(2, 2, 4, 4), seed=2)
    loss = M.classifier_loss(module, variables)
    x = jax.random.normal(jax.random.key(5), (3, 8, 8, 3))
    y = jnp.array([0, 2, 4])
    fast = jax.jit(loss.squared_grad_sum)(variables["params"], (x, y))
    generic = jax.jit(lambda p, b: curvature.squared_grad_sum(loss, p, b))(variables["params"], (x, y))
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(generic)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-8)
