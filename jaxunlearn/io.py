"""Result files a reader can trust: atomic single files and whole result folders.

Single files (checkpoints, plots, benchmark JSON) go through
:func:`atomic_write_bytes`: write to a hidden temporary file beside the target
(``.<name>.<random>.partial``, which no ``*.json``/``*.csv``/``*.png`` glob
matches), flush and fsync, then ``os.replace`` it over the target.

A result folder (``results.json``, ``summary.csv``, ``comparison.png`` of one
run) goes through :func:`write_folder_atomically`: every file is written into
a fresh hidden folder beside the target, ``.<name>.partial-<run id>``, then a
``manifest.json`` is written last (run id, file names, sizes, sha256), and the
folder is swapped into place as a whole:

1. the old folder is renamed aside to ``.<name>.old-<run id>``;
2. the new folder is renamed to ``<name>``;
3. the old folder is deleted.

Each rename is atomic, so a reader of ``<name>`` sees the whole old run or the
whole new run, never a mix. The one instant between steps 1 and 2 (two
``rename`` calls, microseconds apart) ``<name>`` does not exist; a process
killed exactly there leaves the old run under ``.<name>.old-<run id>``, and the
next write (or :func:`sweep_leftovers`) renames it back before anything else.
Leftovers of killed runs (partial folders, old folders, temporary files) are
swept by the next write to the same target once the process that made them
has ended. :func:`verify_folder` checks a folder against its manifest.

JSON is strict: NaN and infinities are written as ``null`` (no bare ``NaN``
token that strict parsers reject).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

#: Name of the manifest :func:`write_folder_atomically` writes last into every result folder.
MANIFEST = "manifest.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    """fsync a folder so that renames inside it survive a crash (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: str, payload: bytes) -> None:
    """Create ``path`` (which must not exist) with ``payload``, flushed and fsynced, mode ``0o666 & ~umask``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> str:
    """Write ``payload`` to ``path`` atomically: a reader sees the old file or the whole new one.

    Args:
      path: the target file; its parent folders are created.
      payload: the bytes to write.

    Returns:
      ``path`` as a string.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy/jax scalars and arrays as numbers and lists and every NaN/inf as ``None``.

    Args:
      obj: nested dicts, lists, tuples, numbers, strings, ``None`` and objects with ``tolist()``.

    Returns:
      The same structure built from JSON types only (tuples become lists).

    Raises:
      TypeError: for an object JSON cannot hold.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def json_bytes(obj: Any) -> bytes:
    """Strict JSON (2-space indentation, NaN/inf as ``null``, see :func:`to_jsonable`) as UTF-8 bytes."""
    return (json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n").encode("utf-8")


def csv_bytes(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """CSV of ``rows`` (header: every key in first-seen order) as UTF-8 bytes."""
    rows = list(rows)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def figure_bytes(fig: Any, fmt: str = "png", dpi: int = 120) -> bytes:
    """``fig.savefig`` into memory in format ``fmt``; returns the bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> str:
    """:func:`json_bytes` of ``obj`` written with :func:`atomic_write_bytes`; returns the path."""
    return atomic_write_bytes(path, json_bytes(obj))


def atomic_write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> str:
    """:func:`csv_bytes` of ``rows`` written with :func:`atomic_write_bytes`; returns the path."""
    return atomic_write_bytes(path, csv_bytes(rows))


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> str:
    """:func:`figure_bytes` (format from the extension of ``path``), then :func:`atomic_write_bytes`."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    return atomic_write_bytes(path, figure_bytes(fig, fmt, dpi))


# ---- whole result folders -------------------------------------------------------------------------------

def new_run_id() -> str:
    """A fresh run id ``<UTC time>-<pid>-<random hex>``; :func:`sweep_leftovers` reads the pid back."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_of(run_id: str) -> int | None:
    parts = run_id.split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _leftovers(target: str) -> list[tuple[str, str, str]]:
    """``(kind, run id, path)`` of the partial/old folders and temporary files of ``target`` in its parent."""
    parent, name = os.path.split(target)
    out = []
    try:
        entries = os.listdir(parent)
    except FileNotFoundError:
        return out
    for entry in entries:
        for kind in ("partial", "old"):
            prefix = f".{name}.{kind}-"
            if entry.startswith(prefix):
                out.append((kind, entry[len(prefix):], os.path.join(parent, entry)))
    return out


def sweep_leftovers(target: str | os.PathLike) -> list[str]:
    """Clean up after writes to ``target`` killed by a signal or a crash.

    A ``.<name>.old-<run id>`` found while ``<name>`` is missing (a kill between
    the two renames of the swap) is renamed back to ``<name>``; every other
    leftover folder whose run id names a process that has ended is deleted.
    Leftovers of a live process (a concurrent writer) are kept.

    Args:
      target: the result folder.

    Returns:
      The paths removed or restored.
    """
    target = os.path.abspath(os.fspath(target))
    done = []
    leftovers = [lo for lo in _leftovers(target) if not _alive(_pid_of(lo[1]))]
    olds = sorted((lo for lo in leftovers if lo[0] == "old"), key=lambda lo: lo[1], reverse=True)
    if olds and not os.path.lexists(target):
        os.rename(olds[0][2], target)
        done.append(olds[0][2])
        leftovers.remove(olds[0])
    for _, _, path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
        done.append(path)
    return done


def _sha256(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def check_replaceable(target: str | os.PathLike, names: Iterable[str]) -> None:
    """Raise unless replacing the folder ``target`` loses only result files: ``names``, the manifest, and the
    files its manifest lists.

    Args:
      target: the result folder (it may be missing).
      names: the file names the new run writes.

    Raises:
      NotADirectoryError: ``target`` exists and is not a folder.
      FileExistsError: ``target`` holds other entries (a user's notes, another tool's output), which a
        replacement would delete.
    """
    target = os.fspath(target)
    if not os.path.lexists(target):
        return
    if not os.path.isdir(target):
        raise NotADirectoryError(f"{target} exists and is not a folder; remove it or choose another output folder.")
    allowed = set(names) | {MANIFEST}
    try:
        with open(os.path.join(target, MANIFEST), "rb") as f:
            allowed |= set(json.loads(f.read()).get("files", {}))
    except (OSError, ValueError, AttributeError):
        pass
    foreign = sorted(set(os.listdir(target)) - allowed)
    if foreign:
        raise FileExistsError(
            f"{target} holds {foreign[:5]}{' ...' if len(foreign) > 5 else ''}, which this run did not write; "
            f"a new run replaces the whole folder, so move them away or choose another output folder."
        )


def write_folder_atomically(target: str | os.PathLike, files: Mapping[str, bytes], *,
                            run_id: str | None = None) -> list[str]:
    """Replace the folder ``target`` by one holding exactly ``files`` plus a ``manifest.json``, as a whole.

    The steps and the one instant of the swap are in the module doc. On any
    error before the swap the new folder is removed and ``target`` is left as
    it was.

    Args:
      target: the result folder; its parent folders are created. An existing
        ``target`` is replaced entirely, so it may hold only result files
        (:func:`check_replaceable`).
      files: file name (no folders) -> bytes. ``manifest.json`` is reserved.
      run_id: the id recorded in the manifest and the temporary names
        (default :func:`new_run_id`).

    Returns:
      The paths of the files in ``target``, manifest last.
    """
    target = os.path.abspath(os.fspath(target))
    run_id = run_id or new_run_id()
    for name in files:
        if name == MANIFEST or not name or os.path.basename(name) != name or name.startswith("."):
            raise ValueError(f"invalid result file name {name!r}: a plain file name other than {MANIFEST}.")
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    sweep_leftovers(target)
    check_replaceable(target, files)
    partial = os.path.join(parent, f".{name}.partial-{run_id}")
    old = os.path.join(parent, f".{name}.old-{run_id}")
    os.mkdir(partial)
    try:
        entries = {}
        for fname, payload in files.items():
            path = os.path.join(partial, fname)
            _write_file(path, payload)
            entries[fname] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        manifest = {"run_id": run_id, "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "files": entries}
        _write_file(os.path.join(partial, MANIFEST), json_bytes(manifest))
        _fsync_dir(partial)
        had_old = os.path.isdir(target)
        if had_old:
            os.rename(target, old)          # swap, step 1: from here until step 2, `target` does not exist
        try:
            os.rename(partial, target)      # swap, step 2
        except BaseException:
            if had_old and not os.path.lexists(target):
                os.rename(old, target)
            raise
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)  # swap, step 3
    return [os.path.join(target, f) for f in files] + [os.path.join(target, MANIFEST)]


def verify_folder(folder: str | os.PathLike) -> dict:
    """Check that ``folder`` is one whole run: its manifest parses and every file matches it.

    Args:
      folder: a folder written by :func:`write_folder_atomically`.

    Returns:
      The manifest (``run_id``, ``written_utc``, ``files``: name -> bytes, sha256).

    Raises:
      ValueError: no manifest, a file missing or of another size or hash, or a file the manifest does not list.
    """
    folder = os.fspath(folder)
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder} has no readable {MANIFEST} ({type(err).__name__}: {err}).") from None
    listed = manifest.get("files", {})
    present = set(os.listdir(folder)) - {MANIFEST}
    if present != set(listed):
        raise ValueError(f"{folder} holds {sorted(present)} but its manifest lists {sorted(listed)}.")
    for fname, meta in listed.items():
        size, digest = _sha256(os.path.join(folder, fname))
        if size != meta["bytes"] or digest != meta["sha256"]:
            raise ValueError(f"{folder}/{fname} does not match the manifest of run {manifest.get('run_id')}.")
    return manifest


def check_output_folder(path: str | os.PathLike) -> str:
    """Check that the folder ``path`` can be created (if missing) and written, without leaving anything behind.

    Creates the missing folders, writes and deletes a probe file in ``path``,
    and removes the folders it created.

    Args:
      path: the output folder.

    Returns:
      ``path`` as an absolute path.

    Raises:
      ValueError: ``path`` or one of its parents is a regular file, or the folder cannot be created or written
        (the message says which and why).
    """
    path = os.path.abspath(os.fspath(path))
    probe = path
    while not os.path.exists(probe):
        up = os.path.dirname(probe)
        if up == probe:
            break
        probe = up
    if not os.path.isdir(probe):
        where = "is" if probe == path else "is under"
        raise ValueError(f"output folder {path} {where} a regular file ({probe}); choose another folder.")
    created = []
    try:
        missing = []
        p = path
        while p != probe:
            missing.append(p)
            p = os.path.dirname(p)
        for p in reversed(missing):
            os.mkdir(p)
            created.append(p)
        fd, tmp = tempfile.mkstemp(prefix=".write-probe-", suffix=".partial", dir=path)
        os.close(fd)
        os.remove(tmp)
    except OSError as err:
        raise ValueError(f"output folder {path} cannot be created or written ({err.strerror or err}).") from None
    finally:
        for p in reversed(created):
            try:
                os.rmdir(p)
            except OSError:
                pass
    return path


def can_connect(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup included).

    Args:
      host: a host name or address.
      port: a TCP port.
      timeout: the limit on the lookup and the connect together, seconds.

    Returns:
      Whether the connection opened.
    """
    import threading

    result = []

    def attempt():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])
