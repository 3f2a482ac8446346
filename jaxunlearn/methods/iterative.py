"""What the iterative baselines share: their state, their info, and one way to build an :class:`Unlearner`.

Fine-tuning, retraining, NegGrad, NegGrad+, Amnesiac, Bad Teacher and SCRUB
all train the model with optax on the one training loop
(:func:`jaxunlearn.train.loop.fit`); they differ only in the data and loss of
a request. Each one supplies

* ``run(params, req, state, key) -> (new_params, epoch_losses)``: the training
  of one request, given the opened :class:`~jaxunlearn.methods.base.Request`
  (``req.forget``, the ``req.retain`` mask over the stored data) and the state;
* optionally ``prepare(params, data, key) -> extra``: precomputation done once by
  ``init`` (a frozen teacher's logits, a random teacher), kept in the state.

A ``run`` may return, instead of its losses, its own info NamedTuple (with a
``loss`` field) when a request has more diagnostics (SalUn's selected fraction).
Methods whose epochs differ from one another (fresh random labels, a decaying
penalty, several passes per epoch) run them with :func:`scan_epochs`, one
compiled epoch body whatever the number of epochs.

:func:`iterative_unlearner` turns them into ``init``/``update`` on the method
contract: ``update`` is one function jitted once per configured method, so a
second request of the same size reuses the compilation. Retain-set training
uses the stored data with the retain mask (static shapes; see
:func:`jaxunlearn.train.loop.fit`), so forgotten examples are never trained
on again.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn import loops
from jaxunlearn._validation import check_fits_model
from jaxunlearn.methods.base import DataState, Request, Unlearner, init_data_state, make_unlearner, open_request
from jaxunlearn.train.loop import TrainLossFn, fit, init_train_state, params_only, weighted_mean

__all__ = ["IterativeInfo", "IterativeState", "iterative_unlearner", "retain_training", "scan_epochs", "train_epochs"]


class IterativeState(NamedTuple):
    """``store``: the training data and its alive mask; ``extra``: what ``prepare`` computed once
    (``()`` when the method has nothing to prepare)."""

    store: DataState
    extra: Any


class IterativeInfo(NamedTuple):
    """``loss``: the example-weighted mean training loss of each epoch (or pass) of the request."""

    loss: jax.Array


def train_epochs(
    loss_fn: TrainLossFn,
    optimizer: optax.GradientTransformation,
    params: Any,
    data: Any,
    *,
    key: jax.Array,
    batch_size: int,
    num_epochs: int,
    mask: jax.Array | None = None,
    state: Any = None,
) -> tuple[Any, Any]:
    """``num_epochs`` epochs of :func:`jaxunlearn.train.loop.fit` from ``params`` (fresh optimizer state unless
    ``state``, a ``TrainState``, is given); returns ``(train_state, epoch_losses [num_epochs])``."""
    state = init_train_state(params, optimizer) if state is None else state
    state, history = fit(loss_fn, optimizer, state, data, batch_size=batch_size, num_epochs=num_epochs, key=key,
                         mask=mask, progress=False)
    return state, history["loss"]


def scan_epochs(
    epoch: Callable[[Any, jax.Array, jax.Array], tuple[Any, Any]],
    state: Any,
    *,
    num_epochs: int,
    key: jax.Array,
) -> tuple[Any, Any]:
    """``num_epochs`` epochs that depend on their index, in one :func:`jaxunlearn.loops.scan` (compiled once).

    ``epoch(state, e, epoch_key) -> (state, losses)`` runs epoch ``e`` (an int32 scalar) with
    ``epoch_key = fold_in(key, e)``; ``state`` is typically a ``TrainState`` carried across epochs (one
    optimizer state, as a PyTorch loop keeps its optimizer). Returns ``(state, losses)`` with the
    epochs' losses stacked on a leading ``[num_epochs]`` axis.
    """

    def body(carry, e):
        return epoch(carry, e, jax.random.fold_in(key, e))

    return loops.scan(body, state, jnp.arange(num_epochs, dtype=jnp.int32))


def retain_training(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int,
    num_epochs: int,
    start: Callable[[Any, jax.Array], tuple[Any, jax.Array]] | None = None,
) -> Callable:
    """The ``run`` of methods that train on ``D_r`` only (fine-tuning, retraining).

    ``num_epochs`` shuffled epochs of the mean ``loss_fn`` over the examples alive after the
    request, from ``start(params, key) -> (start_params, train_key)`` (default: the trained
    ``params`` and ``key``) with a fresh optimizer state.
    """
    train_loss = params_only(weighted_mean(loss_fn))

    def run(params, req, state, key):
        start_params, train_key = (params, key) if start is None else start(params, key)
        train_state, losses = train_epochs(train_loss, optimizer, start_params, state.store.data, key=train_key,
                                           batch_size=batch_size, num_epochs=num_epochs, mask=req.retain)
        return train_state.params, losses

    return run


def iterative_unlearner(
    run: Callable[[Any, Request, IterativeState, jax.Array], tuple[Any, jax.Array]],
    *,
    prepare: Callable[[Any, Any, jax.Array], Any] | None = None,
    num_classes: int | None = None,
    model_fn: Callable[[Any, Any], Any] | None = None,
) -> Unlearner:
    """An :class:`Unlearner` from a request's training ``run`` (module docstring).

    Args:
      run: ``run(params, req, state, key) -> (new_params, losses)``, or ``(new_params, info)`` with
        ``info`` a NamedTuple of the method's own that has a ``loss`` field.
      prepare: ``prepare(params, data, key) -> extra``, run once by ``init``.
      num_classes: checks the labels of ``data`` against ``0..num_classes-1`` in ``init``
        (a ``Dataset`` brings its own).
      model_fn: ``model_fn(params, batch)``, traced abstractly on one example of ``data`` in
        ``init`` so that data of the wrong shape is reported by name.

    Returns:
      ``Unlearner``: ``init(params, data, *, key) -> IterativeState``;
      ``update(params, request, state, *, key) -> (params, IterativeState, info)``, ``info`` an
      :class:`IterativeInfo` of the losses or the NamedTuple ``run`` returned.
    """
    prepare_jit = None if prepare is None else jax.jit(prepare)

    def init(params: Any, data: Any, *, key: jax.Array) -> IterativeState:
        store = init_data_state(data, "data", num_classes=num_classes)
        if model_fn is not None:
            check_fits_model(model_fn, params, store.data, "data")
        extra = () if prepare_jit is None else prepare_jit(params, store.data, key)
        return IterativeState(store, extra)

    def request_step(params, forget_idx, state, key):
        """One request: train as the method does on the requested examples / the ones alive after it."""
        req = open_request(state.store, forget_idx)
        new_params, losses = run(params, req, state, key)
        new_state = IterativeState(state.store._replace(alive=req.retain), state.extra)
        info = losses if hasattr(losses, "_fields") else IterativeInfo(jnp.asarray(losses))
        return new_params, new_state, info

    return make_unlearner(init, request_step, IterativeState)
