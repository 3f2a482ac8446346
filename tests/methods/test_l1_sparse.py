"""ℓ1-sparse unlearning: each epoch is a retain step plus the subgradient gamma_e sign(theta), gamma_e linear in e."""

import jax
import numpy as np
import optax
from _baselines_testbed import NUM_CLASSES, REQUEST, loss_fn, train_data, trained_setup

from jaxunlearn.methods.l1_sparse import l1_sparse


def test_two_epochs_are_subgradient_steps_with_linearly_decaying_gamma():
    params, _, retain, _ = trained_setup()
    # pixel 0 of every digit is 0, so these weights get no loss gradient: only the l1 term could move them
    params = jax.tree.map(np.array, params)
    params["hidden"]["w"][0, :5] = 0.0
    assert np.all(np.asarray(train_data()[0])[:, 0] == 0)
    lr, gamma, key = 0.1, 0.01, jax.random.key(1)
    un = l1_sparse(loss_fn, optax.sgd(lr), gamma=gamma, num_epochs=2, batch_size=480, num_classes=NUM_CLASSES)
    new, _, info = un.update(params, REQUEST, un.init(params, train_data(), key=key), key=key)
    grad = jax.jit(jax.grad(loss_fn))
    expected = params
    for g in (gamma, gamma / 2):  # gamma_e = gamma (1 - e / E), E = 2; one full-batch step per epoch
        expected = jax.tree.map(lambda w, d, g=g: w - lr * (np.asarray(d) + g * np.sign(w)), expected,
                                grad(expected, retain))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new, expected)
    np.testing.assert_array_equal(np.asarray(new["hidden"]["w"])[0, :5], 0.0)  # sign(0) = 0: zeros stay zero
    assert info.loss.shape == (2,)
