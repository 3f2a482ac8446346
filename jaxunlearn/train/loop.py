"""Optax training loops: one jitted step, an epoch as ``lax.scan`` over the stacked batches.

A step on batch ``b_t`` with PRNG key ``k_t`` is the plain optax update

    (L_t, s_{t+1}), g_t = value_and_grad(loss_fn)(theta_t, s_t, b_t, k_t)
    u_t, o_{t+1}      = optimizer.update(g_t, o_t, theta_t)
    theta_{t+1}       = theta_t + u_t

where ``s`` is the model state (batch-norm statistics) and ``o`` the optimizer
state. Randomness is derived from the caller's key only: ``key`` splits into a
shuffle key and a step key; epoch ``e`` shuffles with
``permutation(fold_in(shuffle_key, e), N)`` and step ``t`` (the global step
counter ``TrainState.step``) gets ``k_t = fold_in(step_key, t)``. The same key
therefore gives the same run whichever path executes it:

* ``scan`` path: the dataset is put on the device once; each epoch gathers the
  permuted data, reshapes it to ``[N // B, B, ...]`` and runs the step inside
  ``lax.scan``; a final short batch (``N mod B`` examples, unless
  ``drop_remainder``) is one more step with its true size (no padding);
* host path (``scan=False``, for data that does not fit the device): a Python
  loop over host batches calling the jitted step.

Under a caller's ``jit`` (traced inputs) the epochs themselves run in a
``lax.scan``, so :func:`fit` and every method built on it stay jittable; with
concrete inputs a tqdm bar counts epochs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxunlearn._validation import is_concrete, num_examples
from jaxunlearn.train.inputs import as_arrays, check_key, check_positive_int

TrainLossFn = Callable[[Any, Any, Any, Any], tuple[jax.Array, Any]]
"""``loss_fn(params, model_state, batch, key) -> (scalar loss, new_model_state)``."""

SCAN_MAX_BYTES = 1 << 30
"""With ``scan=None``, data up to this many bytes is put on the device and scanned."""


class TrainState(NamedTuple):
    """Everything a training run carries from step to step.

    ``params``: the trained pytree; ``model_state``: other collections updated
    by the forward pass (e.g. ``{"batch_stats": ...}``; ``{}`` when none);
    ``opt_state``: the optax state; ``step``: int32 scalar, number of steps taken.
    """

    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array


def init_train_state(params: Any, optimizer: optax.GradientTransformation, model_state: Any = None) -> TrainState:
    """``TrainState(params, model_state or {}, optimizer.init(params), 0)``."""
    _check_optimizer(optimizer)
    return TrainState(params, {} if model_state is None else model_state, optimizer.init(params), jnp.zeros((), jnp.int32))


def params_only(loss_fn: Callable[[Any, Any], jax.Array]) -> TrainLossFn:
    """Lift ``loss_fn(params, batch) -> scalar`` to the ``(params, model_state, batch, key)`` form of :func:`fit`."""

    def lifted(params, model_state, batch, key):
        del key
        return loss_fn(params, batch), model_state

    return lifted


def with_key(loss_fn: Callable[[Any, Any, Any], jax.Array]) -> TrainLossFn:
    """Lift ``loss_fn(params, batch, key) -> scalar`` (a loss that draws randomness) to the form of :func:`fit`."""

    def lifted(params, model_state, batch, key):
        return loss_fn(params, batch, key), model_state

    return lifted


def make_step(loss_fn: TrainLossFn, optimizer: optax.GradientTransformation) -> Callable:
    """``step(state, batch, key) -> (new_state, loss)``: one optax update (formula in the module docstring)."""

    def step(state: TrainState, batch: Any, key: Any) -> tuple[TrainState, jax.Array]:
        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.model_state, batch, key
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, model_state, opt_state, state.step + 1), loss

    return step


def split_train_key(key: Any) -> tuple[Any, Any]:
    """``(shuffle_key, step_key)`` of a training run, as :func:`fit` derives them from its ``key``."""
    shuffle_key, step_key = jax.random.split(key)
    return shuffle_key, step_key


def batch_sizes(n: int, batch_size: int, drop_remainder: bool) -> np.ndarray:
    """Sizes of the batches of one epoch over ``n`` examples (the last one short unless dropped)."""
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full + ([rest] if rest and not drop_remainder else [])
    return np.asarray(sizes, dtype=np.int64)


@functools.partial(jax.jit, static_argnames=("n", "shuffle"))
def epoch_order(shuffle_key: Any, epoch: Any, n: int, shuffle: bool = True) -> jax.Array:
    """The example order of epoch ``epoch``: ``permutation(fold_in(shuffle_key, epoch), n)``, or ``arange(n)``.

    Jitted once per ``n`` and shared by every run (the permutation's sort is costly to compile).
    """
    if not shuffle:
        return jnp.arange(n)
    return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)


def make_epoch(
    loss_fn: TrainLossFn,
    optimizer: optax.GradientTransformation,
    n: int,
    *,
    batch_size: int,
    drop_remainder: bool = False,
) -> Callable:
    """``epoch(state, data, order, step_key) -> (state, step_losses [S])``, pure and jittable.

    ``data``: pytree of device arrays with leading size ``n``; ``order``: [n] int, the example
    order (:func:`epoch_order`); batches are consecutive slices of ``data[order]``.
    ``S = len(batch_sizes(n, batch_size, drop_remainder))``.
    """
    step = make_step(loss_fn, optimizer)
    full, rest = divmod(n, batch_size)
    keep_tail = bool(rest) and not drop_remainder

    def keyed_step(state, batch, step_key):
        return step(state, batch, jax.random.fold_in(step_key, state.step))

    def epoch_fn(state, data, order, step_key):
        data = jax.tree.map(lambda a: jnp.take(a, order, axis=0), data)
        head = jax.tree.map(lambda a: a[: full * batch_size].reshape((full, batch_size) + a.shape[1:]), data)
        state, losses = jax.lax.scan(lambda s, b: keyed_step(s, b, step_key), state, head)
        if keep_tail:
            tail = jax.tree.map(lambda a: a[full * batch_size :], data)
            state, last = keyed_step(state, tail, step_key)
            losses = jnp.concatenate([losses, last[None]])
        return state, losses

    return epoch_fn


def _check_optimizer(optimizer: Any) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)); got {type(optimizer).__name__}."
        )


def _tree_nbytes(tree: Any) -> int:
    return sum(int(np.prod(np.shape(a))) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))


def _epoch_loss(step_losses: Any, weights: np.ndarray) -> Any:
    """Example-weighted mean of the per-batch mean losses, over the last axis."""
    return (step_losses * weights).sum(-1) / weights.sum()


def fit(
    loss_fn: TrainLossFn,
    optimizer: optax.GradientTransformation,
    state: TrainState,
    data: Any,
    *,
    batch_size: int,
    num_epochs: int,
    key: Any,
    shuffle: bool = True,
    progress: bool = True,
    desc: str = "train",
    drop_remainder: bool = False,
    eval_fn: Callable[[Any, Any], dict] | None = None,
    scan: bool | None = None,
) -> tuple[TrainState, dict]:
    """Train ``state`` for ``num_epochs`` epochs of minibatch optax steps over ``data``.

    Args:
      loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``,
        the mean loss over the batch (see :func:`params_only` for ``loss_fn(params, batch)``).
      optimizer: an ``optax.GradientTransformation``; ``state.opt_state`` must be its state.
      state: a :class:`TrainState` (see :func:`init_train_state`).
      data: pytree of arrays with leading size ``N`` (classifiers: ``(x [N, ...], y [N])``),
        or a ``jaxunlearn.data.Dataset`` (used as ``(x, y)``).
      batch_size: ``B``; the last batch of an epoch holds ``N mod B`` examples unless
        ``drop_remainder``. ``B > N`` means one batch of ``N``.
      num_epochs: passes over the data (0 returns ``state`` unchanged).
      key: PRNG key; shuffle order and the per-step keys are derived from it
        (module docstring), so a run is reproducible.
      shuffle: reshuffle every epoch; ``False`` keeps data order.
      progress: show a tqdm bar over epochs (concrete inputs only).
      eval_fn: optional ``eval_fn(params, model_state) -> {name: float}`` called after
        every epoch (concrete inputs only); its values join the history.
      scan: ``True`` scans device-resident epochs, ``False`` loops over host batches,
        ``None`` scans when the data is under :data:`SCAN_MAX_BYTES` (always under ``jit``).

    Returns:
      ``(state, history)`` with ``history["loss"]`` of shape ``[num_epochs]`` (example-weighted
      epoch means of the pre-update batch losses), ``history["step_loss"]`` ``[num_epochs, S]``
      and one ``[num_epochs]`` entry per ``eval_fn`` key. Numpy arrays for concrete inputs,
      jax arrays under ``jit``.
    """
    _check_optimizer(optimizer)
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState (use init_train_state(params, optimizer)); got {type(state).__name__}.")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    check_key(key)
    data = as_arrays(data, "data")
    n = num_examples(data, "data")
    batch_size = min(batch_size, n)
    sizes = batch_sizes(n, batch_size, drop_remainder)
    epoch_fn = make_epoch(loss_fn, optimizer, n, batch_size=batch_size, drop_remainder=drop_remainder)
    shuffle_key, step_key = split_train_key(key)

    if not is_concrete((state, data, key)):
        if eval_fn is not None:
            raise ValueError("eval_fn needs concrete values: call fit outside jax.jit to evaluate during training.")

        def body(s, e):
            return epoch_fn(s, data, epoch_order(shuffle_key, e, n, shuffle), step_key)

        state, step_losses = jax.lax.scan(body, state, jnp.arange(num_epochs))
        return state, {"loss": _epoch_loss(step_losses, sizes), "step_loss": step_losses}

    if scan is None:
        scan = _tree_nbytes(data) <= SCAN_MAX_BYTES
    history: dict[str, list] = {"loss": [], "step_loss": []}
    if scan:
        device_data = jax.tree.map(jnp.asarray, data)
        try:
            jitted_epoch = _jitted_epoch(loss_fn, optimizer, n, batch_size, drop_remainder)
        except TypeError:  # an unhashable loss_fn or optimizer: compile without the cache
            jitted_epoch = jax.jit(epoch_fn)

        def run_epoch(s, e):
            return jitted_epoch(s, device_data, epoch_order(shuffle_key, e, n, shuffle), step_key)

    else:
        run_epoch = _host_epoch(loss_fn, optimizer, data, n, batch_size, shuffle, drop_remainder, shuffle_key, step_key)
    with tqdm(total=num_epochs, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(num_epochs):
            state, losses = run_epoch(state, epoch)
            losses = np.asarray(losses)
            history["step_loss"].append(losses)
            history["loss"].append(float(_epoch_loss(losses, sizes)))
            postfix = {"loss": f"{history['loss'][-1]:.4f}"}
            if eval_fn is not None:
                for name, value in eval_fn(state.params, state.model_state).items():
                    history.setdefault(name, []).append(float(value))
                    postfix[name] = f"{float(value):.4f}"
            bar.set_postfix(postfix)
            bar.update(1)
    out = {name: np.asarray(values, dtype=np.float64) for name, values in history.items() if name != "step_loss"}
    out["step_loss"] = np.asarray(history["step_loss"], dtype=np.float64).reshape(num_epochs, sizes.size)
    return state, out


@functools.lru_cache(maxsize=32)
def _jitted_epoch(loss_fn, optimizer, n, batch_size, drop_remainder):
    """Jitted :func:`make_epoch`, cached so repeated ``fit`` calls with the same functions compile once.

    Data and keys are arguments, never closed over (closed-over arrays become constants that XLA folds slowly).
    """
    return jax.jit(make_epoch(loss_fn, optimizer, n, batch_size=batch_size, drop_remainder=drop_remainder))


def _host_epoch(loss_fn, optimizer, data, n, batch_size, shuffle, drop_remainder, shuffle_key, step_key):
    """The host-batch path of :func:`fit`: same order and keys as the scan path, one jitted step per batch."""
    step = jax.jit(make_step(loss_fn, optimizer))
    host = jax.tree.map(np.asarray, data)
    sizes = batch_sizes(n, batch_size, drop_remainder)

    def run_epoch(state, epoch):
        order = np.asarray(epoch_order(shuffle_key, epoch, n, shuffle))
        losses, start = [], 0
        for size in sizes:
            idx = order[start : start + size]
            start += size
            batch = jax.tree.map(lambda a: jnp.asarray(a[idx]), host)
            state, loss = step(state, batch, jax.random.fold_in(step_key, state.step))
            losses.append(loss)
        return state, jnp.stack(losses)

    return run_epoch
