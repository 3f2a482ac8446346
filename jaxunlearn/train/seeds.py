"""Many seeds at once: ``jax.vmap`` of a whole training run over PRNG keys.

The reference models that unlearning metrics compare against are models
retrained without the forget set, ideally several seeds of them. For small
models the seeds train together: one compiled program initialises a group of
seeds and runs every epoch of :func:`jaxunlearn.train.loop.make_epoch`, vmapped
over the seed axis (own initialisation, own shuffle order, own dropout keys;
shared data), inside a ``lax.scan`` over epochs; so ``S`` seeds cost about one
run on an accelerator.

Seed ``s`` with key ``k_s`` is exactly (up to float reassociation under vmap)

    init_key, train_key = jax.random.split(k_s)
    state = init_train_state(init_fn(init_key), optimizer, model_state)
    fit(loss_fn, optimizer, state, data, key=train_key, ...)

The program is compiled once per configuration (``loss_fn``, ``optimizer`` and
``init_fn`` objects, batch size, epochs, data shapes, group size): a second call
with the same ones compiles nothing. On a CPU the seeds run in groups
(:func:`jaxunlearn.sharding.map_groups`, group size from
:func:`jaxunlearn.sharding.group_size`): one program over all of them would
stream every model's parameters and optimiser state through memory at each
step. The losses stay on the device until the run ends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import sharding
from jaxunlearn._validation import check_key, check_positive_int, num_examples
from jaxunlearn.train.inputs import as_arrays
from jaxunlearn.train.loop import (
    TrainLossFn,
    TrainState,
    _epoch_loss,
    _tree_nbytes,
    batch_sizes,
    epoch_order,
    init_train_state,
    make_epoch,
    scan_steps,
    split_train_key,
)

_STATIC = ("loss_fn", "optimizer", "init_fn", "batch_size", "num_epochs", "shuffle", "drop_remainder", "progress",
           "desc")


def _init_seed(key, model_state, *, optimizer, init_fn):
    """``(TrainState, shuffle_key, step_key)`` of the seed with key ``key``."""
    init_key, train_key = jax.random.split(key)
    shuffle_key, step_key = split_train_key(train_key)
    return init_train_state(init_fn(init_key), optimizer, model_state), shuffle_key, step_key


@functools.partial(jax.jit, static_argnames=_STATIC)
def _train_group(keys, data, model_state, *, loss_fn, optimizer, init_fn, batch_size, num_epochs, shuffle,
                 drop_remainder, progress, desc):
    """One group of seeds, the whole run: ``(TrainState [G, ...], step losses [G, num_epochs, steps])``."""
    n = num_examples(data, "data")
    state, shuffle_keys, step_keys = jax.vmap(
        functools.partial(_init_seed, optimizer=optimizer, init_fn=init_fn), in_axes=(0, None))(keys, model_state)
    epoch_fn = jax.vmap(make_epoch(loss_fn, optimizer, batch_size=batch_size, drop_remainder=drop_remainder),
                        in_axes=(0, None, 0, 0))

    def run_epoch(state, epoch):
        orders = jax.vmap(lambda k: epoch_order(k, epoch, n, shuffle))(shuffle_keys)
        return epoch_fn(state, data, orders, step_keys)

    state, losses = scan_steps(run_epoch, state, jnp.arange(num_epochs), progress=progress, desc=desc, every=1)
    return state, jnp.moveaxis(losses, 0, 1)


def train_many_seeds(
    loss_fn: TrainLossFn,
    optimizer: optax.GradientTransformation,
    init_fn: Callable[[Any], Any],
    data: Any,
    keys: Any,
    *,
    batch_size: int,
    num_epochs: int,
    model_state: Any = None,
    shuffle: bool = True,
    drop_remainder: bool = False,
    progress: bool = True,
    desc: str = "train seeds",
    seeds_per_group: int | str | None = "auto",
) -> tuple[TrainState, dict]:
    """Train one model per key in ``keys`` simultaneously (``jax.vmap`` over seeds, module docstring).

    Args:
      loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)`` as in :func:`fit`.
      optimizer: an ``optax.GradientTransformation``.
      init_fn: ``init_fn(key) -> params``, the initialisation of one seed.
      data: pytree of arrays with leading size ``N`` (or a ``Dataset``), shared by all seeds.
      keys: ``S`` PRNG keys stacked on a leading axis (``jax.random.split(key, S)``), on one device or sharded
        over a model mesh (:func:`jaxunlearn.sharding.shard_models`).
      batch_size, num_epochs, shuffle, drop_remainder: as in :func:`fit`.
      model_state: initial non-parameter state shared by all seeds (``{}`` when ``None``).
      progress: a tqdm bar over the epochs of each group, advanced from inside the compiled run.
      seeds_per_group: seeds (per device) in one vmapped program; ``None``: all of them; ``"auto"``:
        :func:`jaxunlearn.sharding.group_size` of one seed's parameters and optimiser state (groups on a CPU,
        all seeds at once on an accelerator).

    Returns:
      ``(state, history)``: a :class:`TrainState` whose leaves have a leading seed axis ``S``,
      ``history["loss"]`` of shape ``[S, num_epochs]`` and ``history["step_loss"]`` ``[S, num_epochs, steps]``
      (numpy, read from the device once at the end).
    """
    check_key(keys, "keys")
    if jnp.ndim(keys) != (1 if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) else 2):
        raise ValueError("keys must be a stack of PRNG keys with a leading seed axis, e.g. jax.random.split(key, 4).")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    if seeds_per_group is not None and not (isinstance(seeds_per_group, str) and seeds_per_group == "auto"):
        seeds_per_group = check_positive_int(seeds_per_group, "seeds_per_group")
    data = jax.tree.map(jnp.asarray, as_arrays(data, "data"))
    n = num_examples(data, "data")
    batch_size = min(batch_size, n)
    model_state = {} if model_state is None else model_state
    static = {"loss_fn": loss_fn, "optimizer": optimizer, "init_fn": init_fn, "batch_size": batch_size,
              "num_epochs": num_epochs, "shuffle": shuffle, "drop_remainder": drop_remainder, "progress": progress,
              "desc": desc}
    if seeds_per_group == "auto":
        one = jax.eval_shape(functools.partial(_init_seed, optimizer=optimizer, init_fn=init_fn),
                             jax.ShapeDtypeStruct(keys.shape[1:], keys.dtype), model_state)[0]
        seeds_per_group = sharding.group_size(_tree_nbytes((one.params, one.opt_state)))
    state, losses = sharding.map_groups(functools.partial(_train_group, **static), keys, data, model_state,
                                        group_size=seeds_per_group)
    step_loss = np.asarray(sharding.to_host(losses), np.float64)
    sizes = batch_sizes(n, batch_size, drop_remainder)
    return state, {"loss": _epoch_loss(step_loss, sizes), "step_loss": step_loss}
