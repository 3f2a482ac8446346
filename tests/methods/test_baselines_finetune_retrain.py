"""Fine-tune and retrain baselines: identity at 0 epochs, forget data unused, true vs head-only re-initialisation."""

import jax
import numpy as np
import optax
import pytest
from _baselines_testbed import REQUEST, acc, init_fn, loss_fn, train_data, trained_setup

from jaxunlearn.data import Dataset
from jaxunlearn.methods.finetune import finetune
from jaxunlearn.methods.retrain import default_head, reset_head, retrain

KEY = jax.random.key(0)


def assert_trees_close(a, b, **kw):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), **kw), a, b)


def run(un, params, data, request=REQUEST, key=KEY):
    return un.update(params, request, un.init(params, data, key=KEY), key=key)


def test_finetune_zero_epochs_is_identity():
    params, *_ = trained_setup()
    new, _, _ = run(finetune(loss_fn, num_epochs=0), params, train_data())
    assert_trees_close(new, params, rtol=0, atol=0)


def test_finetune_trains_on_the_retained_examples_only():
    params, forget, retain, _ = trained_setup()
    un = finetune(loss_fn, optax.sgd(0.05), num_epochs=1, batch_size=48)
    new, _, info = run(un, params, train_data())
    # the forget examples are never trained on: changing them changes nothing
    x, y = train_data()
    other, _, _ = run(un, params, (np.concatenate([x[:48] * 0.5, x[48:]]), np.concatenate([y[:48][::-1], y[48:]])))
    assert_trees_close(new, other, rtol=0, atol=0)
    assert loss_fn(new, retain) < loss_fn(params, retain)
    assert info.loss.shape == (1,)


def test_retrain_full_reinitialises_and_forgets_the_class():
    params, forget, retain, _ = trained_setup()
    un = retrain(init_fn, loss_fn, optax.adam(1e-2), num_epochs=10, batch_size=144)
    new, _, _ = run(un, params, train_data(), key=jax.random.key(3))
    # true re-initialisation: the trained params play no part
    shuffled = jax.tree.map(lambda a: a[::-1], params)
    from_other, _, _ = run(un, shuffled, train_data(), key=jax.random.key(3))
    assert_trees_close(new, from_other, rtol=0, atol=0)
    assert acc(new, retain) > 0.95 and acc(new, forget) == 0.0  # never saw a 3: never predicts it


def test_retrain_with_zero_learning_rate_is_the_initialisation():
    params, *_ = trained_setup()
    key = jax.random.key(8)
    fresh = init_fn(jax.random.split(key)[0])
    for reset, expected in (("full", fresh), ("head", {"hidden": params["hidden"], "head": fresh["head"]})):
        un = retrain(init_fn, loss_fn, optax.sgd(0.0), num_epochs=1, reset=reset, batch_size=432)
        new, _, _ = run(un, params, train_data(), key=key)
        assert_trees_close(new, expected, rtol=1e-6, atol=1e-7)  # init_fn compiled inside update: rounding only


def test_reset_head_names():
    p = {"a": 1, "b": 2}
    assert reset_head(p, {"a": 10, "b": 20}) == {"a": 1, "b": 20}
    assert reset_head(p, {"a": 10, "b": 20}, head=("a", "b")) == {"a": 10, "b": 20}
    assert default_head({"conv1": 0, "fc1": 0, "fc2": 0, "fc10": 0}) == "fc10"
    assert default_head({"block_0": 0, "head": 0, "norm": 0, "patch_embed": 0}) == "head"
    with pytest.raises(ValueError, match="top-level"):
        reset_head(p, p, head="c")


def test_datasets_are_accepted_and_their_labels_checked():
    params, *_ = trained_setup()
    x, y = train_data()
    un = finetune(loss_fn, num_epochs=0)
    new, _, _ = run(un, params, Dataset(x, y, 10, "train"))
    assert_trees_close(new, params, rtol=0, atol=0)
    with pytest.raises(ValueError, match="0..9"):
        un.init(params, Dataset(x, np.where(y == 3, 10, y), 10, "train"), key=KEY)


def test_config_errors():
    with pytest.raises(ValueError, match="reset"):
        retrain(init_fn, loss_fn, num_epochs=1, reset="last")
    with pytest.raises(ValueError, match="num_epochs"):
        finetune(loss_fn, num_epochs=-1)
