"""Fine-tune and retrain baselines: identity at 0 epochs, forget data unused, true vs head-only re-initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _baselines_testbed import acc, init_fn, loss_fn, trained_setup

from jaxunlearn.data import Dataset
from jaxunlearn.methods.finetune import finetune
from jaxunlearn.methods.retrain import default_head, reset_head, retrain


def assert_trees_close(a, b, **kw):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), **kw), a, b)


def test_finetune_zero_epochs_is_identity():
    params, forget, retain, _ = trained_setup()
    un = finetune(loss_fn, num_epochs=0)
    new, _ = un.update(params, forget, un.init(params, retain))
    assert_trees_close(new, params, rtol=0, atol=0)


def test_finetune_trains_on_retain_only_and_is_jittable():
    params, forget, retain, _ = trained_setup()
    un = finetune(loss_fn, optax.sgd(0.05), num_epochs=1, batch_size=48)
    state = un.init(params, retain, key=jax.random.key(4))
    new, next_state = un.update(params, forget, state)
    # the forget set is not trained on: any other forget set of the same shape gives the same result
    other, _ = un.update(params, (forget[0][::-1] * 0.5, forget[1][::-1]), state)
    assert_trees_close(new, other, rtol=0, atol=0)
    assert loss_fn(new, retain) < loss_fn(params, retain)
    assert not np.array_equal(jax.random.key_data(next_state.key), jax.random.key_data(state.key))
    jitted, _ = jax.jit(lambda p, x, y, s: un.update(p, (x, y), s))(params, *forget, state)
    assert_trees_close(jitted, new, rtol=1e-5, atol=1e-6)


def test_retrain_full_reinitialises_and_forgets_the_class():
    params, forget, retain, _ = trained_setup()
    un = retrain(init_fn, loss_fn, optax.adam(1e-2), num_epochs=10, batch_size=144)
    key = jax.random.key(3)
    new, _ = un.update(params, forget, un.init(params, retain), key=key)
    # true re-initialisation: the trained params play no part
    shuffled = jax.tree.map(lambda a: a[::-1], params)
    from_other, _ = un.update(shuffled, forget, un.init(shuffled, retain), key=key)
    assert_trees_close(new, from_other, rtol=0, atol=0)
    assert acc(new, retain) > 0.95 and acc(new, forget) == 0.0  # never saw a 3: never predicts it


def test_retrain_with_zero_learning_rate_is_the_initialisation():
    params, forget, retain, _ = trained_setup()
    key = jax.random.key(8)
    fresh = init_fn(jax.random.split(key)[0])
    for reset, expected in (("full", fresh), ("head", {"hidden": params["hidden"], "head": fresh["head"]})):
        un = retrain(init_fn, loss_fn, optax.sgd(0.0), num_epochs=1, reset=reset, batch_size=432)
        new, _ = un.update(params, forget, un.init(params, retain), key=key)
        assert_trees_close(new, expected, rtol=0, atol=0)


def test_reset_head_names():
    p = {"a": 1, "b": 2}
    assert reset_head(p, {"a": 10, "b": 20}) == {"a": 1, "b": 20}
    assert reset_head(p, {"a": 10, "b": 20}, head=("a", "b")) == {"a": 10, "b": 20}
    assert default_head({"conv1": 0, "fc1": 0, "fc2": 0, "fc10": 0}) == "fc10"
    assert default_head({"block_0": 0, "head": 0, "norm": 0, "patch_embed": 0}) == "head"
    with pytest.raises(ValueError, match="top-level"):
        reset_head(p, p, head="c")


def test_datasets_are_accepted():
    params, forget, retain, _ = trained_setup()
    un = finetune(loss_fn, num_epochs=0)
    state = un.init(params, Dataset(np.asarray(retain[0]), np.asarray(retain[1]), 10, "retain"))
    new, _ = un.update(params, Dataset(np.asarray(forget[0]), np.asarray(forget[1]), 10, "forget"), state)
    assert_trees_close(new, params, rtol=0, atol=0)


def test_bad_inputs_raise_clear_errors():
    params, forget, retain, _ = trained_setup()
    for un in (finetune(loss_fn, num_epochs=0), retrain(init_fn, loss_fn, num_epochs=0)):
        state = un.init(params, retain)
        with pytest.raises(ValueError, match="forget_data is empty"):
            un.update(params, (forget[0][:0], forget[1][:0]), state)
        with pytest.raises(ValueError, match="forget_data examples have shape"):
            un.update(params, (forget[0][:, :10], forget[1]), state)
        with pytest.raises(ValueError, match="disagree"):
            un.update(params, (forget[0], forget[1][:3]), state)
        nan_params = jax.tree.map(lambda a: a.at[0].set(jnp.nan), params)
        with pytest.raises(FloatingPointError, match="params"):
            un.update(nan_params, forget, state)
        with pytest.raises(TypeError, match="integers"):
            un.update(params, (forget[0], forget[1].astype(np.float32)), state)
    with pytest.raises(ValueError, match="reset"):
        retrain(init_fn, loss_fn, num_epochs=1, reset="last")
    with pytest.raises(ValueError, match="num_epochs"):
        finetune(loss_fn, num_epochs=-1)
