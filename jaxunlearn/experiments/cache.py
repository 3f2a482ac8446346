"""A cache of trained models and result rows: originals and retrained references are trained once, and each
method's row computed once, then reused by later runs.

The key of an entry (:func:`model_key`) is every input that decides the trained
weights, written out as a dict and hashed (sha256 of its canonical JSON):

* ``role`` (``"original"`` or ``"retrain"``: which key of the seed trains it) and ``seed``;
* ``dataset`` and ``data_sha256``, the sha256 of the exact training arrays in
  their order (``x`` and ``y`` bytes, shapes and dtypes): for the reference the
  retain set, so the *scenario and split* are in the key through the data they
  select (two scenario strings naming the same split share an entry; a changed
  dataset never hits a stale one), and the original, trained on the whole
  training set, is shared by every scenario of a seed;
* ``model``, ``num_classes``; the training recipe ``epochs``, ``batch_size``,
  ``optimizer`` (``"adam"``) and ``learning_rate``;
* the version of the training code: ``jaxunlearn`` (the package version),
  ``training_code_sha256`` (the sha256 of the source of the training loop, the
  classifier training and the model's module, :data:`TRAINING_MODULES`, so any
  edit to them starts new entries) and the versions of ``jax``, ``flax`` and ``optax``.

An entry is a folder ``<root>/<role>-<dataset>-<model>-seed<seed>-<hash[:16]>/``
holding ``variables.msgpack`` (:func:`jaxunlearn.train.checkpoint.tree_bytes`),
``entry.json`` (the key, and what the run measured: the retraining seconds)
and ``manifest.json`` (sizes and sha256 of both), written as a whole by
:func:`jaxunlearn.io.write_folder_atomically`. A reader therefore finds a
whole entry or none; an entry whose files do not match their manifest
(corrupted on disk, edited by hand), whose key differs, or whose arrays do not
fit the model is reported, deleted and trained again, never loaded.

Why the existing writer and ``flax.serialization`` rather than orbax-checkpoint:
the models here are small single-host pytrees, read whole; orbax's strengths
(async and sharded multi-host saves, tensorstore arrays, step management) do
not apply, and it verifies no checksum, which the manifest gives for free. A
cache entry is then one msgpack file plus two small JSON files, readable
without orbax.

Result rows. Compiling each method's ``update`` costs more than the method
itself on small models (on digits it is most of a run once the models are
cached), so a method's row (its metrics and its measured time) is cached too,
under :func:`row_key`: the method, its resolved settings, the keys of the two
models, the timing mode and the sha256 of the whole library's source
(:func:`library_sha256`). Changing one setting reruns that method only; any
edit to the library reruns them all; ``reuse_rows=False`` (``jaxunlearn
forget --rerun-methods``) runs every method again on the cached models. A
row read from the cache says so (``from_cache``), and its time is the one
measured when it was computed.

The default root is ``$XDG_CACHE_HOME/jaxunlearn`` (``~/.cache/jaxunlearn``
when ``XDG_CACHE_HOME`` is unset): :func:`default_cache_dir`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import math
import os
import re
import shutil
from typing import Any, Callable

import jax
import numpy as np

import jaxunlearn
from jaxunlearn.io import json_bytes, verify_folder, write_folder_atomically
from jaxunlearn.train.checkpoint import tree_bytes, tree_from_bytes

def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/jaxunlearn``, or ``~/.cache/jaxunlearn`` when ``XDG_CACHE_HOME`` is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxunlearn")


#: The modules whose source decides how a classifier trains (with the model's own module: :func:`training_code_sha256`).
TRAINING_MODULES = ("jaxunlearn.train.loop", "jaxunlearn.train.classifier", "jaxunlearn.train.inputs",
                    "jaxunlearn.models.classifier", "jaxunlearn.models._common")


@functools.lru_cache(maxsize=None)
def training_code_sha256(model: str) -> str:
    """The sha256 of the source of the code that trains classifier ``model``: the modules of
    :data:`TRAINING_MODULES` and the module defining the model (names and bytes, in that order). Any edit to
    the training loop or the model starts new cache entries; edits elsewhere in the library keep them."""
    from jaxunlearn.models import MODELS

    names = (*TRAINING_MODULES, MODELS[model].__module__)
    h = hashlib.sha256()
    for name in names:
        h.update(f"{name}\0".encode())
        with open(inspect.getsourcefile(importlib.import_module(name)), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def data_sha256(x: Any, y: Any) -> str:
    """The sha256 of a training set's arrays, in order: shape, dtype and bytes of ``x`` then of ``y``."""
    h = hashlib.sha256()
    for array in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(f"{array.shape}{array.dtype.str}\0".encode())
        h.update(array.data)
    return h.hexdigest()


