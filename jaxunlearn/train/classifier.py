"""Classifier training and evaluation for flax.linen modules.

Training minimises the mean softmax cross-entropy (``jaxunlearn.models.training_loss``)

    L(theta; B) = -(1/|B|) sum_{(x, y) in B} log softmax(f_theta(x))_y

in *train mode*: ``module.apply(..., train=True)`` with a fresh dropout key per
step (rng stream ``"dropout"``) and every non-``params`` collection (batch-norm
``batch_stats``) mutable and carried in ``TrainState.model_state``.
Evaluation is in eval mode through a ``logits_fn(params, x) -> logits``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_classifier_data, check_key, check_positive_int, num_examples
from jaxunlearn.curvature.chunks import chunked_map, chunked_sum
from jaxunlearn.models.classifier import logits_fn as model_logits_fn
from jaxunlearn.models.classifier import split_variables, training_loss
from jaxunlearn.train.inputs import as_xy
from jaxunlearn.train.loop import fit, init_train_state
from jaxunlearn.train.seeds import train_many_seeds


def train_classifier(
    module: Any,
    variables: dict,
    train_data: Any,
    *,
    optimizer: optax.GradientTransformation,
    num_epochs: int,
    batch_size: int,
    key: Any,
    progress: bool = True,
    eval_data: Any = None,
    desc: str = "train",
) -> tuple[dict, dict]:
    """Train a flax classifier with minibatch cross-entropy (module docstring) and :func:`fit`.

    Args:
      module: flax.linen module with ``__call__(x, train: bool = False)``.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      train_data: ``Dataset`` or ``(x [N, ...], y [N])``.
      optimizer, num_epochs, batch_size, key, progress: as in :func:`fit`.
      eval_data: optional ``Dataset`` / ``(x, y)``: eval-mode accuracy after each epoch
        lands in ``history["eval_accuracy"]``.

    Returns:
      ``(new variables, history)``; ``history`` as returned by :func:`fit`.

    Raises ``ValueError`` naming ``train_data`` (or ``eval_data``) when its inputs do not fit
    the model or a label lies outside ``0..C-1``, ``C`` the width of the model's logits.
    """
    params, model_state = split_variables(variables)
    x, y = as_xy(train_data, "train_data")
    _check_classifier_data(module, variables, x, y, "train_data")
    eval_fn = None
    if eval_data is not None:
        eval_xy = as_xy(eval_data, "eval_data")
        _check_classifier_data(module, variables, *eval_xy, "eval_data")

        def eval_logits(variables, x):  # one function for every epoch: accuracy compiles once
            return model_logits_fn(module, variables)(variables["params"], x)

        def eval_fn(p, s):
            return {"eval_accuracy": _accuracy(eval_logits, {"params": p, **s}, *eval_xy, 1024)}

    state = init_train_state(params, optimizer, model_state)
    state, history = fit(
        training_loss(module), optimizer, state, (x, y),
        batch_size=batch_size, num_epochs=num_epochs, key=key, progress=progress, desc=desc, eval_fn=eval_fn,
    )
    return {"params": state.params, **state.model_state}, history


def train_classifier_many_seeds(
    module: Any,
    train_data: Any,
    keys: Any,
    *,
    optimizer: optax.GradientTransformation,
    num_epochs: int,
    batch_size: int,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Initialise and train one classifier per key with ``jax.vmap`` (see :func:`train_many_seeds`).

    Seed ``s`` is initialised by ``module.init(init_key_s, x[:1], train=False)`` with
    ``init_key_s, train_key_s = jax.random.split(keys[s])``. Returns stacked variables
    (leading seed axis ``S``) and the history (``history["loss"]``: ``[S, num_epochs]``).
    Raises ``ValueError`` naming ``train_data`` when a label lies outside ``0..C-1``, ``C`` the width
    of the model's logits.
    """
    x, y = as_xy(train_data, "train_data")
    check_key(keys, "keys")
    init_variables = _InitVariables(module, tuple(x.shape[1:]), jnp.result_type(x).name)
    first_key = jax.random.split(keys[0])[0]
    shapes = jax.eval_shape(init_variables, first_key)
    _check_classifier_data(module, shapes, x, y, "train_data")
    # the non-parameter collections (batch-norm statistics) start equal for every seed
    model_state = split_variables(jax.jit(init_variables)(first_key))[1] if len(shapes) > 1 else {}
    state, history = train_many_seeds(
        training_loss(module), optimizer, _InitParams(init_variables), (x, y), keys,
        batch_size=batch_size, num_epochs=num_epochs, model_state=model_state, progress=progress,
    )
    return {"params": state.params, **state.model_state}, history


