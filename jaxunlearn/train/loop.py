"""The library's one training loop: an optax step, epochs over data (:func:`fit`), and steps (:func:`scan_steps`).

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

Under a caller's ``jit`` (traced inputs) the epochs themselves run in
:func:`scan_steps`, so :func:`fit` and every method built on it stay jittable; with
concrete inputs a tqdm bar counts epochs.

``fit(..., mask=m)`` trains only on the examples where ``m`` is true with shapes
that depend on ``N`` alone (the retain set of an unlearning request, which
shrinks request after request, without recompiling); :func:`weighted_mean`
lifts a mean loss to the weighted batches it then receives.

Loops that are not epochs over data (Bayes by Backprop, SG-MCMC chains,
Selective Amnesia's forgetting steps, attacks) run through :func:`scan_steps`:
``lax.scan`` with a progress bar advanced from inside the compiled loop.

Every loop here (the batches of an epoch, the epochs under ``jit``, :func:`scan_steps`)
is a :func:`jaxunlearn.loops.scan`: it follows the library's loop policy (on CPU, the
convolutions of a step's gradient run in the layout XLA:CPU is fast at), and ``unroll=``
is passed to ``lax.scan``.

Compiled once: with concrete inputs :func:`fit` keeps one jitted epoch (and one jitted
host step) per ``(loss_fn, optimizer, batch_size, drop_remainder, mask or not, unroll,
loop policy)`` in a cache of the 32 latest, so a second call with the same loss function
object, optimizer object and shapes compiles nothing. The callables are cache keys (by
identity, or by equality for objects that define it), never static ``jit`` arguments.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxunlearn import loops
from jaxunlearn._validation import check_key, check_positive_int, is_concrete, num_examples
from jaxunlearn.curvature.chunks import split_chunks
from jaxunlearn.train.inputs import as_arrays

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
    model_state = {} if model_state is None else model_state
    return TrainState(params, model_state, optimizer.init(params), jnp.zeros((), jnp.int32))


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


def epoch_order(shuffle_key: Any, epoch: Any, n: int, shuffle: bool = True, mask: Any = None) -> jax.Array:
    """The example order of epoch ``epoch``: ``permutation(fold_in(shuffle_key, epoch), n)``, or ``arange(n)``.

    With ``mask`` ([n] bool) the examples where it is true come first (in that random order, or in
    data order without ``shuffle``), the others after them.
    """
    if mask is None:
        if not shuffle:
            return jnp.arange(n)
        return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
    rank = jax.random.uniform(jax.random.fold_in(shuffle_key, epoch), (n,)) if shuffle else jnp.arange(n) / n
    return jnp.argsort(jnp.where(mask, rank, 2.0 + rank), stable=True)


class Weighted(NamedTuple):
    """A batch with per-example weights, as masked epochs hand it to the loss (``weights`` ``[B]``, 0 or 1)."""

    batch: Any
    weights: jax.Array


def weighted_mean(loss_fn: Callable[[Any, Any], jax.Array]) -> Callable[[Any, Any], jax.Array]:
    """Lift a mean loss ``loss_fn(params, batch)`` to ``loss(params, Weighted(batch, w))``.

    ``sum_i w_i loss_fn(params, batch_i) / max(sum_i w_i, 1)``, each example
    presented as a batch of one (``jax.vmap``); equal to ``loss_fn`` on the
    examples with weight 1 for any loss that is a mean over independent
    examples (eval-mode classifiers: no batch statistics).
    """

    def loss(params, weighted):
        batch, w = weighted
        per_example = jax.vmap(lambda ex: loss_fn(params, jax.tree.map(lambda a: a[None], ex)))(batch)
        return jnp.sum(w * per_example) / jnp.maximum(jnp.sum(w), 1.0)

    return loss


class _HostBar:
    """A tqdm bar that the compiled loop advances through ``jax.debug.callback``; opened on the first
    callback of each run (a cached second run of the same compiled loop gets a fresh bar)."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.bar = total, desc, None

    def __call__(self, t: Any) -> None:
        done = int(np.max(np.asarray(t))) + 1
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc=self.desc, leave=False)
        self.bar.update(done - self.bar.n)
        if done >= self.total:
            self.bar.close()
            self.bar = None


