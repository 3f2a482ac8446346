"""Classifier training on digits, eval-mode accuracy, batched logits and the soft-target losses."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn.data import load_digits
from jaxunlearn.models import create, logits_fn
from jaxunlearn.train import (
    accuracy,
    batched_logits,
    distill_kl,
    kl_to_target,
    train_classifier,
    train_classifier_many_seeds,
)


pytestmark = pytest.mark.xdist_group("train_classifier")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_mlp_learns_digits(digits):
    train, test = digits
    module, variables = create("mlp", num_classes=10, input_shape=(8, 8, 1), key=jax.random.key(0),
                               hidden=(64,), dropout_rate=0.1)
    new_vars, hist = train_classifier(module, variables, train, optimizer=optax.adam(1e-2), num_epochs=8,
                                      batch_size=64, key=jax.random.key(1), progress=False, eval_data=test)
    acc = accuracy(logits_fn(module, new_vars), new_vars["params"], test)
    assert acc > 0.9, acc
    assert hist["loss"][-1] < hist["loss"][0]
    np.testing.assert_allclose(hist["eval_accuracy"][-1], acc)
    # sample-weighted accuracy, checked against a numpy loop over examples
    preds = np.asarray(module.apply(new_vars, test.x, train=False)).argmax(-1)
    np.testing.assert_allclose(acc, np.mean(preds == test.y))
    np.testing.assert_allclose(accuracy(logits_fn(module, new_vars), new_vars["params"], (test.x, test.y), batch_size=7), acc)


class BNNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(3)(x)


def test_train_mode_updates_batch_stats_like_flax():
    x = np.random.default_rng(0).normal(2.0, 1.0, size=(16, 5)).astype(np.float32)
    y = np.arange(16, dtype=np.int32) % 3
    module = BNNet()
    variables = module.init(jax.random.key(0), x[:1])
    new_vars, _ = train_classifier(module, variables, (x, y), optimizer=optax.sgd(0.0), num_epochs=1,
                                   batch_size=16, key=jax.random.key(0), progress=False)
    # one train-mode step on the whole batch: running mean = 0.9 * 0 + 0.1 * batch mean
    np.testing.assert_allclose(new_vars["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(new_vars["batch_stats"]["BatchNorm_0"]["var"], 0.9 + 0.1 * x.var(0), rtol=1e-5)


def test_models_of_one_module_share_the_compiled_evaluation():
    """``logits_fn`` binds the batch statistics as a pytree, not as a closure: the logits and accuracy of two models
    of one module (an original and a retrained one) compile once, and each model's own statistics are used."""
    from conftest import CompileCounter

    x = np.random.default_rng(1).normal(2.0, 1.0, size=(24, 5)).astype(np.float32)
    y = np.arange(24, dtype=np.int32) % 3
    module = BNNet()
    a = module.init(jax.random.key(0), x[:1])
    b = {"params": a["params"], "batch_stats": jax.tree.map(lambda v: v + 0.5, a["batch_stats"])}
    fa, fb = logits_fn(module, a), logits_fn(module, b)
    for f, v in ((fa, a), (fb, b)):
        want = module.apply(v, x, train=False)
        np.testing.assert_allclose(batched_logits(f, v["params"], x, batch_size=8), want, rtol=1e-5, atol=1e-6)
        assert accuracy(f, v["params"], (x, y), batch_size=8) == float(np.mean(np.argmax(want, -1) == y))
    CompileCounter.count, CompileCounter.active = 0, True
    try:
        fresh = logits_fn(module, {"params": a["params"], "batch_stats": b["batch_stats"]})
        batched_logits(fresh, a["params"], x, batch_size=8)
        accuracy(fresh, a["params"], (x, y), batch_size=8)
    finally:
        CompileCounter.active = False
    assert CompileCounter.count == 0, f"a third model of the module compiled {CompileCounter.count} program(s)"