@dataclasses.dataclass(frozen=True)
class _InitVariables:
    """``key -> module.init(key, zeros((1, *input_shape)), train=False)``; equal for equal settings, so the
    programs compiled for one call of :func:`train_classifier_many_seeds` serve the next."""

    module: Any
    input_shape: tuple[int, ...]
    dtype: str

    def __call__(self, key: Any) -> Any:
        return self.module.init(key, jnp.zeros((1, *self.input_shape), self.dtype), train=False)


@dataclasses.dataclass(frozen=True)
class _InitParams:
    """The ``"params"`` collection of :class:`_InitVariables`."""

    init_variables: _InitVariables

    def __call__(self, key: Any) -> Any:
        return self.init_variables(key)["params"]


def _check_classifier_data(module: Any, variables: Any, x: Any, y: Any, name: str) -> None:
    """:func:`jaxunlearn._validation.check_classifier_data` for a flax module in eval mode."""
    check_classifier_data(lambda v, xb: module.apply(v, xb, train=False), variables, x, y, name)


def as_pytree_fn(fn: Callable) -> jax.tree_util.Partial:
    """``fn`` as a ``jax.tree_util.Partial``, a pytree that a jitted function takes as an ordinary argument.

    A ``Partial`` (:func:`jaxunlearn.models.logits_fn` returns one) is compiled for by its function and the
    shapes of its arrays, so functions of equal modules share one program; any other callable becomes the
    function of an argument-less ``Partial``, compiled once per object as a static argument would be.
    """
    return fn if isinstance(fn, jax.tree_util.Partial) else jax.tree_util.Partial(fn)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _correct_count(logits_fn, params, x, y, batch_size):
    def count(chunk, _):
        cx, cy = chunk
        return jnp.sum(jnp.argmax(logits_fn(params, cx), axis=-1) == cy)

    return chunked_sum(count, (x, y), batch_size)


def accuracy(logits_fn: Callable[[Any, jax.Array], jax.Array], params: Any, data: Any, batch_size: int = 1024) -> float:
    """Sample-weighted top-1 accuracy in [0, 1]: ``(1/N) sum_i [argmax_c f(params, x_i)_c == y_i]``.

    ``logits_fn(params, x [B, ...]) -> [B, C]``; ``data``: ``Dataset`` or ``(x [N, ...], y [N])``;
    evaluated in chunks of ``batch_size`` (jitted, compiled as :func:`batched_logits` is). Unlike the
    SSD reference's mean of per-batch accuracies, every example weighs the same.
    """
    x, y = as_xy(data, "data")
    batch_size = check_positive_int(batch_size, "batch_size")
    n = num_examples((x, y), "data")
    check_classifier_data(logits_fn, params, x, y, "data")
    return _accuracy(logits_fn, params, x, y, min(batch_size, n))


def _accuracy(logits_fn, params, x, y, batch_size):
    """:func:`accuracy` of checked arrays ``x``, ``y`` (``batch_size <= N``)."""
    return float(_correct_count(as_pytree_fn(logits_fn), params, x, y, batch_size)) / x.shape[0]


def batched_logits(logits_fn: Callable[[Any, jax.Array], jax.Array], params: Any, x: jax.Array, batch_size: int = 1024) -> jax.Array:
    """``logits_fn(params, x)`` for all ``N`` inputs, computed ``batch_size`` at a time; [N, C].

    Full chunks run in ``lax.map``; a final short chunk is evaluated once with its true
    size (no padding). Jittable; peak memory is that of one chunk; compiled once per
    shape and ``logits_fn`` (:func:`as_pytree_fn`: the functions of equal modules from
    :func:`jaxunlearn.models.logits_fn` share one program, other callables one per object).
    """
    n = num_examples(x, "x")
    batch_size = min(check_positive_int(batch_size, "batch_size"), n)
    try:
        return _batched_logits(as_pytree_fn(logits_fn), params, x, batch_size)
    except TypeError as err:
        if "hash" not in str(err):
            raise
        return _batched_logits.__wrapped__(logits_fn, params, x, batch_size)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _batched_logits(logits_fn, params, x, batch_size):
    return chunked_map(lambda chunk: logits_fn(params, chunk), x, batch_size)
