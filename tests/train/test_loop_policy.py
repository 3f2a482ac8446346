"""The loop policy (jaxunlearn.loops) through the training loop, and fit's compile-once cache.

* the policy API: validated, scoped by the context manager, resolved per backend;
* scan_steps with a CNN's gradient steps, under the policy and with ``unroll``, equals the same
  jitted step called from a Python loop (the computation outside any loop);
* a second ``fit`` with the same loss function, optimizer and shapes compiles nothing (counted
  with ``jax.monitoring``), on the scan path and on the host-batch path.

The policy's rewrite itself is checked against a numpy convolution in ``tests/curvature/test_chunks.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn import loops
from jaxunlearn.train import fit, init_train_state, make_step, params_only
from jaxunlearn.train.loop import scan_steps


from conftest import CompileCounter  # noqa: E402  (tests/conftest.py, shared by the suite)


def test_policy_is_validated_scoped_and_resolved_per_backend():
    assert loops.get_policy() == "auto"
    assert loops.rewrites_convolutions() == (jax.default_backend() == "cpu")
    with pytest.raises(ValueError, match="policy must be one of"):
        loops.set_policy("unrolled")
    with pytest.raises(ValueError, match="policy"):
        loops.scan(lambda c, x: (c, x), 0.0, jnp.zeros(3), policy="fast")
    with pytest.raises(RuntimeError), loops.loop_policy("scan"):
        assert loops.get_policy() == "scan" and not loops.rewrites_convolutions()
        raise RuntimeError
    assert loops.get_policy() == "auto"  # restored on the way out, also through an exception
    previous = loops.set_policy("canonical")
    try:
        assert previous == "auto" and loops.rewrites_convolutions()
    finally:
        loops.set_policy(previous)


def cnn_logits(params, x):
    h = jax.lax.conv_general_dilated(x, params["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.tanh(h).reshape(x.shape[0], -1) @ params["head"]


def cnn_loss(params, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(cnn_logits(params, x), y).mean()


def test_scan_steps_of_cnn_sgd_equals_the_step_outside_any_loop():
    rng = np.random.default_rng(0)
    params = {"conv": jnp.asarray(rng.normal(size=(3, 3, 2, 3)) / 3, jnp.float32),
              "head": jnp.asarray(rng.normal(size=(48, 4)) / 7, jnp.float32)}
    xs = jnp.asarray(rng.normal(size=(5, 6, 4, 4, 2)), jnp.float32)  # 5 steps of batches of 6
    ys = jnp.asarray(rng.integers(0, 4, size=(5, 6)), jnp.int32)
    opt = optax.sgd(0.5)
    step = make_step(params_only(cnn_loss), opt)
    jitted = jax.jit(step)
    state = init_train_state(params, opt)
    for t in range(5):  # the reference: the jitted step driven from Python
        state, _ = jitted(state, (xs[t], ys[t]), None)

    with loops.loop_policy("auto"):  # the default, set here in case a caller changed it
        got, losses = jax.jit(lambda s, b: scan_steps(lambda c, bb: step(c, bb, None), s, b, unroll=2))(
            init_train_state(params, opt), (xs, ys))
    assert losses.shape == (5,) and int(got.step) == 5
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got.params, state.params)
    assert not np.allclose(state.params["conv"], params["conv"])


def squared_loss(w, batch):
    x, y = batch
    return jnp.mean((x @ w - y) ** 2)


def test_second_fit_with_the_same_configuration_compiles_nothing():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=20).astype(np.float32)
    loss, opt = params_only(squared_loss), optax.sgd(0.05)
    kw = dict(batch_size=6, num_epochs=2, progress=False)
    for scan in (True, False):
        counts = []
        for w0, shift, key in ((jnp.zeros(3), 0.0, 0), (jnp.ones(3), 1.0, 1)):  # new values, same shapes
            CompileCounter.count, CompileCounter.active = 0, True
            try:
                state, hist = fit(loss, opt, init_train_state(w0, opt), (x + shift, y), key=jax.random.key(key),
                                  scan=scan, **kw)
                jax.block_until_ready(state.params)
            finally:
                CompileCounter.active = False
            counts.append(CompileCounter.count)
        assert counts[0] > 0  # the counter sees the first call's compilations (the jitted epoch or step)
        assert counts[1] == 0, f"scan={scan}: the second fit compiled {counts[1]} time(s)"
        assert int(state.step) == 8 and hist["step_loss"].shape == (2, 4)
