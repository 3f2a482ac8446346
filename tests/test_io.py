"""Atomic files and whole result folders (jaxunlearn.io): strict JSON, no stray temporary files, and a folder
that holds one run, the old or the new, whatever kills the writer and wherever."""

import fnmatch
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jaxunlearn import io as jio


def _strict_loads(text):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftovers(parent):
    return [e for e in os.listdir(parent) if e.startswith(".")]


# ---- single files -------------------------------------------------------------------------------------

def test_json_is_strict_nan_and_inf_become_null(tmp_path):
    obj = {"a": float("nan"), "b": [1.0, float("inf"), -math.inf], "c": np.float32("nan"), "d": np.arange(3),
           "e": (np.int64(4), None, "x")}
    path = jio.atomic_write_json(tmp_path / "r.json", obj)
    text = Path(path).read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert _strict_loads(text) == {"a": None, "b": [1.0, None, None], "c": None, "d": [0, 1, 2], "e": [4, None, "x"]}
    with pytest.raises(TypeError, match="cannot write object"):
        jio.json_bytes({"x": object()})


def test_temporary_files_match_no_result_glob(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        raise KeyboardInterrupt  # killed just before the rename

    monkeypatch.setattr(os, "replace", spy)
    for name in ("results.json", "summary.csv", "plot.png"):
        with pytest.raises(KeyboardInterrupt):
            jio.atomic_write_bytes(tmp_path / name, b"{}")
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(seen) == 3
    for tmp in seen:
        assert tmp.startswith(".") and not any(fnmatch.fnmatch(tmp, g) for g in ("*.json", "*.csv", "*.png"))
    assert os.listdir(tmp_path) == []  # cleaned up after the interruption


# ---- result folders ------------------------------------------------------------------------------------

def _files(tag, n=3):
    return {f"f{i}.json": json.dumps({"run": tag, "i": i}).encode() for i in range(n)}


def _run_of(folder):
    manifest = jio.verify_folder(folder)
    runs = {_strict_loads(Path(folder, f).read_text())["run"] for f in manifest["files"]}
    assert len(runs) == 1, f"files of several runs in one folder: {runs}"
    return runs.pop(), manifest


def test_folder_swap_replaces_the_whole_folder_and_writes_a_manifest(tmp_path):
    target = tmp_path / "out" / "digits-class_3"
    jio.write_folder_atomically(target, _files("old", 4), run_id="run-1-a")
    paths = jio.write_folder_atomically(target, _files("new", 2), run_id="run-2-b")
    assert paths[-1].endswith("manifest.json")
    run, manifest = _run_of(target)
    assert run == "new" and manifest["run_id"] == "run-2-b" and sorted(os.listdir(target)) == [
        "f0.json", "f1.json", "manifest.json"]
    assert set(manifest["files"]) == {"f0.json", "f1.json"} and manifest["files"]["f0.json"]["bytes"] > 0
    assert _leftovers(target.parent) == []
    (target / "f1.json").write_text('{"run": "tampered"}')
    with pytest.raises(ValueError, match="does not match the manifest"):
        jio.verify_folder(target)
    (target / "extra.json").write_text("{}")
    with pytest.raises(ValueError, match="manifest lists"):
        jio.verify_folder(target)


def test_folder_target_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "res").write_text("a file")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        jio.write_folder_atomically(tmp_path / "res", _files("x"))
    with pytest.raises(ValueError, match="manifest.json"):
        jio.write_folder_atomically(tmp_path / "ok", {"manifest.json": b"{}"})


def test_failure_writing_the_second_file_keeps_the_old_run(tmp_path, monkeypatch):
    target = tmp_path / "res"
    jio.write_folder_atomically(target, _files("old"))
    real, calls = jio._write_file, []

    def second_fails(path, payload):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, payload)

    monkeypatch.setattr(jio, "_write_file", second_fails)
    with pytest.raises(OSError, match="No space"):
        jio.write_folder_atomically(target, _files("new"))
    assert _run_of(target)[0] == "old" and _leftovers(tmp_path) == []


def test_failure_between_the_two_renames_restores_the_old_run(tmp_path, monkeypatch):
    target = tmp_path / "res"
    jio.write_folder_atomically(target, _files("old"))
    real, calls = os.rename, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "I/O error")
        real(src, dst)

    monkeypatch.setattr(os, "rename", second_rename_fails)
    with pytest.raises(OSError, match="I/O"):
        jio.write_folder_atomically(target, _files("new"))
    monkeypatch.setattr(os, "rename", real)
    assert _run_of(target)[0] == "old" and _leftovers(tmp_path) == []


