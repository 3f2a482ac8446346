"""The method contract: every unlearning method is an ``init``/``update`` pair of pure functions.

In the spirit of optax's ``GradientTransformation`` and blackjax's
``SamplingAlgorithm``, a method is configured once and then driven by two
pure functions::

    unlearner = ju.methods.ssd(loss_fn, alpha=10.0, lambda_=1.0)        # configure (compiles nothing yet)
    state = unlearner.init(params, train_data, key=k0)                  # once, on the data the model was trained on
    params, state, info = unlearner.update(params, forget_idx, state, key=k1)   # one forget request
    params, state, info = unlearner.update(params, more_idx, state, key=k2)     # the next one

The rules every method follows (``tests/methods/test_contract.py`` checks them
for every method of :data:`jaxunlearn.methods.REGISTRY`):

* **What ``init`` receives**: the data the model was trained on (a pytree of
  arrays with a leading example axis ``[N, ...]``, for a classifier ``(x, y)``,
  or a :class:`jaxunlearn.data.Dataset`), the same for every method. Methods
  that need the retained set derive it; SSD uses the whole of it for ``I_D``;
  zero-shot methods (JiT) keep it only to look up the examples to forget.
* **A request** is a 1-D integer array of indices into that data. Its length
  ``k`` is the only shape that may change between requests, so a second
  request of the same size reuses the compiled ``update``. The state keeps an
  ``alive`` mask: a forgotten example is never used again (not for retain
  training, not for curvature), and forgetting it a second time is an error.
* **Keys**: ``init`` and ``update`` take a required keyword ``key`` (a JAX
  PRNG key). All randomness of a call comes from it: the same key gives the
  same result, and a method's result never depends on what else runs. No
  method stores a key in its state. Deterministic methods accept and ignore it.
* **State and info**: ``state`` (a NamedTuple pytree) holds only what later
  requests need; per-request diagnostics come back in ``info`` (a
  NamedTuple), as blackjax's ``(state, info)``.
* **Compiled once**: ``update`` is jittable and vmappable (over keys, and over
  stacked ``params`` and states of several models). Each unlearner jits its
  request computation once, at configuration; no callable is ever a static
  ``jit`` argument.
* **Errors keep their class**: bad structure (shapes, dtypes, empty requests)
  raises at trace time; bad values (indices out of range or already removed,
  labels outside ``0..C-1``, non-finite parameters, a diverging recursion)
  are staged with :func:`jaxunlearn._validation.raise_if` and reach the
  caller as ``ValueError``, ``FloatingPointError``,
  :class:`~jaxunlearn.curvature.LissaDivergenceError` or
  :class:`~jaxunlearn.curvature.CGConvergenceError`, whether ``update`` runs
  eagerly or under :func:`jaxunlearn.jit`. Under a plain ``jax.jit`` of your
  own the same error arrives as ``JaxRuntimeError`` quoting it, unless you
  wrap the call in :class:`jaxunlearn.keep_errors`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jaxunlearn._validation import (
    check_finite,
    check_key,
    check_labels,
    keep_errors,
    num_examples,
    raise_if,
    wait_for_errors,
)

__all__ = [
    "DataState", "InitFn", "Request", "Unlearner", "UpdateFn", "as_train_data", "init_data_state", "make_unlearner",
    "open_request", "public", "unlearn",
]


class InitFn(Protocol):
    """``init(params, data, *, key) -> state``: the once-per-model precomputation."""

    def __call__(self, params: Any, data: Any, *, key: jax.Array) -> Any: ...


class UpdateFn(Protocol):
    """``update(params, request, state, *, key) -> (params, state, info)``: one forget request."""

    def __call__(self, params: Any, request: Any, state: Any, *, key: jax.Array) -> tuple[Any, Any, Any]: ...


class Unlearner(NamedTuple):
    """A configured method: ``init`` and ``update`` (module docstring)."""

    init: InitFn
    update: UpdateFn


class DataState(NamedTuple):
    """The part of every state that tracks the data.

    ``data``: the training data given to ``init`` (pytree of device arrays ``[N, ...]``);
    ``alive``: bool ``[N]``, the examples not forgotten yet.
    """

    data: Any
    alive: jax.Array


class Request(NamedTuple):
    """One request, opened by :func:`open_request`.

    ``indices``: int32 ``[k]``; ``forget``: ``data`` at ``indices`` (pytree ``[k, ...]``);
    ``retain``: bool ``[N]``, the examples still alive after this request (``D_r``);
    ``before``: bool ``[N]``, the examples alive before it (``D_r`` plus ``D_f``).
    """

    indices: jax.Array
    forget: Any
    retain: jax.Array
    before: jax.Array


def as_train_data(data: Any, name: str = "data", *, num_classes: int | None = None) -> Any:
    """``data`` as a pytree of device arrays; a ``Dataset`` becomes ``(x, y)``.

    Raises ``ValueError`` naming ``name`` when it is empty or ragged, and (when
    ``num_classes`` is known, or ``data`` is a ``Dataset``) when an integer label
    lies outside ``0..num_classes-1``, also under ``jit``.
    """
    if all(hasattr(data, f) for f in ("x", "y", "num_classes")):
        num_classes = int(data.num_classes) if num_classes is None else num_classes
        data = (data.x, data.y)
    num_examples(data, name)
    data = jax.tree.map(jnp.asarray, data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and jnp.issubdtype(data[1].dtype, jnp.integer):
        check_labels(data[1], num_classes, f"{name} labels y")
    return data


def init_data_state(data: Any, name: str = "data", *, num_classes: int | None = None) -> DataState:
    """:class:`DataState` of freshly given training data: every example alive."""
    data = as_train_data(data, name, num_classes=num_classes)
    return DataState(data, jnp.ones((num_examples(data, name),), bool))


def _index_error(kind: str) -> Callable[..., Exception]:
    def make(count, first):
        hint = {
            "range": "indices must lie in [0, N) for the N examples given to init",
            "repeat": "each index may appear once per request",
            "removed": "those examples were forgotten by an earlier request; pass only examples still in the model",
        }[kind]
        return ValueError(f"request: {int(count)} index(es) are invalid (first: {int(first)}): {hint}.")

    return make


def open_request(store: DataState, request: Any, name: str = "request") -> Request:
    """Validate one request against ``store`` and look up the examples to forget.

    ``request``: 1-D integer array of ``k >= 1`` indices into the data given to
    ``init``. Raises ``TypeError``/``ValueError`` for a wrong dtype, rank or an
    empty request at trace time, and ``ValueError`` (also under ``jit``) for an
    index out of range, repeated, or already forgotten.
    """
    idx = jnp.asarray(request)
    if idx.ndim != 1 or not jnp.issubdtype(idx.dtype, jnp.integer):
        raise TypeError(
            f"{name} must be a 1-D integer array of indices into the data given to init; "
            f"got dtype {idx.dtype}, shape {idx.shape}. Convert a boolean mask with jnp.flatnonzero(mask)."
        )
    if idx.shape[0] == 0:
        raise ValueError(f"{name} is empty: pass at least one index of an example to forget.")
    n = store.alive.shape[0]
    out_of_range = (idx < 0) | (idx >= n)
    raise_if(jnp.any(out_of_range), _index_error("range"), jnp.sum(out_of_range), idx[jnp.argmax(out_of_range)])
    safe = jnp.clip(idx, 0, n - 1).astype(jnp.int32)
    hits = jnp.zeros((n,), jnp.int32).at[safe].add(1)
    repeated = hits > 1
    raise_if(jnp.any(repeated), _index_error("repeat"), jnp.sum(repeated), jnp.argmax(repeated))
    removed = ~store.alive[safe]
    raise_if(jnp.any(removed), _index_error("removed"), jnp.sum(removed), idx[jnp.argmax(removed)])
    forget = jax.tree.map(lambda a: jnp.take(a, safe, axis=0), store.data)
    return Request(safe, forget, store.alive.at[safe].set(False), store.alive)


def public(update: Callable) -> Callable:
    """Decorate a method's ``update`` (or ``init``): check ``key`` and ``params``, keep error classes.

    The wrapped function checks that ``key`` is a PRNG key (``TypeError`` otherwise),
    that ``params`` are finite (``FloatingPointError``; one boolean per leaf crosses
    to the host, also under ``jit``), and runs inside :class:`jaxunlearn.keep_errors`.
    """

    @functools.wraps(update)
    def checked(params, *args, key, **kwargs):
        check_key(key)
        check_finite(params)
        with keep_errors():
            return wait_for_errors(update(params, *args, key=key, **kwargs))

    return checked


def make_unlearner(
    init: Callable[..., Any],
    request_step: Callable[..., tuple[Any, Any, Any]],
    state_type: type,
    *,
    check_state: Callable[[Any, Any], None] | None = None,
) -> Unlearner:
    """The one way a method becomes an :class:`Unlearner` on this contract.

    Args:
      init: ``init(params, data, *, key, **options) -> state``; decorated with :func:`public`.
      request_step: ``request_step(params, request, state, key, **injected) -> (params, state, info)``,
        the whole computation of one request (open it with :func:`open_request`); jitted here,
        once per configured method (a second request of the same shapes compiles nothing).
        ``injected`` are optional arrays that replace drawn randomness (noise, minibatch indices).
      state_type: the method's state NamedTuple; ``update`` rejects anything else with ``TypeError``.
      check_state: optional ``check_state(params, state)``, structural checks at trace time.

    Returns:
      ``Unlearner(init, update)``; ``update.core`` is the jitted ``request_step``.
    """
    core = jax.jit(request_step)

    @public
    def update(params: Any, request: Any, state: Any, *, key: jax.Array, **injected: Any):
        if not isinstance(state, state_type):
            raise TypeError(f"state must be the {state_type.__name__} returned by init; got {type(state).__name__}.")
        if check_state is not None:
            check_state(params, state)
        return core(params, request, state, key, **injected)

    update.core = core  # type: ignore[attr-defined]
    update.__doc__ = request_step.__doc__
    return Unlearner(public(init), update)


def unlearn(unlearner: Unlearner, params: Any, data: Any, request: Any, *, key: jax.Array) -> Any:
    """One request from scratch: ``init`` on the training ``data``, then ``update``; returns the new params.

    ``key`` is split into the ``init`` and ``update`` keys.
    """
    check_key(key)
    k_init, k_update = jax.random.split(key)
    state = unlearner.init(params, data, key=k_init)
    new_params, _, _ = unlearner.update(params, request, state, key=k_update)
    return new_params