def test_many_seed_classifiers_carry_batch_stats():
    x = np.random.default_rng(0).normal(2.0, 1.0, size=(16, 5)).astype(np.float32)
    y = np.arange(16, dtype=np.int32) % 3
    stacked, hist = train_classifier_many_seeds(BNNet(), (x, y), jax.random.split(jax.random.key(0), 2),
                                                optimizer=optax.sgd(0.1), num_epochs=1, batch_size=16, progress=False)
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(stacked)) and hist["loss"].shape == (2, 1)
    w = stacked["params"]["Dense_0"]["kernel"]
    assert not np.allclose(w[0], w[1])  # seeds are initialised differently
    for s in range(2):  # every seed's statistics saw the same single full batch
        np.testing.assert_allclose(stacked["batch_stats"]["BatchNorm_0"]["mean"][s], 0.1 * x.mean(0), rtol=1e-5)


class TestBatchedLogits(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_one_call_with_short_last_chunk(self):
        w = jax.random.normal(jax.random.key(0), (6, 4))
        x = jax.random.normal(jax.random.key(1), (23, 6))
        f = lambda p, xb: jnp.tanh(xb @ p)  # noqa: E731
        out = self.variant(lambda p, xb: batched_logits(f, p, xb, batch_size=5))(w, x)
        np.testing.assert_allclose(out, np.tanh(np.asarray(x) @ np.asarray(w)), rtol=1e-5, atol=1e-6)


def numpy_kl(p, logits, t):
    z = logits / t
    q = np.exp(z - z.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum()


class TestLosses(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_kl_reductions_match_numpy(self):
        rng = np.random.default_rng(0)
        s = rng.normal(size=(4, 3)).astype(np.float32)
        p = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
        p[0] = [1.0, 0.0, 0.0]  # 0 log 0 = 0
        total = numpy_kl(p.astype(np.float64), s.astype(np.float64), 2.0)
        for reduction, divisor in (("sum", 1), ("batchmean", 4), ("mean", 12)):
            got = self.variant(lambda a, b, r=reduction: kl_to_target(a, b, temperature=2.0, reduction=r))(s, p)
            np.testing.assert_allclose(got, total / divisor, rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_distill_kl_is_scrub_distillkl(self):
        rng = np.random.default_rng(1)
        s, t = rng.normal(size=(2, 5, 4))
        zt = t / 4.0
        pt = np.exp(zt - zt.max(-1, keepdims=True))
        pt /= pt.sum(-1, keepdims=True)
        expected = numpy_kl(pt, s, 4.0) * 16.0 / 5
        np.testing.assert_allclose(self.variant(distill_kl)(jnp.asarray(s), jnp.asarray(t)), expected, rtol=1e-4)
        np.testing.assert_allclose(distill_kl(jnp.asarray(t), jnp.asarray(t)), 0.0, atol=1e-6)

    def test_bad_reduction(self):
        with pytest.raises(ValueError, match="reduction"):
            kl_to_target(jnp.zeros((2, 3)), jnp.ones((2, 3)) / 3, reduction="avg")


def test_labels_outside_the_classes_and_misfit_features_are_named():
    """BNNet has 3 logits: a label 3 is rejected at the entry of every training call and of accuracy."""
    x = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    y = np.arange(16, dtype=np.int32) % 4  # holds 3
    module = BNNet()
    variables = module.init(jax.random.key(0), x[:1])
    kwargs = {"optimizer": optax.sgd(0.1), "num_epochs": 1, "batch_size": 8, "progress": False}
    with pytest.raises(ValueError, match=r"train_data labels y hold values from 0 to 3.*0\.\.2"):
        train_classifier(module, variables, (x, y), key=jax.random.key(0), **kwargs)
    with pytest.raises(ValueError, match=r"eval_data labels y hold values from 0 to 3"):
        train_classifier(module, variables, (x, y % 3), key=jax.random.key(0), eval_data=(x, y), **kwargs)
    with pytest.raises(ValueError, match=r"train_data labels y hold values from 0 to 3"):
        train_classifier_many_seeds(module, (x, y), jax.random.split(jax.random.key(0), 2), **kwargs)
    with pytest.raises(ValueError, match=r"data labels y hold values from 0 to 3"):
        accuracy(lambda p, xb: module.apply({**variables, "params": p}, xb), variables["params"], (x, y))
    with pytest.raises(ValueError, match=r"train_data does not fit the model: per-example shapes \(6,\)"):
        train_classifier(module, variables, (np.ones((16, 6), np.float32), y % 3), key=jax.random.key(0), **kwargs)
