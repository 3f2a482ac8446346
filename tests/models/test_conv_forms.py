"""The fast convolution and pooling forms against ``lax.conv_general_dilated`` and ``nn.max_pool``."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxunlearn.models import conv_forms
from jaxunlearn.models.lenet import LeNet
from jaxunlearn.models.small_cnn import SmallCNN

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, k, padding, strides=(1, 1)):
    return jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DN)


CASES = (((8, 8, 1, 16), (5, 5), ((2, 2), (2, 2))), ((4, 4, 8, 8), (5, 5), ((2, 2), (2, 2))),
         ((6, 5, 3, 4), (3, 3), ((0, 1), (2, 0))), ((7, 7, 2, 3), (3, 2), ((0, 0), (0, 0))))


def _form(name):
    return conv_forms.dense_conv if name == "dense" else functools.partial(conv_forms.strip_conv, width=int(name[5:]))


class ConvFormsTest(parameterized.TestCase):
    def _check(self, conv, shape, window, padding):
        h, w, c, d = shape
        kx, kk, kg = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, (3, h, w, c))
        k = jax.random.normal(kk, (*window, c, d))
        out = self.variant(conv, static_argnums=2)(x, k, padding)
        want = _lax(x, k, padding)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        g = jax.random.normal(kg, want.shape)  # a random cotangent: the full vector-Jacobian product
        vjp = self.variant(jax.grad(lambda x, k: jnp.sum(conv(x, k, padding) * g), (0, 1)))(x, k)
        want_vjp = jax.grad(lambda x, k: jnp.sum(_lax(x, k, padding) * g), (0, 1))(x, k)
        chex.assert_trees_all_close(vjp, want_vjp, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*((form, *case) for form in ("dense", "strip2") for case in CASES))
    def test_values_and_gradients_equal_lax(self, form, shape, window, padding):
        self._check(_form(form), shape, window, padding)

    @chex.variants(with_jit=True)  # the same operations as strip2's, eagerly checked above; only the sizes differ
    @parameterized.parameters(*((form, *case) for form in ("strip1", "strip3", "strip4") for case in CASES))
    def test_every_strip_width_equals_lax(self, form, shape, window, padding):
        """Widths that divide the output width, that do not (the last strip reaches past it) and that are
        narrower than the kernel (a window spans several reshapes of the rows)."""
        self._check(_form(form), shape, window, padding)


def test_dispatch_uses_the_dense_and_strip_forms_only_where_they_apply():
    x, k = jnp.ones((2, 4, 4, 3)), jnp.ones((3, 3, 3, 4))  # dense flops: 16 / 9 of the direct convolution
    def text(x, k, strides, padding, **kw):
        return str(jax.make_jaxpr(lambda x, k: conv_forms.conv_general_dilated(x, k, strides, padding, **kw))(x, k))

    dense = text(x, k, (1, 1), "SAME", dimension_numbers=DN)
    assert "conv_general_dilated" not in dense and "gather" in dense  # the dense matrix is gathered from k
    assert "conv_general_dilated" in text(x, k, (2, 2), "SAME", dimension_numbers=DN)  # strided
    assert "conv_general_dilated" in text(x, k, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=DN)
    # a 32x32 map: the dense matrix would cost 41x the direct convolution; a 5x5 kernel takes the strip form,
    # 4 positions a strip for 4 features ([8 * 5 * 3, 4 * 4] band), 2 for 16 ([6 * 5 * 3, 2 * 16])
    image = jnp.ones((1, 32, 32, 3))
    narrow = text(image, jnp.ones((5, 5, 3, 4)), (1, 1), "VALID", dimension_numbers=DN)
    assert "conv_general_dilated" not in narrow and "f32[120,16]" in narrow
    wide = text(image, jnp.ones((5, 5, 3, 16)), (1, 1), "VALID", dimension_numbers=DN)
    assert "conv_general_dilated" not in wide and "f32[90,32]" in wide
    assert "conv_general_dilated" in text(image, jnp.ones((3, 3, 3, 4)), (1, 1), "SAME", dimension_numbers=DN)
    small = jnp.ones((1, 18, 18, 1))  # a 14x14 output map, the dense matrix 13x the flops: strips
    assert "conv_general_dilated" not in text(small, jnp.ones((5, 5, 1, 64)), (1, 1), "VALID", dimension_numbers=DN)
    # the digits SmallCNN: its first layer's dense matrix costs 2.56x the direct convolution, strips 1.2x; its
    # second layer (4x4 maps, padding 2) skips the padded taps in the dense form (0.64x), strips do not
    digits1 = text(jnp.ones((1, 8, 8, 1)), jnp.ones((5, 5, 1, 64)), (1, 1), ((2, 2), (2, 2)), dimension_numbers=DN)
    assert "gather" in digits1 and "f32[30,128]" in digits1  # the band [(2 + 4) * 5 * 1, 2 * 64]
    digits2 = text(jnp.ones((1, 4, 4, 64)), jnp.ones((5, 5, 64, 64)), (1, 1), ((2, 2), (2, 2)), dimension_numbers=DN)
    assert "f32[1024,1024]" in digits2 and "conv_general_dilated" not in digits2
    np.testing.assert_allclose(conv_forms.conv_general_dilated(image, jnp.ones((5, 5, 3, 4)), (1, 1), "VALID",
                                                               dimension_numbers=DN),
                               _lax(image, jnp.ones((5, 5, 3, 4)), "VALID"), rtol=1e-6)
    with conv_forms.conv_policy("lax"):
        assert "conv_general_dilated" in text(x, k, (1, 1), "SAME", dimension_numbers=DN)
        assert "conv_general_dilated" in text(image, jnp.ones((5, 5, 3, 4)), (1, 1), "VALID", dimension_numbers=DN)
    np.testing.assert_allclose(conv_forms.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=DN),
                               _lax(x, k, "SAME"), rtol=1e-6)


@pytest.mark.parametrize("layout", ["1d", "NCHW", "groups"])
def test_convolutions_outside_the_forms_go_to_lax_unchanged(layout):
    """What the forms do not cover (1-D, other layouts, grouped) is ``lax.conv_general_dilated``'s result."""
    kx, kk = jax.random.split(jax.random.key(1))
    if layout == "1d":
        x, k, dn, groups = jax.random.normal(kx, (2, 9, 3)), jax.random.normal(kk, (3, 3, 4)), ("NWC", "WIO", "NWC"), 1
    elif layout == "NCHW":
        x, k, dn, groups = jax.random.normal(kx, (2, 3, 8, 8)), jax.random.normal(kk, (4, 3, 5, 5)), None, 1
    else:
        x, k, dn, groups = jax.random.normal(kx, (2, 8, 8, 4)), jax.random.normal(kk, (5, 5, 2, 4)), DN, 2
    strides, padding = (1,) * (x.ndim - 2), "SAME"
    got = jax.jit(lambda x, k: conv_forms.conv_general_dilated(x, k, strides, padding, dimension_numbers=dn,
                                                               feature_group_count=groups))(x, k)
    want = jax.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=dn, feature_group_count=groups)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_strip_width_that_is_not_a_positive_integer_is_refused():
    x, k = jnp.ones((1, 8, 8, 1)), jnp.ones((5, 5, 1, 2))
    for width in (0, 2.0):
        with pytest.raises(ValueError, match="width must be a positive integer"):
            conv_forms.strip_conv(x, k, ((0, 0), (0, 0)), width)


