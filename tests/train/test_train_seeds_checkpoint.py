"""train_many_seeds equals the same seeds trained one by one and compiles once; checkpoints round-trip and are
written atomically."""

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn.train import (
    fit,
    init_train_state,
    load_checkpoint,
    params_only,
    save_checkpoint,
    train_many_seeds,
)

RNG = np.random.default_rng(1)
X = RNG.normal(size=(32, 4)).astype(np.float32)
Y = (RNG.random(32) < 0.5).astype(np.int32)


def init_fn(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (4, 8)), "b1": jnp.zeros(8), "w2": 0.5 * jax.random.normal(k2, (8, 2))}


def logits(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]


def loss(p, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()


@contextlib.contextmanager
def count_compilations():
    """Counts XLA backend compilations inside the block (``jax.monitoring`` duration events)."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_vmapped_seeds_equal_sequential_runs_and_a_second_call_compiles_nothing():
    opt = optax.sgd(0.1, momentum=0.9)
    lifted = params_only(loss)
    keys = jax.random.split(jax.random.key(11), 2)
    # one seed per group: two calls of one compiled program (on a CPU many seeds train in groups)
    state, hist = train_many_seeds(lifted, opt, init_fn, (X, Y), keys, batch_size=8, num_epochs=2, progress=False,
                                   seeds_per_group=1)
    assert hist["loss"].shape == (2, 2) and hist["step_loss"].shape == (2, 2, 4)
    with count_compilations() as compiled:
        again, again_hist = train_many_seeds(lifted, opt, init_fn, (X, Y), keys, batch_size=8, num_epochs=2,
                                             progress=False, seeds_per_group=1)
    assert compiled[0] == 0
    np.testing.assert_array_equal(np.asarray(again.params["w1"]), np.asarray(state.params["w1"]))
    np.testing.assert_array_equal(again_hist["step_loss"], hist["step_loss"])
    for s in range(2):
        init_key, train_key = jax.random.split(keys[s])
        one, one_hist = fit(lifted, opt, init_train_state(init_fn(init_key), opt), (X, Y),
                            batch_size=8, num_epochs=2, key=train_key, progress=False)
        for name in one.params:
            np.testing.assert_allclose(state.params[name][s], one.params[name], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(hist["loss"][s], one_hist["loss"], rtol=1e-4)
    # the seeds differ: different initialisations and shuffles
    assert not np.allclose(state.params["w2"][0], state.params["w2"][1])


def test_train_many_seeds_rejects_a_single_key_and_a_bad_group():
    with pytest.raises(ValueError, match="leading seed axis"):
        train_many_seeds(params_only(loss), optax.sgd(0.1), init_fn, (X, Y), jax.random.key(0), batch_size=8,
                         num_epochs=1, progress=False)
    with pytest.raises(ValueError, match="seeds_per_group"):
        train_many_seeds(params_only(loss), optax.sgd(0.1), init_fn, (X, Y), jax.random.split(jax.random.key(0)),
                         batch_size=8, num_epochs=1, progress=False, seeds_per_group=0)


def test_checkpoint_round_trip_of_a_train_state(tmp_path):
    opt = optax.adam(0.01)
    state = init_train_state(init_fn(jax.random.key(0)), opt, {"batch_stats": {"mean": jnp.arange(3.0)}})
    state, _ = fit(params_only(loss), opt, state, (X, Y), batch_size=16, num_epochs=1, key=jax.random.key(1), progress=False)
    path = save_checkpoint(tmp_path / "sub" / "ckpt.msgpack", state)
    template = init_train_state(init_fn(jax.random.key(9)), opt, {"batch_stats": {"mean": jnp.zeros(3)}})
    restored = load_checkpoint(path, template)
    assert type(restored) is type(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    raw = load_checkpoint(path)
    np.testing.assert_array_equal(raw["params"]["w1"], np.asarray(state.params["w1"]))
    assert os.listdir(tmp_path / "sub") == ["ckpt.msgpack"]  # no temporary file left behind


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.msgpack"
    save_checkpoint(path, {"a": np.ones(3)})
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"a": np.zeros(3)})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["ckpt.msgpack"]  # and the temporary file was removed


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_checkpoint"):
        load_checkpoint(tmp_path / "missing.msgpack")
    path = save_checkpoint(tmp_path / "c.msgpack", {"a": np.ones(3)})
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(path, {"b": np.ones(3)})
