"""Input checks shared by every public function.

Checks on *structure* (pytree shapes, empty data) always run, also under
``jax.jit``.  Checks on *values* (non-finite parameters, a diverging
recursion) raise at once when the values are concrete; under a user's ``jit``
they are staged with :func:`raise_if`, which raises from inside the compiled
computation through ``jax.debug.callback``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when no leaf of ``x`` is a tracer (we are not inside a jit/vmap trace)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def raise_if(pred: Any, make_error: Callable[..., Exception], *args: Any) -> None:
    """Raise ``make_error(*args)`` when the boolean scalar ``pred`` is true.

    Concrete inputs raise immediately. Traced inputs raise at run time through
    ``jax.debug.callback`` (the message reaches the user inside JAX's runtime
    error), so a jitted caller never gets garbage back silently.
    """
    if is_concrete((pred, args)):
        if bool(pred):
            raise make_error(*(np.asarray(a) for a in args))
        return

    def _callback(p, *vals):
        if bool(p):
            raise make_error(*vals)

    jax.debug.callback(_callback, pred, *args)


def check_same_structure(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are pytrees of equal structure and leaf shapes."""
    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    if sa != sb:
        raise ValueError(
            f"{name_b} must have the same pytree structure as {name_a}; got\n  {name_a}: {sa}\n  {name_b}: {sb}\n"
            f"Build {name_b} with jax.tree.map over {name_a} (for example jax.tree.map(jnp.zeros_like, {name_a}))."
        )
    for path_leaf_a, leaf_b in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        path, leaf_a = path_leaf_a
        if jnp.shape(leaf_a) != jnp.shape(leaf_b):
            raise ValueError(
                f"shape mismatch at {jax.tree_util.keystr(path)}: {name_a} has {jnp.shape(leaf_a)}, "
                f"{name_b} has {jnp.shape(leaf_b)}."
            )


def num_examples(data: Any, name: str = "data") -> int:
    """Leading-axis length shared by every leaf of ``data``; raises on empty or ragged data."""
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError(f"{name} is empty: it holds no arrays. Pass a pytree of arrays with a leading example axis.")
    sizes = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else -1 for leaf in leaves}
    if -1 in sizes:
        raise ValueError(f"every array in {name} needs a leading example axis; got a scalar leaf.")
    if len(sizes) != 1:
        raise ValueError(f"the arrays in {name} disagree on the number of examples: leading sizes {sorted(sizes)}.")
    (n,) = sizes
    if n == 0:
        raise ValueError(f"{name} is empty (0 examples). Unlearning and curvature need at least one example.")
    return n


def check_finite(tree: Any, name: str = "params") -> None:
    """Raise ``FloatingPointError`` naming the first leaf of ``tree`` holding NaN or inf.

    A no-op on traced values (use :func:`raise_if` for those).
    """
    if not is_concrete(tree):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.isfinite(arr).sum())
            raise FloatingPointError(
                f"{name}{jax.tree_util.keystr(path)} holds {bad} non-finite value(s) (NaN or inf). "
                f"Check the training run that produced {name}, or reload a checkpoint, before unlearning."
            )