def model_key(*, role: str, seed: int, dataset: str, x: Any, y: Any, model: str, num_classes: int, epochs: int,
              batch_size: int, learning_rate: float, model_options: Any = None, optimizer: Any = None) -> dict:
    """The key of a trained model (module docstring): a dict of plain values.

    Args:
      role: ``"original"`` or ``"retrain"``.
      seed: the seed whose keys initialise and train the model.
      dataset: the dataset's name.
      x, y: the exact training arrays (the retain set for ``"retrain"``).
      model: the classifier's name; num_classes: its outputs.
      epochs, batch_size, learning_rate: the training recipe (Adam at ``learning_rate`` unless ``optimizer``).
      model_options: the classifier's further attributes (``stage_widths``, ...), a mapping of plain values.
      optimizer: the training optimizer as a table (:func:`jaxunlearn.experiments.registry.make_training_optimizer`).

    Returns:
      The key; :func:`key_hash` hashes it.
    """
    import flax
    import optax

    return {
        "role": role, "seed": int(seed), "dataset": dataset, "data_sha256": data_sha256(x, y), "model": model,
        "num_classes": int(num_classes), "epochs": int(epochs), "batch_size": int(batch_size),
        "optimizer": "adam" if optimizer is None else _plain(optimizer), "learning_rate": float(learning_rate),
        **({"model_options": _plain(model_options)} if model_options else {}), "jaxunlearn": jaxunlearn.__version__,
        "training_code_sha256": training_code_sha256(model), "jax": jax.__version__, "flax": flax.__version__,
        "optax": optax.__version__,
    }


