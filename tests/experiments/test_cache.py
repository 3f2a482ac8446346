"""The model cache: a second identical run trains nothing and gives the same numbers; a damaged entry is found
by its checksum and trained again; the key holds every input of training."""

import functools
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

from jaxunlearn import cli
from jaxunlearn.experiments import classification
from jaxunlearn.experiments.cache import ModelCache, data_sha256, default_cache_dir, key_hash, model_key

ARGS = ["forget", "--methods", "ssd", "--seeds", "0", "--epochs", "2", "--cold-timing", "--quiet"]


def shared_cache(tmp_path_factory):
    """The cache folder the CLI tests of this worker share (same tiny run: the models train once)."""
    return tmp_path_factory.getbasetemp() / "jaxunlearn-test-cache"


def _metrics(path):
    rows = json.loads(path.read_text())["rows"]
    return {r["method"]: {k: v for k, v in r.items() if k not in ("seconds", "speedup", "from_cache")} for r in rows}


pytestmark = pytest.mark.xdist_group("cache")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two identical runs of ``jaxunlearn forget`` on one cache, with the calls of the training function counted
    (once per process: xdist may tear a module fixture down between the tests of one module)."""
    return _runs(tmp_path_factory.getbasetemp() / "cache_runs", shared_cache(tmp_path_factory))


@functools.cache
def _runs(base, cache):
    shutil.rmtree(cache, ignore_errors=True)  # counting the training calls needs an empty cache
    calls = []
    real = classification.train_classifier
    mp = pytest.MonkeyPatch()
    mp.setattr(classification, "train_classifier", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    results, counts = [], []
    try:
        for i in range(2):
            out = base / f"out{i}"
            assert cli.main([*ARGS, "--out", str(out), "--cache-dir", str(cache)]) == 0
            counts.append(len(calls))
            results.append(out / "digits-class_3" / "results.json")
    finally:
        mp.undo()
    return {"base": base, "cache": cache, "results": results, "calls": calls, "counts": counts}


def test_a_second_identical_run_trains_nothing_and_gives_the_same_numbers(runs):
    first, second = runs["counts"][0], runs["counts"][1] - runs["counts"][0]
    assert first == 2 and second == 0, runs["calls"]  # the original and the reference, once each
    assert _metrics(runs["results"][0]) == _metrics(runs["results"][1])
    rows = [{r["method"]: r for r in json.loads(p.read_text())["rows"]} for p in runs["results"]]
    for method in ("retrain", "ssd"):  # the reference's time and SSD's whole row come from the first run
        assert rows[0][method]["from_cache"] is False and rows[1][method]["from_cache"] is True
        assert rows[1][method]["seconds"] == rows[0][method]["seconds"]
    entries = sorted(os.listdir(runs["cache"]))
    assert [e.split("-")[0] for e in entries] == ["original", "retrain", "row"]


def test_a_damaged_entry_is_detected_and_trained_again(runs, monkeypatch):
    cache = runs["cache"]
    original = next(cache / e for e in os.listdir(cache) if e.startswith("original"))
    good = (original / "variables.msgpack").read_bytes()
    payload = bytearray(good)
    payload[len(payload) // 2] ^= 0xFF  # one flipped byte: still decodes, but the checksum differs
    (original / "variables.msgpack").write_bytes(bytes(payload))
    calls, messages = [], []
    real = classification.train_classifier
    monkeypatch.setattr(classification, "train_classifier", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    config = classification.ForgettingConfig(methods=("ssd",), seeds=(0,), epochs=2, warm_timing=False)
    run = classification.prepare_seed(config, 0, cache=ModelCache(str(cache), log=messages.append), progress=False,
                                      log=messages.append)
    assert calls == ["seed 0: original"], calls  # only the damaged entry is trained again
    assert any("damaged" in m and "does not match the manifest" in m for m in messages), messages
    # the same keys and data give the same model: the new entry holds the bytes the damaged one had
    assert (original / "variables.msgpack").read_bytes() == good
    assert original.name.endswith(run.model_hashes[0][:16])  # the entry of the key the run asked for
    # a truncated file or a missing manifest is caught the same way, and the entry dropped
    fields = json.loads((original / "entry.json").read_text())["key"]
    (original / "manifest.json").unlink()
    assert ModelCache(str(cache), log=messages.append).load(fields, {"w": np.zeros(3, np.float32)}) is None
    assert not original.exists() and "has no readable manifest.json" in messages[-1]


def test_the_key_holds_every_input_of_training():
    x, y = np.arange(12, dtype=np.float32).reshape(4, 3), np.array([0, 1, 0, 1])
    base = dict(role="retrain", seed=0, dataset="digits", x=x, y=y, model="mlp", num_classes=2, epochs=3,
                batch_size=8, learning_rate=1e-3)
    key = model_key(**base)
    reference = hashlib.sha256()
    for a in (x, y):
        reference.update(f"{a.shape}{a.dtype.str}\0".encode())
        reference.update(a.tobytes())
    assert key["data_sha256"] == reference.hexdigest() == data_sha256(x, y)
    assert key_hash(key) == hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    variants = [dict(role="original"), dict(seed=1), dict(x=x[::-1].copy()), dict(y=y[::-1].copy()),
                dict(model="lenet"), dict(epochs=4), dict(batch_size=16), dict(learning_rate=2e-3),
                dict(dataset="mnist")]
    hashes = {key_hash(model_key(**{**base, **v})) for v in variants}
    assert len(hashes) == len(variants) and key_hash(key) not in hashes
    assert {"jaxunlearn", "training_code_sha256", "jax", "flax", "optax"} <= set(key)


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == os.path.join(str(tmp_path), "jaxunlearn")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "jaxunlearn")
