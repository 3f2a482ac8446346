"""Checkpoints: any pytree as flax msgpack bytes, written atomically.

``save_checkpoint`` writes through :func:`jaxunlearn.io.atomic_write_bytes`
(temporary file, fsync, ``os.replace``): a reader sees either the old file or
the complete new one, never a partial write.
"""

from __future__ import annotations

import os
from typing import Any

from flax import serialization

from jaxunlearn.io import atomic_write_bytes


def save_checkpoint(path: str | os.PathLike, tree: Any) -> str:
    """Serialise ``tree`` (params, variables, a ``TrainState``, ...) to ``path`` atomically; returns the path.

    Parent folders are created. Arrays are stored with their dtype and shape
    (``flax.serialization.to_bytes``; NamedTuples such as optax states are supported).
    """
    return atomic_write_bytes(path, serialization.to_bytes(tree))


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