def test_an_unknown_conv_policy_is_refused():
    with pytest.raises(ValueError, match="policy must be one of"):
        conv_forms.set_conv_policy("fast")


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 2)])
def test_max_pool_equals_flax_values_and_gradients(shape):
    x = jax.random.normal(jax.random.key(1), shape)  # no ties
    got, want = conv_forms.max_pool(x, (2, 2)), nn.max_pool(x, (2, 2), strides=(2, 2))
    np.testing.assert_array_equal(got, want)
    g = jax.random.normal(jax.random.key(2), want.shape)
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(conv_forms.max_pool(x, (2, 2)) * g))(x),
                                  jax.grad(lambda x: jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2)) * g))(x))


@pytest.mark.parametrize("module,shape", [(SmallCNN(channels=8, hidden=16, padding=2), (8, 8, 1)),
                                          (LeNet(padding=2), (8, 8, 1)),  # the dense form
                                          (LeNet(), (32, 32, 1))])  # the strip form
def test_models_give_the_same_logits_and_gradients_in_both_policies(module, shape):
    x = jax.random.normal(jax.random.key(3), (4, *shape))
    params = module.init(jax.random.key(0), x)["params"]
    loss = lambda p: jnp.sum(jnp.tanh(module.apply({"params": p}, x)))  # noqa: E731
    def outputs():  # a new function at each call, so each jit traces it in the policy in force then
        return jax.jit(lambda p: (module.apply({"params": p}, x), jax.grad(loss)(p)))

    def jaxpr():
        return str(jax.make_jaxpr(lambda p: module.apply({"params": p}, x))(params))

    fast = outputs()(params)
    assert "conv_general_dilated" not in jaxpr()  # every convolution of these models in a library form
    with conv_forms.conv_policy("lax"):
        plain = outputs()(params)
        assert "conv_general_dilated" in jaxpr()
    chex.assert_trees_all_close(fast, plain, rtol=1e-5, atol=1e-6)
