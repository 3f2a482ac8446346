"""Linear CKA: closed-form cases and an HSIC computation in numpy; penultimate features of the MLP."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import metrics, models


def numpy_hsic_cka(x, y):
    """CKA from the HSIC of the linear kernels K = X X^T, L = Y Y^T with the centring matrix H (Gretton et al.)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(k, l):
        return np.trace(k @ h @ l @ h) / (n - 1) ** 2

    k, l = x @ x.T, y @ y.T
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_cka_closed_forms_and_hsic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 6)) + 3.0  # off-centre: the centring matters
    y = x @ rng.normal(size=(6, 4)) + rng.normal(size=(20, 4))
    assert float(metrics.linear_cka(x, x)) == pytest.approx(1.0, abs=1e-6)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    want = numpy_hsic_cka(x, y)
    assert 0.2 < want < 0.95
    assert float(metrics.linear_cka(x, y)) == pytest.approx(want, rel=1e-5)
    assert float(metrics.linear_cka(7.5 * x @ q, y)) == pytest.approx(want, rel=1e-5)  # orthogonal, scaling
    assert float(metrics.linear_cka(x - 1.0, y * 0.1)) == pytest.approx(want, rel=1e-5)  # shift, scaling
    with pytest.raises(ValueError, match="constant"):
        metrics.linear_cka(np.ones_like(x), y)
    with pytest.raises(ValueError, match="same N"):
        metrics.linear_cka(x, y[:10])


def test_penultimate_features_of_the_mlp():
    rng = np.random.default_rng(1)
    module = models.MLP(num_classes=3, hidden=(5, 4))
    shapes = {"linear1": (4, 5), "linear2": (5, 4), "linear3": (4, 3)}
    p = {name: {"kernel": rng.normal(size=s).astype(np.float32), "bias": rng.normal(size=s[1]).astype(np.float32)}
         for name, s in shapes.items()}
    x = rng.normal(size=(9, 2, 2, 1)).astype(np.float32)
    features = metrics.penultimate_fn(module, {"params": p})
    h = x.reshape(9, 4)  # flatten of one channel: channel-major order is the plain order
    for layer in ("linear1", "linear2"):
        h = np.maximum(h @ p[layer]["kernel"] + p[layer]["bias"], 0.0)
    np.testing.assert_allclose(jax.jit(features)(p, x), h, rtol=1e-5, atol=1e-6)

    shifted = jax.tree.map(lambda a: a + 0.05, p)
    h_shifted = x.reshape(9, 4)
    for layer in ("linear1", "linear2"):
        h_shifted = np.maximum(h_shifted @ shifted[layer]["kernel"] + shifted[layer]["bias"], 0.0)
    got = metrics.feature_cka(features, p, shifted, x, batch_size=5)  # eager, in chunks of 5 and 4
    assert float(got) == pytest.approx(numpy_hsic_cka(h, h_shifted), rel=1e-5)


def test_penultimate_fn_refuses_a_model_not_ending_in_dense():
    class Scaled(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return 2.0 * nn.Dense(3)(x)

    params = {"Dense_0": {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)}}
    features = metrics.penultimate_fn(Scaled(), {"params": params})
    with pytest.raises(ValueError, match="not the output of an nn.Dense"):
        jax.eval_shape(features, params, jnp.zeros((2, 4)))


def test_feature_cka_evaluates_both_models_of_one_module_in_one_compiled_program():
    """``penultimate_fn`` binds the batch statistics as a pytree: ``feature_cka`` uses each model's own statistics
    (against numpy), and both models' features come from one jitted chunked program (with ``linear_cka``'s own, at
    most two compilations; evaluated op by op it compiles every operation of the model on its own)."""
    from conftest import CompileCounter

    class BNNet(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(3)(nn.BatchNorm(use_running_average=not train)(x))

    rng = np.random.default_rng(2)
    x = rng.normal(size=(13, 7)).astype(np.float32)  # shapes no other test uses: no operation is compiled yet
    module = BNNet()
    a = module.init(jax.random.key(0), x[:1])
    stats = a["batch_stats"]["BatchNorm_0"]

    def with_stats(shift):
        return {"params": a["params"], "batch_stats": {"BatchNorm_0": {"mean": stats["mean"] + shift,
                                                                       "var": stats["var"] + shift}}}

    def numpy_features(shift):  # BatchNorm in eval mode, scale 1 and bias 0: (x - mean) / sqrt(var + eps)
        return (x - (np.asarray(stats["mean"]) + shift)) / np.sqrt(np.asarray(stats["var"]) + shift + 1e-5)

    fa, fb = (metrics.penultimate_fn(module, with_stats(s)) for s in (0.0, 0.5))
    CompileCounter.count, CompileCounter.active = 0, True
    try:
        got = metrics.feature_cka(fa, a["params"], a["params"], x, features_fn_b=fb, batch_size=5)
    finally:
        CompileCounter.active = False
    assert float(got) == pytest.approx(numpy_hsic_cka(numpy_features(0.0), numpy_features(0.5)), rel=1e-4)
    assert CompileCounter.count <= 2, f"the features of two models compiled {CompileCounter.count} programs"
