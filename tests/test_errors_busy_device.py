"""Errors staged inside compiled code (``_validation.raise_if``) reach the caller with their own class even when
the device is still busy with an earlier program.

JAX then dispatches the program asynchronously and a host callback's error travels with the outputs: a call that
returned before its program ran would report nothing, and the error would surface at some later use of the
outputs (or at exit). ``jaxunlearn.jit``, ``keep_errors`` as a decorator and every public ``update`` wait for
their outputs (``_validation.wait_for_errors``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxunlearn as ju
from jaxunlearn._validation import raise_if
from jaxunlearn.methods import ssd


@jax.jit
def _busy(m):
    for _ in range(6):
        m = jnp.tanh(m @ m)
    return m


def _occupy_device():
    """Dispatch a program of a few hundred milliseconds and return without waiting for it."""
    return _busy(jnp.eye(700) * 0.5)


def _checked_double(x):
    raise_if(jnp.any(x < 0), lambda n: ValueError(f"x holds {int(n)} negative value(s)"), jnp.sum(x < 0))
    return 2 * x


def _loss(params, batch):
    x, y = batch
    logits = x @ params["w"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def test_staged_errors_keep_their_class_while_the_device_is_busy():
    _occupy_device().block_until_ready()  # compiled before the checks
    x = jnp.array([1.0, -2.0, 3.0])
    for call in (ju.jit(_checked_double), ju.keep_errors()(jax.jit(_checked_double))):
        call(jnp.ones(3)).block_until_ready()
        for _ in range(3):
            busy = _occupy_device()
            with pytest.raises(ValueError, match="1 negative"):
                call(x)
            busy.block_until_ready()

    rng = np.random.default_rng(0)
    data = (jnp.asarray(rng.normal(size=(32, 5)), jnp.float32), jnp.asarray(rng.integers(0, 3, 32), jnp.int32))
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}
    unlearner = ssd(_loss, alpha=10.0, lambda_=1.0, batch_size=8)
    state = unlearner.init(params, data, key=jax.random.key(0))
    unlearner.update(params, jnp.arange(4), state, key=jax.random.key(1))  # compiled
    for _ in range(3):
        busy = _occupy_device()
        with pytest.raises(ValueError, match="index"):
            unlearner.update(params, jnp.array([0, 1, 40, 2]), state, key=jax.random.key(1))
        busy.block_until_ready()
