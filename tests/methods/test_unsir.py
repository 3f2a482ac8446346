"""UNSIR: the noise step descends -CE + lam * mean ||N||^2 and raises the forget loss; the per-class retained subset."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _baselines_testbed import FORGET_CLASS, loss_fn, trained_setup

from jaxunlearn.methods.unsir import error_maximising_noise, first_per_class


def test_noise_step_follows_the_objective_and_training_raises_the_forget_loss():
    params = trained_setup()[0]
    labels = jnp.full((16,), FORGET_CLASS)
    key, lr, lam = jax.random.key(2), 0.5, 0.1
    noise, ce = jax.jit(lambda p: error_maximising_noise(loss_fn, p, labels, key=key, shape=(64,), num_steps=1,
                                                         lam=lam, optimizer=optax.sgd(lr)))(params)
    ce_of = jax.jit(jax.value_and_grad(lambda n: loss_fn(params, (n, labels))))
    n0 = np.asarray(jax.random.normal(key, (16, 64)))
    ce0, ce_grad = ce_of(n0)  # one gradient step on -CE + lam mean_j ||N_j||^2:
    np.testing.assert_allclose(noise, n0 - lr * (-ce_grad + lam * 2 * n0 / 16), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ce, [ce0, ce_of(noise)[0]], rtol=1e-5)
    assert ce[1] > ce[0] + 1.0  # error-maximising: the model gets the noise more wrong for the forget class


def test_first_per_class_keeps_the_first_alive_examples_of_each_class():
    rng = np.random.default_rng(0)
    labels, alive = rng.integers(0, 4, 60), rng.random(60) < 0.7
    got = np.asarray(jax.jit(lambda y, a: first_per_class(y, a, 4, 3))(labels, alive))
    expected, seen = np.zeros(60, bool), np.zeros(4, int)
    for i in range(60):
        if alive[i] and seen[labels[i]] < 3:
            expected[i], seen[labels[i]] = True, seen[labels[i]] + 1
    np.testing.assert_array_equal(got, expected)
