"""Input handling shared by the training loops and the iterative unlearning methods.

Datasets arrive either as a :class:`jaxunlearn.data.Dataset` (a NamedTuple with
``x``, ``y``, ``num_classes``, ``name``) or as a pytree of arrays with a
leading example axis (classifiers: an ``(x, y)`` tuple). These helpers turn
both into plain array pytrees, check PRNG keys and parameters, and derive the
key of one unlearning request. They are built on :mod:`jaxunlearn._validation`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn._validation import check_finite, is_concrete, num_examples, raise_if


def is_dataset(data: Any) -> bool:
    """True for a :class:`jaxunlearn.data.Dataset`-like record (has ``x``, ``y`` and ``num_classes``)."""
    return all(hasattr(data, f) for f in ("x", "y", "num_classes"))


def as_arrays(data: Any, name: str = "data") -> Any:
    """A ``Dataset`` becomes ``(x, y)``; any other pytree of arrays is returned as is.

    Raises ``ValueError`` (naming ``name``) when the data is empty or its
    arrays disagree on the number of examples.
    """
    if is_dataset(data):
        data = (data.x, data.y)
    num_examples(data, name)
    return data


def as_xy(data: Any, name: str = "data") -> tuple[Any, Any]:
    """``(x, y)`` arrays from a ``Dataset`` or an ``(x, y)`` pair; ``x``: [N, ...], ``y``: [N] integer labels."""
    data = as_arrays(data, name)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            f"{name} must be a jaxunlearn.data.Dataset or an (x, y) pair of arrays; got {type(data).__name__}."
        )
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    if y.ndim != 1:
        raise ValueError(f"{name}: labels y must have shape [N]; got {y.shape}.")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"{name}: labels y must be integers (class indices); got dtype {y.dtype}.")
    return x, y


def num_classes_of(data: Any, num_classes: int | None, name: str = "data") -> int:
    """``num_classes`` if given, else ``data.num_classes`` of a ``Dataset``; raises ``ValueError`` otherwise."""
    if num_classes is None:
        if is_dataset(data):
            return int(data.num_classes)
        raise ValueError(f"num_classes is needed: pass num_classes=... or give {name} as a jaxunlearn.data.Dataset.")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes}.")
    return int(num_classes)


def check_key(key: Any, name: str = "key") -> None:
    """Raise ``TypeError`` unless ``key`` is a JAX PRNG key (typed, or raw uint32 of shape [2])."""
    if key is None:
        raise TypeError(f"{name} is required: pass a PRNG key such as jax.random.key(0).")
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return
    if dtype == jnp.uint32 and jnp.shape(key)[-1:] == (2,):
        return
    raise TypeError(f"{name} must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)); got {key!r}.")


def check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """``int(value)``, raising ``ValueError`` naming ``name`` unless it is a positive (or non-negative) integer."""
    lowest = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, jnp.integer)) or int(value) < lowest:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {kind} integer; got {value!r}.")
    return int(value)


def ensure_finite(tree: Any, name: str = "params") -> None:
    """Raise ``FloatingPointError`` naming ``name`` when ``tree`` holds NaN or inf; also under ``jit``."""
    if is_concrete(tree):
        check_finite(tree, name)
        return
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    if leaves:
        raise_if(
            ~jnp.all(jnp.stack(leaves)),
            lambda: FloatingPointError(f"{name} holds non-finite values (NaN or inf); check the run that made them."),
        )


def check_same_features(x_a: Any, x_b: Any, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless two inputs share the per-example shape ``x.shape[1:]``."""
    if jnp.shape(x_a)[1:] != jnp.shape(x_b)[1:]:
        raise ValueError(
            f"{name_b} examples have shape {jnp.shape(x_b)[1:]} but {name_a} examples have {jnp.shape(x_a)[1:]}; "
            f"both must come from the same dataset (same per-example shape)."
        )


def request_key(state_key: Any, key: Any | None) -> tuple[Any, Any]:
    """``(key for this request, key stored for the next one)``.

    An explicit ``key`` is used as is (and the stored key still advances);
    otherwise the stored key is split, so consecutive requests draw fresh,
    reproducible randomness.
    """
    next_key, drawn = jax.random.split(state_key)
    if key is None:
        return drawn, next_key
    check_key(key)
    return key, next_key


def key_or_default(key: Any | None, name: str = "key") -> Any:
    """``key`` checked, or ``jax.random.key(0)`` when ``None`` (a documented, reproducible default)."""
    if key is None:
        return jax.random.key(0)
    check_key(key, name)
    return key


def forget_request(params: Any, forget_data: Any, reference_x: Any, reference_name: str = "retain_data") -> tuple:
    """Validate one unlearning request: finite ``params`` and a non-empty ``(x, y)`` forget set.

    Returns the forget set as ``(x, y)``; raises when its per-example shape differs from
    ``reference_x`` (the retained data given to ``init``).
    """
    ensure_finite(params, "params")
    x, y = as_xy(forget_data, "forget_data")
    check_same_features(reference_x, x, reference_name, "forget_data")
    return x, y
