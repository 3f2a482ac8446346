"""The unlearning-method interface: an init/update pair of pure functions.

Unlearning requests arrive one after another, and work that depends only on
the remaining data (SSD's retain-set importances, a sampler's state) should
be done once. In the spirit of optax and blackjax a method is therefore

    unlearner = ju.methods.ssd(loss_fn, alpha=10.0, lambda_=1.0)   # configure
    state = unlearner.init(params, retain_data)                     # reusable precomputation
    params, state = unlearner.update(params, forget_data, state)    # one request

``state`` is a pytree (a NamedTuple). :func:`unlearn` is the one-shot helper.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from jaxunlearn.train.inputs import as_xy, ensure_finite, key_or_default

InitFn = Callable[..., Any]
UpdateFn = Callable[..., tuple[Any, Any]]


class Unlearner(NamedTuple):
    """``init(params, retain_data, **kw) -> state``; ``update(params, forget_data, state, **kw) -> (params, state)``."""

    init: InitFn
    update: UpdateFn


def unlearn(unlearner: Unlearner, params: Any, forget_data: Any, retain_data: Any, **kwargs: Any) -> Any:
    """One request: ``init`` on the retained data, then ``update`` with the forget data; returns the new params."""
    state = unlearner.init(params, retain_data)
    new_params, _ = unlearner.update(params, forget_data, state, **kwargs)
    return new_params


class RetainState(NamedTuple):
    """State of the methods that train on the retained data (fine-tune, retrain, NegGrad, Amnesiac).

    ``retain``: the retained data ``(x [N_r, ...], y [N_r])``; ``key``: PRNG key for the next request.
    """

    retain: Any
    key: Any


def init_retain_state(params: Any, retain_data: Any, *, key: Any = None) -> RetainState:
    """The shared ``init`` of those methods: checks ``params`` are finite and stores the retain set and key."""
    ensure_finite(params, "params")
    return RetainState(as_xy(retain_data, "retain_data"), key_or_default(key))
