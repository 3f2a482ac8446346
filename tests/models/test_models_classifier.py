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
        module, variables = _model("resnet18", (8, 8, 3), stage_widths=(2, 2, 4, 4), blocks=(1, 1, 1, 1))
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
    module, variables = _model("resnet18", (8, 8, 3), stage_widths=(2, 2, 4, 4), blocks=(1, 1, 1, 1), seed=1)
    params, state = M.split_variables(variables)
    x = jax.random.normal(jax.random.key(2), (4, 8, 8, 3))
    y = jnp.array([1, 0, 3, 4])
    loss_fn = jax.jit(jax.value_and_grad(M.training_loss(module), has_aux=True))
    (value, new_state), grads = loss_fn(params, state, (x, y), jax.random.key(3))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    # independent numpy forward in train mode (batch statistics, running statistics moved by 0.1)
    sd = M.export_torch_state_dict(module, variables)
    stats: dict = {}
    logits = ref.resnet18(sd, np.asarray(x, np.float64).transpose(0, 3, 1, 2), train=True, new_stats=stats)
    np.testing.assert_allclose(value, _numpy_cross_entropy(logits, y).mean(), rtol=1e-4)
    got = M.export_torch_state_dict(module, {"params": params, **new_state})
    for key, expected in stats.items():
        np.testing.assert_allclose(got[key], expected, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize(
    "name,shape,kwargs",
    [("lenet", (16, 16, 2), {}), ("small_cnn", (12, 12, 3), {"channels": 4, "hidden": 8, "padding": 2})],
)
def test_layerwise_fisher_fast_path_matches_generic(name, shape, kwargs):
    module, variables = _model(name, shape, **kwargs)
    loss = M.classifier_loss(module, variables)
    params = variables["params"]
    x = jax.random.normal(jax.random.key(4), (5,) + shape)
    y = jnp.array([0, 1, 4, 3, 1])
    fast = jax.jit(loss.squared_grad_sum)(params, (x, y))
    generic = jax.jit(lambda p, b: curvature.squared_grad_sum(loss, p, b))(params, (x, y))
    assert jax.tree.structure(fast) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(generic)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-8)
    assert all(float(jnp.sum(a)) > 0 for a in jax.tree.leaves(fast))  # every layer gets a gradient


def _fast_path_layers(name, shape, **kwargs):
    module = M.build(name, num_classes=5, input_shape=shape, **kwargs)
    abstract = M.abstract_variables(module, shape)
    concrete_state = {
        c: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), v) for c, v in abstract.items() if c != "params"
    }
    loss = M.classifier_loss(module, {"params": abstract["params"], **concrete_state})
    covered = loss._layers(abstract["params"], jax.ShapeDtypeStruct((1,) + shape, jnp.float32))
    return {"/".join(path): kind for path, (kind, _, _) in covered.items()}


def test_every_conv_and_dense_layer_takes_the_fast_path():
    assert _fast_path_layers("lenet", (32, 32, 1)) == {
        "conv1": "conv", "conv2": "conv", "fc1": "dense", "fc2": "dense", "fc3": "dense"}
    assert _fast_path_layers("small_cnn", (32, 32, 3)) == {
        "conv1": "conv", "conv2": "conv", "fc1": "dense", "fc2": "dense"}
    resnet = _fast_path_layers("resnet18", (32, 32, 3))
    assert len(resnet) == 1 + 16 + 3 + 1  # stem, 2 convs x 8 blocks, 3 shortcuts, fc
    assert resnet["conv3_x_0/shortcut_0"] == "conv" and resnet["fc"] == "dense"
    vgg = _fast_path_layers("vgg11", (32, 32, 3), cfg=(4, "M", "M", "M", "M", "M"), classifier_width=8)
    assert vgg == {"features_0": "conv", "classifier_0": "dense", "classifier_3": "dense", "classifier_6": "dense",
                   "fc": "dense"}
    vit = _fast_path_layers("vit", (8, 8, 1), depth=1)
    assert vit == {"patch_embed": "conv", "block_0/attn/qkv": "dense", "block_0/attn/proj": "dense",
                   "block_0/mlp_fc1": "dense", "block_0/mlp_fc2": "dense", "head": "dense"}
