"""Models and examples on a device mesh (``jaxunlearn.sharding``): the same scores, Fisher diagonals, importance
sums and Hessian-vector products on one device and on eight.

The suite runs with eight fake CPU devices (``tests/conftest.py``); the one-device run is this file run as a
script in a subprocess with its own ``XLA_FLAGS``, started first so that the two runs overlap.
"""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn import curvature, sharding

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 5)).astype(np.float32)
Y = RNG.integers(0, 3, 64).astype(np.int32)
PARAMS = {"w": RNG.normal(size=(5, 4)).astype(np.float32), "v": RNG.normal(size=(4, 3)).astype(np.float32)}


def _loss(p, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(jnp.tanh(x @ p["w"]) @ p["v"], y).mean()


def _example_sums(shard) -> dict:
    """The example-axis reductions of the curvature core on the 64 examples, each through ``shard(fn, reduce)``
    (8 examples a chunk: on 8 devices each device holds one chunk of the one-device run)."""

    def fisher(d, p):
        return curvature.fisher_diagonal(_loss, p, d, estimator="empirical", batch_size=8)

    def importance(d, p):  # SSD-style sum over chunks of |gradient of the chunk's mean loss|
        return curvature.chunked_sum(lambda c, _: jax.tree.map(jnp.abs, jax.grad(_loss)(p, c)), d, 8)

    def hvp(d, p):  # one minibatch: the HVP of its mean loss, v = params
        return curvature.hvp(_loss, p, p, d)

    out = {"fisher": shard(fisher, "mean")((X, Y), PARAMS), "importance": shard(importance, "sum")((X, Y), PARAMS),
           "hvp": shard(hvp, "mean")((X, Y), PARAMS)}
    return jax.tree.map(lambda a: np.asarray(a).tolist(), out)


def _numpy_grads(w, v, x, y):
    """Per-example gradients of ``_loss`` in float64 numpy: ``[n, ...]`` for ``w`` and ``v`` (backpropagation by
    hand)."""
    h = np.tanh(x @ w)
    z = h @ v
    p = np.exp(z - z.max(-1, keepdims=True))
    delta = p / p.sum(-1, keepdims=True) - np.eye(v.shape[1])[y]
    back = (delta @ v.T) * (1 - h**2)
    return {"w": x[:, :, None] * back[:, None, :], "v": h[:, :, None] * delta[:, None, :]}


def _numpy_example_sums() -> dict:
    """The references of :func:`_example_sums`: mean squared per-example gradient, sum over chunks of 8 of the
    absolute chunk-mean gradient, and the HVP as a central difference of the mean gradient along ``v = params``."""
    w, v, x = PARAMS["w"].astype(np.float64), PARAMS["v"].astype(np.float64), X.astype(np.float64)
    grads = _numpy_grads(w, v, x, Y)
    eps = 1e-5
    plus, minus = _numpy_grads(w + eps * w, v + eps * v, x, Y), _numpy_grads(w - eps * w, v - eps * v, x, Y)
    return {"fisher": {k: (g**2).mean(0) for k, g in grads.items()},
            "importance": {k: np.abs(g.reshape((8, 8) + g.shape[1:]).mean(1)).sum(0) for k, g in grads.items()},
            "hvp": {k: (plus[k].mean(0) - minus[k].mean(0)) / (2 * eps) for k in grads}}


def _scores() -> dict:
    """Many-model scores of SSD with N = 4 on every visible device (on 8 devices the 4 models are padded to 8), and
    the example-axis sums sharded over every visible device."""
    from jaxunlearn.experiments import ForgettingConfig
    from jaxunlearn.experiments.many_models import run_many_models

    mesh = sharding.model_mesh()
    config = ForgettingConfig(methods=("ssd",), seeds=(0,), epochs=1)
    result = run_many_models(config, 0, 4, mesh=mesh, progress=False, log=lambda m: None)
    examples = sharding.example_mesh()
    return {"devices": int(mesh.devices.size), "rows": result.rows,
            "epsilons": {k: v.tolist() for k, v in result.epsilons.items()},
            "example_sums": _example_sums(lambda fn, reduce: sharding.shard_examples(fn, examples, reduce=reduce))}


def _start(devices: int) -> subprocess.Popen:
    """This file as a script on ``devices`` CPU devices, with the suite's other XLA flags (tests/conftest.py)."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", "")).split()
    env = {**os.environ, "XLA_FLAGS": " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"]),
           "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, __file__], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def test_scores_are_the_same_on_one_and_eight_devices():
    one = _start(1)
    # the suite's own eight devices run the eight-device side here; a single-device session starts a second script
    eight = _scores() if jax.device_count() == 8 else _finish(_start(8))
    one = _finish(one)
    assert (one["devices"], eight["devices"]) == (1, 8)
    assert [r["method"] for r in one["rows"]] == ["original", "retrain", "ssd"]
    for r1, r8 in zip(one["rows"], eight["rows"]):
        assert r1["method"] == r8["method"]
        for col in ("forget_score", "final_score", "models_acc_retain_train", "models_acc_retain_test"):
            assert r1[col] == pytest.approx(r8[col], abs=1e-6), (r1["method"], col)
    for method, eps in one["epsilons"].items():
        np.testing.assert_allclose(eps, eight["epsilons"][method], atol=1e-6, err_msg=method)
    assert one["rows"][0]["forget_score"] < one["rows"][1]["forget_score"]  # original below the ceiling
    # the example axis split over 8 devices (psum / pmean) gives the one-device result and the numpy reference
    for name, want in _numpy_example_sums().items():
        for leaf in want:
            np.testing.assert_allclose(eight["example_sums"][name][leaf], one["example_sums"][name][leaf],
                                       rtol=1e-5, atol=1e-7, err_msg=f"{name} 1 vs 8 devices")
            np.testing.assert_allclose(eight["example_sums"][name][leaf], want[leaf], rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} vs numpy")


def test_model_axis_is_spread_over_the_devices_and_padded():
    mesh = sharding.model_mesh()
    d = jax.device_count()
    assert sharding.padded_count(5, mesh) == -(-5 // d) * d and sharding.padded_count(d, mesh) == d
    key = jax.random.key(3)
    keys = sharding.model_keys(key, 2 * d, mesh)
    # model i's key does not depend on how many models there are (padding leaves the first N unchanged)
    np.testing.assert_array_equal(jax.random.key_data(keys[:d]), jax.random.key_data(sharding.model_keys(key, d)))
    out = jax.jit(jax.vmap(lambda k: jax.random.normal(k, (3,)).sum()))(keys)
    assert len(out.sharding.device_set) == d
    np.testing.assert_array_equal(sharding.to_host({"a": out})["a"], np.asarray(out))
    # groups of the model axis: one model per device at a time, same results and sharding as all at once
    program = jax.jit(jax.vmap(lambda k, scale: (scale * jax.random.normal(k, (3,)), jax.random.uniform(k)),
                               in_axes=(0, None)))
    grouped = sharding.map_groups(program, keys, 2.0, group_size=1)
    for a, b in zip(grouped, program(keys, 2.0)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.sharding.is_equivalent_to(out.sharding, a.ndim)
    assert sharding.group_size(1 << 20, "cpu") == sharding.CPU_GROUP_BYTES >> 20
    assert sharding.group_size(1 << 40, "cpu") == 1 and sharding.group_size(1 << 20, "gpu") is None
    with pytest.raises(ValueError, match="reduce"):
        sharding.shard_examples(lambda x: x, sharding.example_mesh(), reduce="max")
    if d > 1:
        with pytest.raises(ValueError, match="not a multiple"):
            sharding.shard_models(jnp.zeros((d + 1, 2)), mesh)
        with pytest.raises(ValueError, match="multiple of the"):
            sharding.shard_examples(lambda x: x.sum(0), sharding.example_mesh(), reduce="sum")(jnp.ones((d + 1, 2)))
    with pytest.raises(ValueError, match="at least 1"):
        sharding.padded_count(0, mesh)


if __name__ == "__main__":  # the subprocess side of test_scores_are_the_same_on_one_and_eight_devices
    json.dump(_scores(), sys.stdout)
