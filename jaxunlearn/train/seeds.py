"""Many seeds at once: ``jax.vmap`` of a whole training run over PRNG keys.

The reference models that unlearning metrics compare against are models
retrained without the forget set, ideally several seeds of them. For small
models the seeds train together: every epoch of :func:`jaxunlearn.train.loop.make_epoch`
is vmapped over the seed axis (own initialisation, own shuffle order, own
dropout keys; shared data), so ``S`` seeds cost about one run on an accelerator.

Seed ``s`` with key ``k_s`` is exactly (up to float reassociation under vmap)

    init_key, train_key = jax.random.split(k_s)
    state = init_train_state(init_fn(init_key), optimizer, model_state)
    fit(loss_fn, optimizer, state, data, key=train_key, ...)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxunlearn._validation import check_key, check_positive_int, num_examples
from jaxunlearn.train.inputs import as_arrays
from jaxunlearn.train.loop import (
    TrainLossFn,
    TrainState,
    _epoch_loss,
    batch_sizes,
    epoch_order,
    init_train_state,
    make_epoch,
    split_train_key,
)


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
) -> tuple[TrainState, dict]:
    """Train one model per key in ``keys`` simultaneously (``jax.vmap`` over seeds).

    Args:
      loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)`` as in :func:`fit`.
      optimizer: an ``optax.GradientTransformation``.
      init_fn: ``init_fn(key) -> params``, the initialisation of one seed.
      data: pytree of arrays with leading size ``N`` (or a ``Dataset``), shared by all seeds.
      keys: ``S`` PRNG keys stacked on a leading axis (``jax.random.split(key, S)``).
      batch_size, num_epochs, shuffle, drop_remainder: as in :func:`fit`.
      model_state: initial non-parameter state shared by all seeds (``{}`` when ``None``).
      progress: tqdm bar over epochs.

    Returns:
      ``(state, history)``: a :class:`TrainState` whose leaves have a leading seed axis ``S``,
      ``history["loss"]`` of shape ``[S, num_epochs]`` and ``history["step_loss"]`` ``[S, num_epochs, steps]``.
    """
    check_key(keys, "keys")
    if jnp.ndim(keys) != (1 if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) else 2):
        raise ValueError("keys must be a stack of PRNG keys with a leading seed axis, e.g. jax.random.split(key, 4).")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    data = jax.tree.map(jnp.asarray, as_arrays(data, "data"))
    n = num_examples(data, "data")
    batch_size = min(batch_size, n)
    sizes = batch_sizes(n, batch_size, drop_remainder)

    def init_one(key):
        init_key, train_key = jax.random.split(key)
        shuffle_key, step_key = split_train_key(train_key)
        return init_train_state(init_fn(init_key), optimizer, model_state), shuffle_key, step_key

    state, shuffle_keys, step_keys = jax.jit(jax.vmap(init_one))(keys)
    epoch_fn = make_epoch(loss_fn, optimizer, batch_size=batch_size, drop_remainder=drop_remainder)
    run_epoch = jax.jit(jax.vmap(epoch_fn, in_axes=(0, None, 0, 0)))
    orders = jax.jit(jax.vmap(lambda k, e: epoch_order(k, e, n, shuffle), in_axes=(0, None)))
    step_losses = []
    with tqdm(total=num_epochs, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(num_epochs):
            state, losses = run_epoch(state, data, orders(shuffle_keys, epoch), step_keys)
            step_losses.append(np.asarray(losses))
            bar.set_postfix(loss=f"{float(np.mean(_epoch_loss(step_losses[-1], sizes))):.4f}")
            bar.update(1)
    num_seeds = len(keys)
    step_loss = np.stack(step_losses, axis=1) if step_losses else np.zeros((num_seeds, 0, sizes.size))
    return state, {"loss": np.asarray(_epoch_loss(step_loss, sizes), dtype=np.float64), "step_loss": step_loss}
