"""The model axis on a device mesh (``jaxunlearn.sharding``): the same scores on one device and on eight.

The suite runs with eight fake CPU devices (``tests/conftest.py``); the one-device run is this file run as a
script in a subprocess with its own ``XLA_FLAGS``, started first so that the two runs overlap.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import sharding


def _scores() -> dict:
    """Many-model scores of SSD with N = 4 on every visible device (on 8 devices the 4 models are padded to 8)."""
    from jaxunlearn.experiments import ForgettingConfig
    from jaxunlearn.experiments.many_models import run_many_models

    mesh = sharding.model_mesh()
    config = ForgettingConfig(methods=("ssd",), seeds=(0,), epochs=1)
    result = run_many_models(config, 0, 4, mesh=mesh, progress=False, log=lambda m: None)
    return {"devices": int(mesh.devices.size), "rows": result.rows,
            "epsilons": {k: v.tolist() for k, v in result.epsilons.items()}}


def _start(devices: int) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
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
    if d > 1:
        with pytest.raises(ValueError, match="not a multiple"):
            sharding.shard_models(jnp.zeros((d + 1, 2)), mesh)
    with pytest.raises(ValueError, match="at least 1"):
        sharding.padded_count(0, mesh)


if __name__ == "__main__":  # the subprocess side of test_scores_are_the_same_on_one_and_eight_devices
    json.dump(_scores(), sys.stdout)