def scan_steps(
    step: Callable[[Any, Any], tuple[Any, Any]],
    carry: Any,
    xs: Any,
    *,
    progress: bool = False,
    desc: str = "steps",
    every: int | None = None,
    unroll: int | bool = 1,
) -> tuple[Any, Any]:
    """``jax.lax.scan(step, carry, xs, unroll=unroll)`` with a tqdm bar that the compiled loop itself advances.

    Every loop of the library that is not an epoch over data (Selective Amnesia's
    forgetting steps, Bayes by Backprop, SG-MCMC chains, attacks) runs through this
    function, so it stays one compiled scan (jittable, vmappable) while a long run still
    shows progress: every ``every`` steps (default: 1 % of them) a ``jax.debug.callback``
    updates the bar on the host. The scan follows the loop policy (:func:`jaxunlearn.loops.scan`).
    """
    length = jax.tree.leaves(xs)[0].shape[0]
    if not progress or length == 0:
        return loops.scan(step, carry, xs, unroll=unroll)
    every = max(1, length // 100) if every is None else check_positive_int(every, "every")
    advance = _HostBar(length, desc)

    def body(c, inputs):
        x, t = inputs
        c, out = step(c, x)
        jax.lax.cond(((t + 1) % every == 0) | (t + 1 == length),
                     lambda: jax.debug.callback(advance, t), lambda: None)
        return c, out

    return loops.scan(body, carry, (xs, jnp.arange(length)), unroll=unroll)


def _select(pred: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def make_epoch(
    loss_fn: TrainLossFn,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    drop_remainder: bool = False,
    masked: bool = False,
    unroll: int | bool = 1,
) -> Callable:
    """``epoch(state, data, order, step_key, mask) -> (state, step_losses [S])``, pure and jittable.

    ``data``: pytree of device arrays with leading size ``n``; ``order``: [n] int, the example
    order (:func:`epoch_order`); batches are consecutive slices of ``data[order]``, of
    ``B = min(batch_size, n)`` examples, the last one short (``n mod B``) unless ``drop_remainder``;
    ``S = len(batch_sizes(n, B, drop_remainder))``.

    With ``masked=True`` only the examples where ``mask`` ([n] bool) is true are trained on:
    ``order`` must list them first (:func:`epoch_order` with a mask does), the epoch has
    ``ceil(n / B)`` steps of which the first ``ceil(count / B)`` run, and the loss receives
    :class:`Weighted` batches (weight 0 past ``count``; see :func:`weighted_mean`). Shapes depend
    on ``n`` only, so one compilation serves every mask. The model state is carried unchanged
    by skipped steps.

    The steps run in one :func:`jaxunlearn.loops.scan` (the loop policy; ``unroll`` as for ``lax.scan``).
    """
    step = make_step(loss_fn, optimizer)

    def keyed_step(state, batch, step_key):
        return step(state, batch, jax.random.fold_in(step_key, state.step))

    def epoch_fn(state, data, order, step_key, mask=None):
        n = num_examples(data, "data")
        b = min(batch_size, n)
        data = jax.tree.map(lambda a: jnp.take(a, order, axis=0), data)
        if masked:
            count = jnp.sum(mask)
            steps = -(-n // b)
            padded = jnp.minimum(jnp.arange(steps * b), n - 1)
            xs = jax.tree.map(lambda a: jnp.take(a, padded, axis=0).reshape((steps, b) + a.shape[1:]), data)
            weights = (jnp.arange(steps * b) < count).astype(jnp.float32).reshape(steps, b)

            def masked_step(s, inputs):
                batch, w, t = inputs
                new, loss = keyed_step(s, Weighted(batch, w), step_key)
                active = t * b < count
                return _select(active, new, s), jnp.where(active, loss, jnp.nan)

            return loops.scan(masked_step, state, (xs, weights, jnp.arange(steps)), unroll=unroll)
        head, tail = split_chunks(data, b)
        state, losses = loops.scan(lambda s, batch: keyed_step(s, batch, step_key), state, head, unroll=unroll)
        if tail is not None and not drop_remainder:
            state, last = keyed_step(state, tail, step_key)
            losses = jnp.concatenate([losses, last[None]])
        return state, losses

    return epoch_fn


def _check_optimizer(optimizer: Any) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)); "
            f"got {type(optimizer).__name__}."
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
    mask: Any = None,
    unroll: int | bool = 1,
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
      progress: show a tqdm bar over epochs (under ``jit``, advanced from inside the compiled loop; see
        :func:`scan_steps`).
      eval_fn: optional ``eval_fn(params, model_state) -> {name: float}`` called after
        every epoch (concrete inputs only); its values join the history.
      scan: ``True`` scans device-resident epochs, ``False`` loops over host batches,
        ``None`` scans when the data is under :data:`SCAN_MAX_BYTES` (always under ``jit``).
      mask: optional bool ``[N]``: train only on the examples where it is true, with static
        shapes (see :func:`make_epoch`; the loss then receives :class:`Weighted` batches, e.g.
        ``params_only(weighted_mean(loss))``). Skipped steps have ``NaN`` in ``step_loss``.
      unroll: ``lax.scan``'s ``unroll`` for the loop over the batches of an epoch (the loop itself
        follows :mod:`jaxunlearn.loops`' policy).

    Returns:
      ``(state, history)`` with ``history["loss"]`` of shape ``[num_epochs]`` (example-weighted
      epoch means of the pre-update batch losses), ``history["step_loss"]`` ``[num_epochs, S]``
      and one ``[num_epochs]`` entry per ``eval_fn`` key. Numpy arrays for concrete inputs,
      jax arrays under ``jit``.

    Compiled once (module docstring): a second call with the same ``loss_fn`` and ``optimizer``
    objects, options and shapes compiles nothing (``eval_fn`` is the caller's to jit).
    """
    _check_optimizer(optimizer)
    if not isinstance(state, TrainState):
        raise TypeError("state must be a TrainState (use init_train_state(params, optimizer)); "
                        f"got {type(state).__name__}.")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    check_key(key)
    data = as_arrays(data, "data")
    n = num_examples(data, "data")
    masked = mask is not None
    if masked and jnp.shape(mask) != (n,):
        raise ValueError(f"mask must be a boolean array of shape ({n},), one entry per example; got {jnp.shape(mask)}.")
    batch_size = min(batch_size, n)
    shuffle_key, step_key = split_train_key(key)

    def weights_of(step_losses):
        if masked:  # examples per step: min(B, count - t B), clipped at 0
            steps = jnp.arange(step_losses.shape[-1])
            return jnp.clip(jnp.sum(mask) - steps * batch_size, 0, batch_size).astype(jnp.float32)
        return jnp.asarray(batch_sizes(n, batch_size, drop_remainder), jnp.float32)

    def epoch_loss(step_losses):
        w = weights_of(step_losses)
        return jnp.sum(jnp.where(w > 0, step_losses, 0.0) * w, axis=-1) / jnp.maximum(jnp.sum(w), 1.0)

    def run(s, e, device_data, run_epoch):
        order = epoch_order(shuffle_key, e, n, shuffle, mask)
        if masked:
            return run_epoch(s, device_data, order, step_key, mask)
        return run_epoch(s, device_data, order, step_key)

    if not is_concrete((state, data, key, mask)):
        if eval_fn is not None:
            raise ValueError("eval_fn needs concrete values: call fit outside jax.jit to evaluate during training.")
        epoch_fn = make_epoch(loss_fn, optimizer, batch_size=batch_size, drop_remainder=drop_remainder, masked=masked,
                              unroll=unroll)
        state, step_losses = scan_steps(lambda s, e: run(s, e, data, epoch_fn), state, jnp.arange(num_epochs),
                                        progress=progress, desc=desc)
        return state, {"loss": epoch_loss(step_losses), "step_loss": step_losses}

    if scan is None:
        scan = masked or _tree_nbytes(data) <= SCAN_MAX_BYTES
    if masked and not scan:
        raise ValueError("masked training runs on the device (scan=True); scan=False is for unmasked data.")
    history: dict[str, list] = {"loss": [], "step_loss": []}
    if scan:
        device_data = jax.tree.map(jnp.asarray, data)
        jitted_epoch = _jitted_epoch(loss_fn, optimizer, batch_size, drop_remainder, masked, unroll)

        def run_epoch(s, e):
            return run(s, e, device_data, jitted_epoch)

    else:
        run_epoch = _host_epoch(loss_fn, optimizer, data, n, batch_size, shuffle, drop_remainder, shuffle_key, step_key)
    with tqdm(total=num_epochs, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(num_epochs):
            state, losses = run_epoch(state, epoch)
            history["step_loss"].append(np.asarray(losses))
            history["loss"].append(float(epoch_loss(losses)))
            postfix = {"loss": f"{history['loss'][-1]:.4f}"}
            if eval_fn is not None:
                for name, value in eval_fn(state.params, state.model_state).items():
                    history.setdefault(name, []).append(float(value))
                    postfix[name] = f"{float(value):.4f}"
            bar.set_postfix(postfix)
            bar.update(1)
    out = {name: np.asarray(values, dtype=np.float64) for name, values in history.items() if name != "step_loss"}
    steps = len(batch_sizes(n, batch_size, drop_remainder)) if not masked else -(-n // batch_size)
    out["step_loss"] = np.asarray(history["step_loss"], dtype=np.float64).reshape(num_epochs, steps)
    return state, out


def _cached(build: Callable) -> Callable:
    """``build(*config)`` memoised on its (hashable) configuration, 32 latest; unhashable ones are built anew."""
    memo = functools.lru_cache(maxsize=32)(build)

    @functools.wraps(build)
    def get(*config):
        try:
            hash(config)
        except TypeError:
            return build(*config)
        return memo(*config)

    return get


@_cached
def _jitted_epoch_for(loss_fn, optimizer, batch_size, drop_remainder, masked, unroll, policy):
    del policy  # a key only: the loops read the policy in force when the epoch is traced, at its first call
    return jax.jit(make_epoch(loss_fn, optimizer, batch_size=batch_size, drop_remainder=drop_remainder,
                              masked=masked, unroll=unroll))


def _jitted_epoch(loss_fn, optimizer, batch_size, drop_remainder, masked, unroll):
    """The jitted epoch of :func:`fit` for this configuration and the loop policy in force, compiled once."""
    return _jitted_epoch_for(loss_fn, optimizer, batch_size, drop_remainder, masked, unroll, loops.get_policy())


@_cached
def _jitted_step(loss_fn, optimizer):
    return jax.jit(make_step(loss_fn, optimizer))


def _host_epoch(loss_fn, optimizer, data, n, batch_size, shuffle, drop_remainder, shuffle_key, step_key):
    """The host-batch path of :func:`fit`: same order and keys as the scan path, one jitted step per batch."""
    step = _jitted_step(loss_fn, optimizer)
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
