"""Models and examples across devices: the model axis of many-model programs, the example axis of sums.

**The model axis.** :mod:`jaxunlearn.experiments.many_models` stacks ``N`` models on a leading *model axis*
(params, optimiser states, method states, keys) and runs one ``jax.vmap``-ed program over it. This module places
that axis on a 1-D :class:`jax.sharding.Mesh` over all devices with ``NamedSharding(mesh, P("models"))``: each
device holds ``N / D`` models, and because ``jax.jit`` propagates the input sharding through the vmapped program
(the mesh axis is ``AxisType.Auto``, so XLA's partitioner decides every intermediate), the methods, the trainer
and the metrics run data-parallel over models with no code change. The shared data stays replicated. Models
never communicate, so no collective is needed; the results are those of one device (``tests/test_sharding.py``
compares 1 and 8 devices).

``N`` not divisible by the device count ``D`` is padded: :func:`padded_count` rounds it up, the extra models
are trained and unlearned like the others and dropped before any metric. Their keys come from
:func:`model_keys`, ``fold_in(key, i)`` for model ``i``, so model ``i`` is the same model whatever ``N``,
``D`` and the padding.

**Groups of models.** On a CPU a vmapped program over many models is slower per model than one model at a
time once the models' parameters and optimiser states outgrow the caches: every step then streams all of them
through memory (digits MLP with Adam, about 1 MiB a model, on the project's 2-core CPU: an epoch of 64 models
in one program took 3x the time per model of 32 in one program). :func:`map_groups` runs one compiled program
over consecutive groups of the model axis (on each device its own models, group by group) and reassembles the
results in model order; :func:`group_size` picks the group from the bytes of one model:
:data:`CPU_GROUP_BYTES` per group on a CPU, every model at once on an accelerator.

**The example axis.** :func:`shard_examples` splits the examples of a sum or mean (a Fisher diagonal, SSD's
importances, the minibatch of a Hessian-vector product) over the devices of a 1-D ``"examples"`` mesh
(:func:`example_mesh`) with :func:`jax.shard_map`: each device reduces its share and a ``psum`` / ``pmean``
combines them, so the result is the one-device result up to the order of float additions.

**Several hosts.** Start the same command on every host after ``jax.distributed.initialize()``, which
connects the processes (auto-detected on Cloud TPU pods, SLURM and Open MPI; elsewhere pass
``coordinator_address``, ``num_processes`` and ``process_id``); ``jax.devices()`` then lists the devices of
all hosts, :func:`model_mesh` spans them and each host computes its slice of the models. On every host
(one line)::

    python -c "import jax, sys; jax.distributed.initialize(); from jaxunlearn.cli import main; sys.exit(main(['forget', '--models', '512', '--seeds', '0']))"

:func:`shard_models` builds the global arrays from each process's identical host copy and :func:`to_host`
gathers results with ``multihost_utils.process_allgather`` (the trainer's losses too). CPU-only hosts also need
``jax.config.update("jax_cpu_collectives_implementation", "gloo")`` before ``initialize``. Every process writes
the results folder, so give each host its own ``--out`` (or a local disk). Multi-host runs are not tested (no
machine here has several hosts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["AXIS", "CPU_GROUP_BYTES", "EXAMPLES", "example_mesh", "group_size", "map_groups", "model_keys",
           "model_mesh", "padded_count", "shard_examples", "shard_models", "to_host"]

#: The name of the mesh axis that holds the models.
AXIS = "models"

#: The name of the mesh axis that holds the examples of a sum (:func:`shard_examples`).
EXAMPLES = "examples"

#: On a CPU, :func:`group_size` puts this many bytes of per-model state (parameters and optimiser state) in one
#: group of models per device: about the L2 caches of a small CPU (4 digits MLPs with Adam). Measured on the
#: project's 2-core CPU (``benchmarks/many_models.py --group G``), the CPU time per model is about the Python
#: loop's at G = 2, 1.1x at G = 8, 1.2x at G = 16 and 2-4x with all 128 models in one program.
CPU_GROUP_BYTES = 4 << 20


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


def example_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis :data:`EXAMPLES` over ``devices`` (default: ``jax.devices()``), for :func:`shard_examples`."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty: give at least one device.")
    return Mesh(np.asarray(devices), (EXAMPLES,), axis_types=(AxisType.Auto,))


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


def group_size(bytes_per_model: int, platform: str | None = None) -> int | None:
    """How many models per device one program of :func:`map_groups` should hold.

    Args:
      bytes_per_model: the bytes one model carries through its steps (parameters plus optimiser or method state).
      platform: ``"cpu"``, ``"gpu"``, ... (default: ``jax.default_backend()``).

    Returns:
      On a CPU ``max(1, CPU_GROUP_BYTES // bytes_per_model)`` (module docstring); elsewhere ``None``: all models
      in one program, which is what an accelerator is for.
    """
    if (platform or jax.default_backend()) != "cpu":
        return None
    return max(1, CPU_GROUP_BYTES // max(1, int(bytes_per_model)))


def _model_devices(leaf: Any) -> tuple[int, Any]:
    """``(D, sharding)``: the number of devices the leading axis of ``leaf`` is split over along :data:`AXIS`
    (1 when it is not) and the ``NamedSharding`` to give the groups (``None`` when unsharded)."""
    sharding = getattr(leaf, "sharding", None)
    if isinstance(sharding, NamedSharding) and len(sharding.spec) and sharding.spec[0] == AXIS:
        return int(sharding.mesh.shape[AXIS]), NamedSharding(sharding.mesh, P(AXIS))
    return 1, None


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


@functools.cache
def _group_ops(devices: int, per_device: int, group: int, sharding: Any) -> tuple[Callable, Callable]:
    """``(take, assemble)`` for ``D = devices``: ``take(tree, j)`` is group ``j`` (on every device its models
    ``j g .. (j + 1) g - 1``), ``assemble(groups)`` puts a list of group outputs back in model order. Jitted once."""
    kwargs = {} if sharding is None else {"out_shardings": sharding}

    def take(tree, j):
        def one(a):
            a = a.reshape((devices, per_device) + a.shape[1:])
            return jax.lax.dynamic_slice_in_dim(a, j * group, group, axis=1).reshape((devices * group,) + a.shape[2:])

        return jax.tree.map(one, tree)

    def assemble(groups):
        def one(*parts):
            stacked = jnp.stack(parts).reshape((len(parts), devices, group) + parts[0].shape[1:])
            return jnp.swapaxes(stacked, 0, 1).reshape((devices * per_device,) + parts[0].shape[1:])

        return jax.tree.map(one, *groups)

    return jax.jit(take, **kwargs), jax.jit(assemble, **kwargs)


def map_groups(fn: Callable, models: Any, *args: Any, group_size: int | None = None) -> Any:
    """``fn(models, *args)`` computed group by group along the model axis, results in model order.

    ``fn`` maps a pytree whose leaves share a leading model axis ``M`` (and the shared ``args``) to a pytree
    whose leaves all have that leading axis, independently per model (a ``jax.vmap``-ed program): then
    ``map_groups(fn, models, *args, group_size=g) == fn(models, *args)``. Each device's ``N / D`` models
    (``D`` the devices the model axis is sharded over, 1 when it is not) are cut into groups of ``h`` models,
    ``h`` the largest divisor of ``N / D`` not above ``g``; group ``j`` holds models ``j h .. (j + 1) h - 1`` of
    every device, so it keeps the sharding, and ``fn`` (jitted once by the caller) compiles once for all groups.

    Args:
      fn: the per-model program, e.g. ``jax.jit(jax.vmap(one_model))``.
      models: pytree with leading model axis ``N`` (sharded with :func:`shard_models` or on one device).
      *args: shared inputs passed unchanged to every call.
      group_size: models per device in one call; ``None`` runs all of them in one call (:func:`group_size`).

    Returns:
      ``fn``'s output for all ``N`` models (model axis sharded as ``models``'s).
    """
    leaves = jax.tree.leaves(models)
    if not leaves:
        raise ValueError("models has no arrays: give a pytree with a leading model axis.")
    n = int(np.shape(leaves[0])[0])
    devices, sharding = _model_devices(leaves[0])
    per_device = n // devices
    group = per_device if group_size is None else _largest_divisor(per_device, int(group_size))
    if group >= per_device:
        return fn(models, *args)
    take, assemble = _group_ops(devices, per_device, group, sharding)
    return assemble([fn(take(models, j), *args) for j in range(per_device // group)])


def shard_examples(fn: Callable, mesh: Mesh, *, reduce: str = "mean") -> Callable:
    """``fn(data, *args)`` with the examples of ``data`` split over the devices of ``mesh``, combined by a collective.

    Each of the ``D`` devices of the :data:`EXAMPLES` axis computes ``fn(data_d, *args)`` on its ``N / D``
    consecutive examples (``data_d``), with ``args`` replicated, inside :func:`jax.shard_map`; then

    * ``reduce="sum"``:  ``sum_d fn(data_d, *args)`` (``psum``), e.g. :func:`jaxunlearn.curvature.chunked_sum`
      of per-chunk terms (SSD's importance sums);
    * ``reduce="mean"``: ``(1/D) sum_d fn(data_d, *args)`` (``pmean``), the mean over all ``N`` examples when
      ``fn`` is a mean over its examples and every device holds ``N / D`` of them: a Fisher diagonal
      (:func:`jaxunlearn.curvature.fisher_diagonal`, ``(1/N) sum_i g_i^2``), the Hessian-vector product of a
      minibatch's mean loss (:func:`jaxunlearn.curvature.hvp`).

    The ``args`` enter each device as *varying* values (``jax.lax.pcast``), so a gradient with respect to
    them is that device's own and the one collective is the ``psum`` / ``pmean`` above (without it
    ``jax.grad`` inside ``shard_map`` would already sum replicated parameters' gradients over devices).
    The result equals ``fn(data, *args)`` on one device up to float reassociation when ``fn`` is
    deterministic and its chunks line up with the shares (``batch_size`` dividing ``N / D`` for the
    per-batch estimators). A ``fn`` that draws randomness per chunk index sees each device's chunks numbered
    from 0: fold ``jax.lax.axis_index(EXAMPLES)`` into its key.

    Args:
      fn: ``fn(data, *args) -> pytree of arrays``; ``data`` a pytree with leading example axis.
      mesh: a mesh with axis :data:`EXAMPLES` (:func:`example_mesh`).
      reduce: ``"sum"`` or ``"mean"``.

    Returns:
      ``sharded(data, *args)``, jitted; ``ValueError`` naming ``data`` when its ``N`` is not a multiple of ``D``.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f'reduce must be "sum" or "mean"; got {reduce!r}.')
    if EXAMPLES not in mesh.axis_names:
        raise ValueError(f"mesh has axes {mesh.axis_names}, not {EXAMPLES!r}: build it with example_mesh().")
    d = int(mesh.shape[EXAMPLES])
    combine = jax.lax.psum if reduce == "sum" else jax.lax.pmean

    def local(data, *args):
        args = jax.tree.map(lambda a: jax.lax.pcast(a, EXAMPLES, to="varying"), args)
        return jax.tree.map(lambda a: combine(a, EXAMPLES), fn(data, *args))

    @jax.jit
    def sharded(data, *args):
        return jax.shard_map(local, mesh=mesh, in_specs=(P(EXAMPLES),) + (P(),) * len(args), out_specs=P())(
            data, *args)

    def call(data, *args):
        n = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in jax.tree.leaves(data)}
        if len(n) != 1 or min(n) < 0 or min(n) % d:
            raise ValueError(f"data must have one leading example axis with a multiple of the {d} devices of the "
                             f"mesh; got sizes {sorted(n)}: drop the last examples or use fewer devices.")
        return sharded(data, *args)

    return call
