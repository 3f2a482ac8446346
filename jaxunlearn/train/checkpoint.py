"""Checkpoints: any pytree as flax msgpack bytes, written atomically.

``save_checkpoint`` writes through :func:`jaxunlearn.io.atomic_write_bytes`
(temporary file, fsync, ``os.replace``): a reader sees either the old file or
the complete new one, never a partial write. :func:`tree_bytes` and
:func:`tree_from_bytes` are the same encoding in memory, for stores that write
several files as one unit (the model cache, :mod:`jaxunlearn.experiments.cache`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from flax import serialization

from jaxunlearn.io import atomic_write_bytes


def tree_bytes(tree: Any) -> bytes:
    """``tree`` (params, variables, a ``TrainState``, ...) as msgpack bytes (``flax.serialization.to_bytes``:
    arrays with their dtype and shape; NamedTuples such as optax states are supported)."""
    return serialization.to_bytes(tree)


def tree_from_bytes(payload: bytes, target: Any = None, source: str = "the checkpoint") -> Any:
    """Decode :func:`tree_bytes` output.

    Args:
      payload: the bytes.
      target: a pytree of the saved structure (arrays or ``jax.ShapeDtypeStruct`` leaves, e.g. freshly
        initialised variables); the result then has its structure and container types, and every array
        leaf must have the target leaf's shape and dtype. ``None``: the raw nested dict of numpy arrays.
      source: what the bytes are, for the error message.

    Returns:
      The restored pytree.

    Raises:
      ValueError: the bytes cannot be decoded, or do not match ``target``'s structure, shapes or dtypes.
    """
    try:
        if target is None:
            return serialization.msgpack_restore(payload)
        restored = serialization.from_bytes(target, payload)
    except (ValueError, KeyError, TypeError) as err:  # msgpack's errors for garbled bytes are ValueErrors too
        raise ValueError(
            f"{source} does not match the structure of target: {err}. "
            "Pass a target built like the saved tree (same model and optimizer), or target=None for the raw dict."
        ) from err
    for path, want, got in _leaf_pairs(target, restored):
        if hasattr(want, "shape") and (np.shape(got) != tuple(want.shape) or np.asarray(got).dtype != want.dtype):
            raise ValueError(f"{source} does not match the structure of target: {path} has shape "
                             f"{np.shape(got)} {np.asarray(got).dtype}, the target {tuple(want.shape)} {want.dtype}.")
    return restored


def _leaf_pairs(target: Any, restored: Any) -> list[tuple[str, Any, Any]]:
    want = jax.tree_util.tree_flatten_with_path(target)[0]
    got = jax.tree.leaves(restored)
    if len(want) != len(got):
        raise ValueError(f"the restored tree has {len(got)} leaves, the target {len(want)}.")
    return [(jax.tree_util.keystr(p), w, g) for (p, w), g in zip(want, got)]


def save_checkpoint(path: str | os.PathLike, tree: Any) -> str:
    """Serialise ``tree`` (params, variables, a ``TrainState``, ...) to ``path`` atomically; returns the path.

    Parent folders are created. Arrays are stored with their dtype and shape (:func:`tree_bytes`).
    """
    return atomic_write_bytes(path, tree_bytes(tree))


def load_checkpoint(path: str | os.PathLike, target: Any = None) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint`.

    With ``target`` (a pytree of the saved structure, e.g. freshly initialised
    variables) the result has ``target``'s structure and container types;
    without it, the raw nested dict of numpy arrays. Raises ``FileNotFoundError``
    for a missing file and ``ValueError`` when the file does not match ``target``
    (structure, shapes or dtypes; :func:`tree_from_bytes`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}; write one with save_checkpoint(path, tree).")
    with open(path, "rb") as f:
        payload = f.read()
    return tree_from_bytes(payload, target, f"checkpoint {path!r}")
