"""Every architecture: output shapes, train vs eval mode, batch-norm statistics, dropout, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models_numpy_reference as ref
from jaxunlearn import models as M

KEY = jax.random.key(0, impl="rbg")  # compiles ~3x faster than threefry on CPU
_apply = jax.jit(M.apply_model, static_argnums=0, static_argnames="train")


def _model(name, shape, num_classes=7, **kwargs):
    """(module, variables) through build + abstract_variables with numpy values (fast on a busy CPU)."""
    module = M.build(name, num_classes=num_classes, input_shape=shape, **kwargs)
    return module, ref.numpy_variables(M.abstract_variables(module, shape))


def _run(module, variables, x, *, train, key=None):
    params, state = M.split_variables(variables)
    return _apply(module, params, state, x, train=train, key=key)


@pytest.mark.parametrize(
    "name,shape,kwargs",
    [
        ("mlp", (8, 8, 1), {"hidden": (16,)}),
        ("lenet", (32, 32, 1), {}),
        ("small_cnn", (8, 8, 3), {"channels": 4, "hidden": 8}),
    ],
)
def test_shapes_and_modes_without_batch_norm_or_dropout(name, shape, kwargs):
    module, variables = _model(name, shape, **kwargs)
    x = jax.random.normal(jax.random.key(1), (3,) + shape)
    eval_logits, eval_state = _run(module, variables, x, train=False)
    train_logits, train_state = _run(module, variables, x, train=True, key=KEY)
    assert eval_logits.shape == train_logits.shape == (3, 7)
    assert eval_state == train_state == {}
    np.testing.assert_allclose(eval_logits, train_logits, rtol=1e-6)  # no BN, no dropout: the modes agree
    assert bool(jnp.all(jnp.isfinite(eval_logits)))


def test_create_initialises_the_default_mlp_64_256_256_10():
    module, variables = M.create("mlp", num_classes=10, input_shape=(64,), key=KEY)
    shapes = [variables["params"][f"linear{i}"]["kernel"].shape for i in (1, 2, 3)]
    assert shapes == [(64, 256), (256, 256), (256, 10)]
    # PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), zero bias
    k = np.asarray(variables["params"]["linear2"]["kernel"])
    assert np.abs(k).max() <= 1 / 16 and abs(k.std() - 1 / 16 / np.sqrt(3)) < 2e-3
    assert not np.any(np.asarray(variables["params"]["linear2"]["bias"]))
    _, again = M.create("mlp", num_classes=10, input_shape=(64,), key=KEY)
    np.testing.assert_array_equal(k, again["params"]["linear2"]["kernel"])
    assert module.apply(variables, jnp.ones((2, 64))).shape == (2, 10)
    _, other = M.create("mlp", num_classes=10, input_shape=(64,), key=jax.random.key(1, impl="rbg"))
    assert not np.allclose(k, other["params"]["linear2"]["kernel"])


def test_lenet_padding_chosen_for_small_inputs_only():
    small = M.build("lenet", num_classes=10, input_shape=(8, 8, 1))
    big = M.build("lenet", num_classes=10, input_shape=(32, 32, 1))
    assert small.padding == 2 and big.padding == 0
    assert M.build("small_cnn", num_classes=10, input_shape=(8, 8, 1), padding=0).padding == 0
    assert M.abstract_variables(big, (32, 32, 1))["params"]["fc1"]["kernel"].shape == (400, 120)
    assert M.abstract_variables(small, (8, 8, 1))["params"]["fc1"]["kernel"].shape == (2 * 2 * 16, 120)
    with pytest.raises(ValueError, match="padding=2"):
        M.abstract_variables(M.LeNet(), (8, 8, 1))


def test_resnet_batch_stats_change_only_in_train_mode():
    module, variables = _model("resnet18", (8, 8, 3), num_classes=5, stage_widths=(4, 4, 8, 8), blocks=(1, 1, 1, 1))
    assert set(variables) == {"params", "batch_stats"}
    params, state = M.split_variables(variables)
    x = jax.random.normal(jax.random.key(2), (4, 8, 8, 3))
    eval_logits, eval_state = _run(module, variables, x, train=False)
    jax.tree.map(np.testing.assert_array_equal, eval_state, state)
    train_logits, new_state = _run(module, variables, x, train=True)
    assert eval_logits.shape == train_logits.shape == (4, 5)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state["batch_stats"], new_state["batch_stats"])
    assert all(jax.tree.leaves(changed))
    assert not np.allclose(eval_logits, train_logits, atol=1e-3)  # batch vs running statistics


def test_vgg_dropout_only_in_train_mode_with_an_rng():
    module, variables = _model("vgg11", (32, 32, 3), num_classes=4, cfg=(4, "M", "M", "M", "M", "M"),
                               classifier_width=32, backbone_classes=10)
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
    e1, _ = _run(module, variables, x, train=False)
    t1, _ = _run(module, variables, x, train=True, key=jax.random.key(4, impl='rbg'))
    t1b, _ = _run(module, variables, x, train=True, key=jax.random.key(4, impl='rbg'))
    t2, _ = _run(module, variables, x, train=True, key=jax.random.key(5, impl='rbg'))
    assert e1.shape == t1.shape == (2, 4)
    np.testing.assert_array_equal(t1, t1b)
    assert not np.allclose(t1, t2) and not np.allclose(t1, e1)
    with pytest.raises(ValueError, match="key="):
        M.apply_model(module, variables["params"], {}, x, train=True)
    with pytest.raises(ValueError, match="at least 32x32"):
        M.abstract_variables(M.VGG(num_classes=4), (16, 16, 3))


def test_vit_tiny_shapes_and_dropout():
    module, variables = _model("vit", (8, 8, 1), num_classes=3, hidden=16, depth=1, num_heads=2, mlp_dim=16,
                               dropout_rate=0.5)
    p = variables["params"]
    assert p["cls_token"].shape == (1, 1, 16) and p["pos_embed"].shape == (1, 5, 16)  # 4 patches + CLS
    assert p["patch_embed"]["kernel"].shape == (4, 4, 1, 16)
    x = jax.random.normal(jax.random.key(6), (2, 8, 8, 1))
    e, _ = _run(module, variables, x, train=False)
    t1, _ = _run(module, variables, x, train=True, key=jax.random.key(7, impl='rbg'))
    t2, _ = _run(module, variables, x, train=True, key=jax.random.key(8, impl='rbg'))
    assert e.shape == t1.shape == (2, 3)
    assert not np.allclose(t1, t2)
    with pytest.raises(ValueError, match="patch_size"):
        M.abstract_variables(module, (10, 10, 1))

    # position embeddings are used: swapping two patches changes the output, and not without them
    swapped = x.at[:, :4, :4].set(x[:, 4:, 4:]).at[:, 4:, 4:].set(x[:, :4, :4])
    f = jax.jit(lambda v, xx: module.apply(v, xx))
    assert not np.allclose(f(variables, x), f(variables, swapped))
    no_pos = {"params": {**p, "pos_embed": jnp.zeros_like(p["pos_embed"])}}
    np.testing.assert_allclose(f(no_pos, x), f(no_pos, swapped), rtol=1e-5, atol=1e-5)


def test_create_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown model name"):
        M.create("resnet50", num_classes=10, input_shape=(32, 32, 3), key=KEY)
    with pytest.raises(ValueError, match="num_classes"):
        M.create("mlp", num_classes=0, input_shape=(4,), key=KEY)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        M.create("lenet", num_classes=10, input_shape=(32, 32), key=KEY)
    with pytest.raises(ValueError, match="positive"):
        M.create("mlp", num_classes=10, input_shape=(0,), key=KEY)
    with pytest.raises(TypeError, match="input_shape"):
        M.create("mlp", num_classes=10, input_shape=7, key=KEY)
    with pytest.raises(TypeError, match="PRNG key"):
        M.create("mlp", num_classes=10, input_shape=(4,), key=0)
    with pytest.raises(ValueError, match="NHWC"):
        M.abstract_variables(M.LeNet(), (32, 32))
    with pytest.raises(ValueError, match="'params'"):
        M.split_variables({"batch_stats": {}})