def _plain(value: Any) -> Any:
    """``value`` with mappings as sorted dicts and sequences as lists: the same JSON for equal settings."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def key_hash(key: dict) -> str:
    """The sha256 of ``key``'s canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def library_sha256() -> str:
    """The sha256 of every source file of the ``jaxunlearn`` package (relative paths and bytes, sorted): the
    version of the code behind a cached result row."""
    root = os.path.dirname(os.path.abspath(jaxunlearn.__file__))
    h = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            h.update(f"{os.path.relpath(path, root)}\0".encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def row_key(*, method: str, seed: int, settings: dict, original: str, retrain: str, warm_timing: bool) -> dict:
    """The key of one method's result row: the method, its plain ``settings``, the :func:`key_hash` of the
    ``original`` and ``retrain`` models it starts from and is measured against (so the data, split, seed and
    training recipe), the timing mode, :func:`library_sha256` and the versions of ``jax``, ``flax``, ``optax``."""
    import flax
    import optax

    return {"role": "row", "method": method, "seed": int(seed), "settings": settings, "original": original,
            "retrain": retrain, "warm_timing": bool(warm_timing), "library_sha256": library_sha256(),
            "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}


class ModelCache:
    """Trained variables (one folder per :func:`model_key`) and result rows (one per :func:`row_key`) on disk
    under ``root`` (module docstring).

    Args:
      root: the cache folder (created on the first save).
      log: receives one line when an entry is found damaged and dropped.
      reuse_rows: read cached result rows (``False``: every method runs again; its new row is stored).
    """

    def __init__(self, root: str, log: Callable[[str], None] = print, reuse_rows: bool = True):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.log = log
        self.reuse_rows = reuse_rows

    def path(self, key: dict) -> str:
        """The folder of ``key``'s entry."""
        if key["role"] == "row":
            label = f"row-{key['method']}-seed{key['seed']}"
        else:
            label = f"{key['role']}-{key['dataset']}-{key['model']}-seed{key['seed']}"
        return os.path.join(self.root, f"{re.sub(r'[^A-Za-z0-9_.+-]', '_', label)}-{key_hash(key)[:16]}")

    def _read(self, key: dict, name: str | None = None) -> tuple[dict, bytes | None] | None:
        """``(entry.json, the bytes of file name)`` of ``key``'s entry after checking it against its manifest and
        its key; ``None`` for a missing entry; a damaged one is logged, deleted and ``None``."""
        folder = self.path(key)
        if not os.path.isdir(folder):
            return None
        try:
            verify_folder(folder)
            with open(os.path.join(folder, "entry.json"), "rb") as f:
                entry = json.loads(f.read())
            if entry.get("key") != json.loads(json.dumps(key)):
                raise ValueError("its key differs from the one asked for")
            payload = None
            if name is not None:
                with open(os.path.join(folder, name), "rb") as f:
                    payload = f.read()
        except (OSError, ValueError) as err:
            self._drop(folder, err)
            return None
        return entry, payload

    def _drop(self, folder: str, err: Exception) -> None:
        self.log(f"[cache] dropping the damaged entry {folder}: {err}; computing it again")
        shutil.rmtree(folder, ignore_errors=True)

    def load(self, key: dict, template: Any) -> tuple[Any, dict] | None:
        """``(variables, measured)`` of ``key``'s entry, or ``None`` when there is none or it is damaged.

        Args:
          key: the entry's key.
          template: variables of the same model (arrays or ``jax.ShapeDtypeStruct`` leaves): the structure,
            shapes and dtypes the stored variables must have.

        Returns:
          The variables (jax arrays, ``template``'s structure) and the ``measured`` dict stored with them, or
          ``None``: a missing entry, or a damaged one (files that do not match the manifest, another key,
          arrays that do not fit ``template``), which is logged and deleted.
        """
        found = self._read(key, "variables.msgpack")
        if found is None:
            return None
        entry, payload = found
        try:
            variables = tree_from_bytes(payload, template, f"{self.path(key)}/variables.msgpack")
        except ValueError as err:
            self._drop(self.path(key), err)
            return None
        return jax.tree.map(jax.numpy.asarray, variables), dict(entry.get("measured", {}))

    def save(self, key: dict, variables: Any, measured: dict | None = None) -> str:
        """Write ``variables`` (and ``measured``, plain numbers such as the retraining seconds) as ``key``'s
        entry, replacing any previous one as a whole; returns the entry's folder."""
        files = {"variables.msgpack": tree_bytes(jax.device_get(variables)),
                 "entry.json": json_bytes({"key": key, "measured": measured or {}})}
        write_folder_atomically(self.path(key), files)
        return self.path(key)

    def load_row(self, key: dict) -> dict | None:
        """The result row stored under the :func:`row_key` ``key`` (``None``: none, damaged, or ``reuse_rows``
        is off)."""
        if not self.reuse_rows:
            return None
        found = self._read(key)
        if found is None:
            return None
        return {k: math.nan if v is None else v for k, v in found[0].get("row", {}).items()}

    def save_row(self, key: dict, row: dict) -> str:
        """Store a result row (strict JSON: NaN as ``null``) under ``key``; returns the entry's folder."""
        write_folder_atomically(self.path(key), {"entry.json": json_bytes({"key": key, "row": row})})
        return self.path(key)
