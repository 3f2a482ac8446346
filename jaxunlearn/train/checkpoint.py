"""Checkpoints: any pytree as flax msgpack bytes, written atomically.

``save_checkpoint`` writes to a temporary file in the destination folder,
flushes and fsyncs it, then ``os.replace``s it over ``path``: a reader sees
either the old file or the complete new one, never a partial write.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from flax import serialization


def save_checkpoint(path: str | os.PathLike, tree: Any) -> str:
    """Serialise ``tree`` (params, variables, a ``TrainState``, ...) to ``path`` atomically; returns the path.

    Parent folders are created. Arrays are stored with their dtype and shape
    (``flax.serialization.to_bytes``; NamedTuples such as optax states are supported).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = serialization.to_bytes(tree)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".msgpack", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, target: Any = None) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint`.

    With ``target`` (a pytree of the saved structure, e.g. freshly initialised
    variables) the result has ``target``'s structure and container types;
    without it, the raw nested dict of numpy arrays. Raises ``FileNotFoundError``
    for a missing file and ``ValueError`` when the file does not match ``target``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}; write one with save_checkpoint(path, tree).")
    with open(path, "rb") as f:
        payload = f.read()
    if target is None:
        return serialization.msgpack_restore(payload)
    try:
        return serialization.from_bytes(target, payload)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"checkpoint {path!r} does not match the structure of target: {err}. "
            "Pass a target built like the saved tree (same model and optimizer), or target=None for the raw dict."
        ) from err
