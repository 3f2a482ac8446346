"""Random labels (RL): one epoch is a forget pass with uniform labels, then a retain pass, as two plain SGD steps."""

import jax
import numpy as np
import optax
from _baselines_testbed import NUM_CLASSES, REQUEST, loss_fn, train_data, trained_setup

from jaxunlearn.methods.random_labels import random_labels


def test_one_epoch_is_a_forget_step_on_uniform_labels_then_a_retain_step():
    params, forget, retain, _ = trained_setup()
    lr, key = 0.1, jax.random.key(3)
    un = random_labels(loss_fn, optax.sgd(lr), num_classes=NUM_CLASSES, num_epochs=1, batch_size=480)
    new, _, info = un.update(params, REQUEST, un.init(params, train_data(), key=key), key=key)
    # the documented draw: epoch 0's key fold_in(key, 0) splits into (labels, forget shuffle, retain shuffle)
    labels = np.asarray(jax.jit(lambda k: jax.random.randint(
        jax.random.split(jax.random.fold_in(k, 0), 3)[0], (48,), 0, NUM_CLASSES))(key))
    assert 3 in labels and len(set(labels)) > 5  # uniform over all C classes, the true one (3) included
    grad = jax.jit(jax.grad(loss_fn))
    step1 = jax.tree.map(lambda p, g: np.asarray(p) - lr * np.asarray(g), params, grad(params, (forget[0], labels)))
    expected = jax.tree.map(lambda p, g: p - lr * np.asarray(g), step1, grad(step1, retain))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new, expected)
    loss = jax.jit(loss_fn)
    np.testing.assert_allclose(info.loss, [[loss(params, (forget[0], labels)), loss(step1, retain)]], rtol=1e-5)
