"""Dataset arguments of the training loops: a ``Dataset`` or a pytree of arrays, as plain arrays.

Datasets arrive either as a :class:`jaxunlearn.data.Dataset` (a NamedTuple with
``x``, ``y``, ``num_classes``, ``name``) or as a pytree of arrays with a
leading example axis (classifiers: an ``(x, y)`` tuple). These helpers turn
both into plain array pytrees; the checks themselves live in
:mod:`jaxunlearn._validation`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxunlearn._validation import num_examples


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
