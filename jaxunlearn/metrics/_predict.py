"""Model outputs over a whole dataset, in fixed-size chunks (shared by the metrics).

Peak memory of a forward pass is set by ``batch_size``; a final short chunk is
evaluated on its own with its true size, so no padding ever changes a result.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn._validation import check_finite, num_examples
from jaxunlearn.train.classifier import batched_logits

LogitsFn = Callable[[Any, Any], jax.Array]


def as_xy(data: Any, name: str = "data") -> tuple[Any, Any]:
    """``(x, y)`` from a ``Dataset`` or a pair, without converting or validating ``y``.

    Unlike :func:`jaxunlearn.train.inputs.as_xy` this accepts ``y = None``:
    the entropy attack and the distances need inputs only.
    """
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) >= 2:
        return data[0], data[1]
    raise TypeError(
        f"{name} must be a jaxunlearn.data.Dataset or an (x, y) pair of arrays with a leading example axis; "
        f"got {type(data).__name__}."
    )


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """Return ``batch_size`` as an int; raise ``ValueError`` unless it is a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name} must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def chunked_apply(fn: Callable[[Any], Any], x: Any, batch_size: int, name: str = "x") -> Any:
    """``concatenate([fn(chunk) for chunk in chunks(x)])`` along the example axis.

    ``fn`` maps a batch (pytree with leading size ``<= batch_size``) to a pytree
    of arrays with the same leading size. Result: that pytree for all ``N``
    examples. A Python loop over consecutive chunks: with a jitted ``fn`` every
    full chunk reuses one compilation; under an outer ``jit`` the loop unrolls.
    """
    n = num_examples(x, name)
    c = min(check_batch_size(batch_size), n)
    outs = [fn(jax.tree.map(lambda a: a[start : start + c], x)) for start in range(0, n, c)]
    if len(outs) == 1:
        return outs[0]
    return jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=0), *outs)


def predict_logits(logits_fn: LogitsFn, params: Any, x: Any, *, batch_size: int = 1024) -> jax.Array:
    """``logits_fn(params, x)`` for all ``N`` examples of ``x``, chunked; shape ``[N, C]``."""
    check_finite(params)
    return batched_logits(logits_fn, params, x, check_batch_size(batch_size))


def predict_probs(logits_fn: LogitsFn, params: Any, x: Any, *, batch_size: int = 1024) -> jax.Array:
    """Softmax of :func:`predict_logits`; shape ``[N, C]``, rows sum to one."""
    return jax.nn.softmax(predict_logits(logits_fn, params, x, batch_size=batch_size), axis=-1)


def check_probs(p: Any, name: str) -> jax.Array:
    """``p`` as a float array ``[N, C]`` (``N >= 1``); raises ``ValueError`` on a wrong rank or no examples."""
    p = jnp.asarray(p)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(
            f"{name} must be a [N, C] array of class probabilities with N >= 1 and C >= 1, got shape {p.shape}."
        )
    if not jnp.issubdtype(p.dtype, jnp.floating):
        raise TypeError(f"{name} must hold floating-point probabilities, got dtype {p.dtype}.")
    return p


def check_same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have equal shapes."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}.")
