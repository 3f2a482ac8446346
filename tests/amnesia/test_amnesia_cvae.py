"""The one-hot CVAE and its summed BCE + KL loss against a numpy hand computation."""

import amnesia_reference as ref
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.models.cvae import (
    CVAELoss, create_cvae, decode, flatten_images, one_hot, sample, summed_loss_fn, vae_loss, vae_loss_terms,
)
from jaxunlearn.models.sa_classifier import create_sa_classifier, sa_log_probs_fn


pytestmark = pytest.mark.xdist_group("amnesia_cvae")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def tiny():
    module, params = create_cvae(jax.random.key(0), x_dim=12, num_classes=4, hidden=(10, 6), z_dim=3)
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x = jax.random.uniform(k1, (5, 12))
    c = one_hot(jnp.array([0, 1, 2, 3, 1]), 4)
    eps = jax.random.normal(k2, (5, 3))
    return module, params, x, c, eps


class TestLoss(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_loss_matches_numpy(self):
        module, params = create_cvae(jax.random.key(0), x_dim=12, num_classes=4, hidden=(10, 6), z_dim=3)
        k1, k2 = jax.random.split(jax.random.key(1))
        x = jax.random.uniform(k1, (5, 12))
        c = one_hot(jnp.array([0, 1, 2, 3, 1]), 4)
        eps = jax.random.normal(k2, (5, 3))
        bce, kl = self.variant(lambda p, x, c, e: vae_loss_terms(module, p, x, c, e))(params, x, c, eps)
        bce_ref, kl_ref = ref.cvae_loss_numpy(jax.device_get(params), x, c, eps)
        np.testing.assert_allclose(bce, bce_ref, rtol=1e-5)
        np.testing.assert_allclose(kl, kl_ref, rtol=1e-4, atol=1e-5)
        total = self.variant(lambda p, b: summed_loss_fn(module)(p, b))(params, (x, c, eps))
        np.testing.assert_allclose(total, bce_ref + kl_ref, rtol=1e-5)
        mean = self.variant(lambda p, b: CVAELoss(module)(p, b))(params, (x, c, eps))  # the fast path's loss: a mean
        np.testing.assert_allclose(mean, (bce_ref + kl_ref) / 5, rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_loss_is_summed_over_batch(self):
        module, params = create_cvae(jax.random.key(2), x_dim=6, num_classes=3, hidden=(5, 4), z_dim=2)
        x = jax.random.uniform(jax.random.key(3), (4, 6))
        c = one_hot(jnp.array([0, 1, 2, 0]), 3)
        eps = jax.random.normal(jax.random.key(4), (4, 2))
        f = self.variant(lambda x, c, e: vae_loss(module, params, x, c, e))
        parts = sum(float(f(x[i : i + 1], c[i : i + 1], eps[i : i + 1])) for i in range(4))
        np.testing.assert_allclose(f(x, c, eps), parts, rtol=1e-5)


def test_decode_matches_numpy_and_is_a_probability(tiny):
    module, params, _, c, eps = tiny
    out = decode(module, params, eps, c)
    np.testing.assert_allclose(out, ref.decode_numpy(jax.device_get(params), eps, c), rtol=1e-5, atol=1e-6)
    s = sample(module, params, jax.random.key(5), jnp.array([0, 3]))
    assert s.shape == (2, 12) and float(s.min()) >= 0.0 and float(s.max()) <= 1.0


def test_default_sizes_follow_the_input():
    shapes = lambda x_dim: jax.eval_shape(lambda k: create_cvae(k, x_dim=x_dim)[1], jax.random.key(0))
    p = shapes(784)
    assert p["fc1"]["kernel"].shape == (794, 512) and p["fc31"]["kernel"].shape == (256, 8)
    assert p["fc4"]["kernel"].shape == (18, 256) and p["fc6"]["kernel"].shape == (512, 784)
    p = shapes(64)
    assert p["fc1"]["kernel"].shape == (74, 256) and p["fc6"]["kernel"].shape == (256, 64)
    assert flatten_images(np.zeros((3, 8, 8, 1))).shape == (3, 64)


@pytest.mark.parametrize("kw, match", [({"x_dim": 0}, "x_dim"), ({"x_dim": 8, "num_classes": 1}, "num_classes"),
                                       ({"x_dim": 8, "hidden": (4,)}, "hidden")])
def test_bad_sizes_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        create_cvae(jax.random.key(0), **kw)


def test_classifier_shapes_for_digits_and_mnist():
    for shape, features in (((8, 8, 1), 80), ((28, 28, 1), 320)):
        variables = jax.eval_shape(lambda k: create_sa_classifier(k, input_shape=shape)[1], jax.random.key(0))
        assert set(variables) == {"params", "batch_stats"}
        assert variables["params"]["fc1"]["kernel"].shape == (features, 50)
    module, variables = create_sa_classifier(jax.random.key(0), input_shape=(8, 8, 1))
    lp = sa_log_probs_fn(module, variables, (8, 8, 1))(jnp.zeros((2, 64)))
    np.testing.assert_allclose(jnp.exp(lp).sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="input_shape"):
        create_sa_classifier(jax.random.key(0), input_shape=(8, 8))
