"""The model axis across devices: many models trained, unlearned and evaluated data-parallel over models.

:mod:`jaxunlearn.experiments.many_models` stacks ``N`` models on a leading *model axis* (params, optimiser
states, method states, keys) and runs one ``jax.vmap``-ed program over it. This module places that axis on a
1-D :class:`jax.sharding.Mesh` over all devices with ``NamedSharding(mesh, P("models"))``: each device holds
``N / D`` models, and because ``jax.jit`` propagates the input sharding through the vmapped program (the mesh
axis is ``AxisType.Auto``, so XLA's partitioner decides every intermediate), the methods, the trainer and the
metrics run data-parallel over models with no code change. The shared data stays replicated. Models never
communicate, so no collective is needed; the results are those of one device (``tests/test_sharding.py``
compares 1 and 8 devices).

``N`` not divisible by the device count ``D`` is padded: :func:`padded_count` rounds it up, the extra models
are trained and unlearned like the others and dropped before any metric. Their keys come from
:func:`model_keys`, ``fold_in(key, i)`` for model ``i``, so model ``i`` is the same model whatever ``N``,
``D`` and the padding.

**Several hosts.** Start the same command on every host after ``jax.distributed.initialize()``, which
connects the processes (auto-detected on Cloud TPU pods, SLURM and Open MPI; elsewhere pass
``coordinator_address``, ``num_processes`` and ``process_id``); ``jax.devices()`` then lists the devices of
all hosts, :func:`model_mesh` spans them and each host computes its slice of the models. On every host
(one line)::

    python -c "import jax, sys; jax.distributed.initialize(); from jaxunlearn.cli import main;
    sys.exit(main(['forget', '--models', '512', '--seeds', '0']))"

:func:`shard_models` builds the global arrays from each process's identical host copy and :func:`to_host`
gathers results with ``multihost_utils.process_allgather``. Multi-host runs are not tested yet (no machine
here has several hosts), and one known gap remains: :func:`jaxunlearn.train.train_many_seeds` reads each
epoch's losses on the host with ``np.asarray``, which fails for arrays spread over hosts; it needs
:func:`to_host` there before the command above can work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["AXIS", "model_keys", "model_mesh", "padded_count", "shard_models", "to_host"]

#: The name of the mesh axis that holds the models.
AXIS = "models"


def model_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis :data:`AXIS` over ``devices``.

    Args:
      devices: the devices to spread the models over (default: ``jax.devices()``, every device of every host).

    Returns:
      The mesh (axis type ``Auto``: the partitioner places every intermediate of a jitted program).
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty: give at least one device.")
    return Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))


def padded_count(num_models: int, mesh: Mesh) -> int:
    """``num_models`` rounded up to a multiple of the mesh's device count (the extra models are dropped later).

    Args:
      num_models: ``N >= 1``.
      mesh: from :func:`model_mesh`.

    Returns:
      ``ceil(N / D) * D`` for ``D`` devices.
    """
    if int(num_models) < 1:
        raise ValueError(f"num_models must be at least 1; got {num_models}.")
    d = mesh.devices.size
    return -(-int(num_models) // d) * d


def model_keys(key: jax.Array, num_models: int, mesh: Mesh | None = None) -> jax.Array:
    """One key per model, ``fold_in(key, i)`` for model ``i``, sharded over ``mesh`` when given.

    Args:
      key: a PRNG key.
      num_models: the number of keys (with a mesh, a multiple of its device count: :func:`padded_count`).
      mesh: optional mesh from :func:`model_mesh`.

    Returns:
      ``[num_models]`` keys; key ``i`` does not depend on ``num_models``.
    """
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, np.arange(num_models, dtype=np.uint32))
    return keys if mesh is None else shard_models(keys, mesh)


def shard_models(tree: Any, mesh: Mesh) -> Any:
    """Place the leading (model) axis of every leaf of ``tree`` on ``mesh`` with ``NamedSharding(mesh, P("models"))``.

    Args:
      tree: pytree of arrays with the same leading size ``N`` (every process passes the same values).
      mesh: from :func:`model_mesh`.

    Returns:
      ``tree`` as global arrays, ``N / D`` models per device.

    Raises:
      ValueError: ``N`` is not a multiple of the device count ``D`` (pad with :func:`padded_count`).
    """
    sharding = NamedSharding(mesh, P(AXIS))
    d = mesh.devices.size

    def put(leaf):
        n = np.shape(leaf)[0] if np.ndim(leaf) else None
        if n is None or n % d:
            raise ValueError(f"the model axis has {n} models, not a multiple of the {d} devices of the mesh; "
                             f"train padded_count(N, mesh) = {padded_count(n or 1, mesh)} models and drop the extra.")
        if jax.process_count() == 1 or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
            return jax.device_put(leaf, sharding)  # one process, or already a global array: reshard
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):  # build the key data, then wrap it
            data = np.asarray(jax.random.key_data(leaf))
            global_data = jax.make_array_from_callback(data.shape, sharding, lambda i: data[i])
            return jax.random.wrap_key_data(global_data, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """Every leaf of ``tree`` as a numpy array on this host, gathered from all processes when there are several.

    Args:
      tree: pytree of (possibly sharded) arrays.

    Returns:
      The same pytree of numpy arrays.
    """
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)