def test_next_run_sweeps_what_a_killed_run_left(tmp_path):
    """A kill between the two renames leaves only `.res.old-<id>`: the next write restores, then replaces it;
    a kill while writing leaves `.res.partial-<id>`: swept. A live writer's partial folder is left alone."""
    target = tmp_path / "res"
    jio.write_folder_atomically(target, _files("old"))
    dead = _dead_pid()
    os.rename(target, tmp_path / f".res.old-20000101T000000Z-{dead}-aa")
    (tmp_path / f".res.partial-20000101T000001Z-{dead}-bb").mkdir()
    (tmp_path / f".res.partial-20000101T000001Z-{dead}-bb" / "f0.json").write_text('{"run": "half')
    live = tmp_path / f".res.partial-20000101T000002Z-{os.getppid()}-cc"
    live.mkdir()
    assert not target.exists()
    swept = jio.sweep_leftovers(target)
    assert len(swept) == 2 and _run_of(target)[0] == "old"
    assert _leftovers(tmp_path) == [live.name]
    jio.write_folder_atomically(target, _files("new"))
    assert _run_of(target)[0] == "new" and _leftovers(tmp_path) == [live.name]


_WRITER = textwrap.dedent("""
    import sys, time
    from jaxunlearn import io as jio
    target, pause = sys.argv[1], float(sys.argv[2])
    real = jio._write_file
    def slow(path, payload):
        real(path, payload)
        time.sleep(pause)  # a slow disk: the kill lands between or during file writes
    jio._write_file = slow
    run = 0
    while True:
        run += 1
        jio.write_folder_atomically(target, {f"f{i}.json": ('{"run": "%d", "i": %d}' % (run, i)).encode()
                                             for i in range(4)})
""")


@pytest.mark.parametrize("kill_after", [0.05, 0.13, 0.27, 0.41, 0.66])
def test_sigkill_at_any_moment_leaves_one_whole_run(tmp_path, kill_after):
    target = tmp_path / "res"
    jio.write_folder_atomically(target, _files("0"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), "0.02"], env=env)
    try:
        deadline = time.time() + 30
        while not any(e.startswith(".res.partial-") for e in os.listdir(tmp_path)):  # the writer has started
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.005)
        time.sleep(kill_after)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if target.exists():  # what a reader finds right after the kill: one whole run
        _run_of(target)
    jio.sweep_leftovers(target)  # the next run's first step
    _run_of(target)
    assert _leftovers(tmp_path) == []
    jio.write_folder_atomically(target, _files("next"))
    assert _run_of(target)[0] == "next" and _leftovers(tmp_path) == []


# ---- output folder check and the connectivity probe ------------------------------------------------------

def test_check_output_folder(tmp_path, monkeypatch):
    nested = tmp_path / "a" / "b" / "c"
    assert jio.check_output_folder(nested) == str(nested)
    assert not (tmp_path / "a").exists()  # checked, nothing left behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a regular file"):
        jio.check_output_folder(tmp_path / "file")
    with pytest.raises(ValueError, match="is under a regular file"):
        jio.check_output_folder(tmp_path / "file" / "sub")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(jio.tempfile, "mkstemp", denied)
    with pytest.raises(ValueError, match="cannot be created or written.*Permission denied"):
        jio.check_output_folder(tmp_path / "x" / "y")
    assert not (tmp_path / "x").exists()


def test_can_connect_on_the_loopback_only():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert jio.can_connect("127.0.0.1", port, timeout=2.0)
    finally:
        server.close()
    start = time.perf_counter()
    assert not jio.can_connect("127.0.0.1", port, timeout=2.0)  # closed now: refused at once
    assert time.perf_counter() - start < 2.5


def test_a_folder_holding_foreign_files_is_not_replaced(tmp_path):
    target = tmp_path / "res"
    target.mkdir()
    (target / "f0.json").write_text("{}")  # an older run without a manifest: replaceable
    jio.write_folder_atomically(target, _files("a"))
    (target / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="notes.txt"):
        jio.write_folder_atomically(target, _files("b"))
    assert (target / "notes.txt").read_text() == "my notes" and _leftovers(tmp_path) == []
