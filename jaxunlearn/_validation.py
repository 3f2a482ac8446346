"""Input checks shared by every public function.

Checks on *structure* (pytree shapes, empty data) always run, also under
``jax.jit``.  Checks on *values* (non-finite parameters, a diverging
recursion) raise at once when the values are concrete; under a user's ``jit``
they are staged with :func:`raise_if`, which raises from inside the compiled
computation through ``jax.debug.callback``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when no leaf of ``x`` is a tracer (we are not inside a jit/vmap trace)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


_RECORDED: "collections.deque[BaseException]" = collections.deque(maxlen=64)
_RECORDED_LOCK = threading.Lock()


class _OwnErrorsFilter(logging.Filter):
    """Keep JAX's callback logger quiet about the errors :func:`raise_if` raises on purpose (they reach the caller)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not getattr(error, "_jaxunlearn_staged", False)


logging.getLogger("jax._src.debugging").addFilter(_OwnErrorsFilter())


def raise_if(pred: Any, make_error: Callable[..., Exception], *args: Any) -> None:
    """Raise ``make_error(*args)`` when the boolean ``pred`` is true (any entry of it, under ``vmap``).

    Concrete inputs raise immediately. Traced inputs (under ``jit`` or
    ``vmap``) raise at run time through ``jax.debug.callback``; the error is
    also recorded on the host so that :func:`keep_errors` (and every public
    ``update`` of :mod:`jaxunlearn.methods`) re-raises it with its own class
    instead of JAX's ``JaxRuntimeError``. Only the scalar ``pred`` and the
    small ``args`` cross to the host.
    """
    if is_concrete((pred, args)):
        if bool(np.any(np.asarray(pred))):
            raise make_error(*(np.asarray(a) for a in args))
        return

    def _callback(p, *vals):
        p = np.asarray(p)
        if bool(np.any(p)):
            if p.ndim:  # batched by vmap: report the first failing member
                first = int(np.flatnonzero(p.ravel())[0])
                vals = tuple(np.asarray(v).reshape(p.size, *np.shape(v)[p.ndim:])[first]
                             if np.ndim(v) >= p.ndim and np.shape(v)[:p.ndim] == p.shape else v for v in vals)
            error = make_error(*vals)
            error._jaxunlearn_staged = True
            with _RECORDED_LOCK:
                _RECORDED.append(error)
            raise error

    jax.debug.callback(_callback, pred, *args)


def _recorded_cause(runtime_error: BaseException) -> BaseException | None:
    """The recorded error of :func:`raise_if` whose text appears in ``runtime_error`` (JAX quotes it)."""
    text = str(runtime_error)
    with _RECORDED_LOCK:
        for error in reversed(_RECORDED):
            if f"{type(error).__name__}: {error}" in text:
                _RECORDED.remove(error)
                return error
    return None


def wait_for_errors(out: Any) -> Any:
    """Wait for ``out`` (unless traced) and return it, so that an error staged by :func:`raise_if` in the program
    that computes it surfaces here, inside :class:`keep_errors`, rather than at some later use of the outputs.

    JAX dispatches a compiled program asynchronously when the device is still busy with an earlier one; the
    error of a host callback then travels with the outputs (see :class:`keep_errors`).
    """
    if is_concrete(out):
        jax.block_until_ready(out)
    return out


class keep_errors(contextlib.ContextDecorator):
    """Re-raise errors staged by :func:`raise_if` inside compiled code with their own class.

    Under ``jax.jit`` a Python exception raised by a host callback reaches
    the caller as ``jax.errors.JaxRuntimeError`` whose message quotes it. This
    context manager (or decorator) turns such an error back into the original
    exception object (``LissaDivergenceError``, ``ValueError``,
    ``FloatingPointError``, ...). Every public ``update`` of
    :mod:`jaxunlearn.methods` already runs inside it; wrap *your own* jitted
    function (or use :func:`jaxunlearn.jit`) to get the same behaviour::

        update = ju.jit(unlearner.update)          # or: ju.keep_errors()(jax.jit(unlearner.update))
        with ju.keep_errors():
            params, state, info = jax.block_until_ready(jax.jit(unlearner.update)(params, request, state, key=key))

    JAX runs a compiled program asynchronously when the device is still busy with an earlier one; an error
    raised while the program runs then reaches Python only when its outputs are waited for. So the ``with``
    form needs the ``jax.block_until_ready`` inside it; the decorator form, :func:`jaxunlearn.jit` and every
    public function of the library wait for their outputs themselves (:func:`wait_for_errors`).
    """

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            with self:
                return wait_for_errors(fn(*args, **kwargs))

        return call

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and isinstance(exc, jax.errors.JaxRuntimeError):
            cause = _recorded_cause(exc)
            if cause is not None:
                raise cause.with_traceback(None) from None
        return False


