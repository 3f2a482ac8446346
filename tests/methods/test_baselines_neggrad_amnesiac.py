"""NegGrad, NegGrad+ and Amnesiac: ascent equals a brute-force loop, beta=1 is fine-tuning, labels are never true."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _baselines_testbed import FORGET_CLASS, NUM_CLASSES, REQUEST, acc, loss_fn, train_data, trained_setup

from jaxunlearn.methods.amnesiac import amnesiac, random_other_labels
from jaxunlearn.methods.finetune import finetune
from jaxunlearn.methods.neggrad import neggrad, neggrad_plus

KEY = jax.random.key(0)


def test_neggrad_is_gradient_ascent_and_raises_the_forget_loss():
    params, forget, retain, _ = trained_setup()
    un = neggrad(loss_fn, optax.sgd(0.1), num_epochs=2, batch_size=16)
    key = jax.random.key(2)
    new, _, _ = un.update(params, REQUEST, un.init(params, train_data(), key=key), key=key)
    # brute force: the documented batch order, p <- p + lr * grad L(p; batch)
    shuffle_key, _ = jax.random.split(key)
    expected, grad = params, jax.jit(jax.grad(loss_fn))
    for epoch in range(2):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), 48))
        for start in range(0, 48, 16):
            idx = order[start : start + 16]
            g = grad(expected, (forget[0][idx], forget[1][idx]))
            expected = jax.tree.map(lambda p, gi: p + 0.1 * gi, expected, g)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), new, expected)
    assert loss_fn(new, forget) > loss_fn(params, forget) + 1.0
    assert acc(new, forget) < acc(params, forget)


def test_neggrad_plus_with_beta_one_is_finetuning():
    params, forget, retain, _ = trained_setup()
    opt = optax.sgd(0.05)
    key = jax.random.key(5)
    plus = neggrad_plus(loss_fn, opt, beta=1.0, num_epochs=1, batch_size=48)
    fine = finetune(loss_fn, opt, num_epochs=1, batch_size=48)
    a, _, _ = plus.update(params, REQUEST, plus.init(params, train_data(), key=key), key=key)
    b, _, _ = fine.update(params, REQUEST, fine.init(params, train_data(), key=key), key=key)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)


def test_neggrad_plus_forgets_while_keeping_the_retain_set():
    params, forget, retain, _ = trained_setup()
    un = neggrad_plus(loss_fn, optax.sgd(0.05), beta=0.8, num_epochs=2, batch_size=48)
    new, _, _ = un.update(params, REQUEST, un.init(params, train_data(), key=KEY), key=jax.random.key(1))
    assert acc(new, forget) < 0.5 * acc(params, forget)
    assert acc(new, retain) > 0.9


class TestRandomLabels(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_never_the_true_class_and_uniform_over_the_others(self):
        labels = jnp.asarray(np.random.default_rng(0).integers(0, 4, size=8000), jnp.int32)
        new = np.asarray(self.variant(lambda k, y: random_other_labels(k, y, 4))(jax.random.key(0), labels))
        assert np.all(new != np.asarray(labels)) and new.min() >= 0 and new.max() <= 3
        for c in range(4):  # given true class c, each other class has probability 1/3
            counts = np.bincount(new[np.asarray(labels) == c], minlength=4)
            share = np.delete(counts, c) / counts.sum()
            np.testing.assert_allclose(share, 1 / 3, atol=0.04)


def test_amnesiac_unlearns_the_forget_labels():
    params, forget, retain, train = trained_setup()
    un = amnesiac(loss_fn, optax.adam(3e-3), num_classes=NUM_CLASSES, num_epochs=3, batch_size=48)
    new, _, _ = un.update(params, REQUEST, un.init(params, train_data(), key=KEY), key=jax.random.key(0))
    assert acc(new, forget) < 0.5 * acc(params, forget)
    assert acc(new, retain) > 0.9
    # the random labels are drawn once from the request key, never the true class (here always 3)
    label_key = jax.random.split(jax.random.key(0))[0]
    drawn = np.asarray(random_other_labels(label_key, forget[1], NUM_CLASSES))
    assert np.all(drawn != FORGET_CLASS)


def test_errors():
    with pytest.raises(TypeError, match="num_classes"):
        amnesiac(loss_fn)
    with pytest.raises(ValueError, match="beta"):
        neggrad_plus(loss_fn, beta=1.5)
    params, *_ = trained_setup()
    ng = neggrad(loss_fn)
    x, y = train_data()
    with pytest.raises(ValueError, match="data is empty"):
        ng.init(params, (x[:0], y[:0]), key=KEY)
    with pytest.raises(ValueError, match="does not fit the model"):
        ng.init(params, (x[:, :10], y), key=KEY)