def jit(fn: Callable | None = None, **jit_kwargs: Any) -> Callable:
    """``jax.jit`` whose calls keep the error classes of :func:`raise_if` (see :func:`keep_errors`).

    Same arguments as ``jax.jit``; usable as ``jaxunlearn.jit(fn)`` or ``@jaxunlearn.jit``.
    """
    if fn is None:
        return functools.partial(jit, **jit_kwargs)
    jitted = jax.jit(fn, **jit_kwargs)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with keep_errors():
            return wait_for_errors(jitted(*args, **kwargs))

    call.lower = jitted.lower  # type: ignore[attr-defined]
    return call


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
    """Raise ``FloatingPointError`` naming the first leaf of ``tree`` that holds NaN or inf; also under ``jit``.

    Only one boolean per leaf crosses to the host (no copy of the parameters); outside ``jit`` the
    flags come from one compiled program per tree structure and shapes.
    """
    paths, leaves = [], []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            paths.append(jax.tree_util.keystr(path))
            leaves.append(leaf)
    if not leaves:
        return
    ok = _finite_flags(leaves)

    def make(first_bad):
        return FloatingPointError(
            f"{name}{paths[int(first_bad)]} holds non-finite values (NaN or inf). Check the training run that "
            f"produced {name}, or reload a checkpoint, before unlearning."
        )

    raise_if(~jnp.all(ok), make, jnp.argmin(ok))


@jax.jit
def _finite_flags(leaves: list) -> jax.Array:
    """``[all(isfinite(leaf)) for leaf in leaves]`` as a bool vector."""
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


def check_key(key: Any, name: str = "key") -> None:
    """Raise ``TypeError`` unless ``key`` is a JAX PRNG key (typed, or raw uint32 with last axis 2)."""
    if key is None:
        raise TypeError(f"{name} is required: pass a PRNG key such as jax.random.key(0).")
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return
    if dtype == jnp.uint32 and jnp.shape(key)[-1:] == (2,):
        return
    raise TypeError(f"{name} must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)); got {key!r}.")


def check_labels(y: Any, num_classes: int | None, name: str = "labels") -> None:
    """Raise ``ValueError`` when an integer label is negative or (with ``num_classes``) ``>= num_classes``.

    Also under ``jit``; the message gives the offending range and the valid one. Concrete labels are
    checked on the host (no program is compiled for them).
    """
    y = np.asarray(y) if is_concrete(y) else y
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"{name} must be integer class indices; got dtype {y.dtype}.")
    if y.size == 0:
        return
    upper = jnp.iinfo(jnp.int32).max if num_classes is None else int(num_classes)
    lo, hi = (y.min(), y.max()) if isinstance(y, np.ndarray) else (jnp.min(y), jnp.max(y))
    valid = f"0..{upper - 1}" if num_classes is not None else "non-negative"

    def make(low, high):
        return ValueError(
            f"{name} hold values from {int(low)} to {int(high)}, outside the valid class indices {valid}. "
            "Relabel the data to 0..C-1 (or pass the right num_classes)."
        )

    raise_if((lo < 0) | (hi >= upper), make, lo, hi)


def check_positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """``int(value)``, raising ``ValueError`` naming ``name`` unless it is a positive (or non-negative) integer."""
    lowest = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < lowest:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {kind} integer; got {value!r}.")
    return int(value)


def check_number(value: Any, name: str, *, low: float = 0.0, low_inclusive: bool = True,
                 high: float | None = None) -> float:
    """``float(value)``, raising ``ValueError`` naming ``name`` unless it is a finite number in the range."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    ok = ok and np.isfinite(value) and (value >= low if low_inclusive else value > low)
    ok = ok and (high is None or value <= high)
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + ("" if high is None else f" and <= {high:g}")
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    return float(value)


def check_same_features(x_a: Any, x_b: Any, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless two inputs share the per-example shape ``x.shape[1:]``."""
    if jnp.shape(x_a)[1:] != jnp.shape(x_b)[1:]:
        raise ValueError(
            f"{name_b} examples have shape {jnp.shape(x_b)[1:]} but {name_a} examples have {jnp.shape(x_a)[1:]}; "
            f"both must come from the same dataset (same per-example shape)."
        )


def check_fits_model(fn: Callable, params: Any, data: Any, name: str = "data") -> None:
    """Raise ``ValueError`` naming ``name`` when ``fn(params, one example of data)`` fails to trace.

    Evaluated abstractly (``jax.eval_shape``, nothing computed), so a dataset of the
    wrong per-example shape is reported by name instead of inside the model.
    """
    first = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1,) + tuple(jnp.shape(a)[1:]), jnp.result_type(a)), data)
    try:
        jax.eval_shape(fn, params, first)
    except Exception as error:  # flax shape errors, dot_general mismatches, ...: all mean the data does not fit
        shapes = jax.tree.map(lambda a: tuple(jnp.shape(a)[1:]), data)
        raise ValueError(
            f"{name} does not fit the model: per-example shapes {shapes} fail in the forward pass "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]}). Pass the data the model was trained on."
        ) from None


def check_classifier_data(logits_fn: Callable, params: Any, x: Any, y: Any = None, name: str = "data") -> None:
    """Raise ``ValueError`` naming ``name`` when ``x`` does not fit ``logits_fn(params, x)`` (see
    :func:`check_fits_model`) or the labels ``y`` (when given) lie outside ``0..C-1`` (see :func:`check_labels`),
    with ``C`` the width of the logits, evaluated abstractly (``jax.eval_shape``, nothing computed)."""
    check_fits_model(logits_fn, params, x, name)
    if y is not None:
        one = jax.ShapeDtypeStruct((1,) + tuple(jnp.shape(x)[1:]), jnp.result_type(x))
        check_labels(y, jax.eval_shape(logits_fn, params, one).shape[-1], f"{name} labels y")
