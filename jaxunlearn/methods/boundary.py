"""Boundary Unlearning: Boundary Shrink and Boundary Expanding (Chen, Gao, Zhang, Wang & Li, "Boundary
Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision Space", CVPR 2023).

Both act on the forget examples only and move the decision boundary instead of the weights' content.

**Boundary Shrink.** Each forget example ``(x, y)`` is relabelled with its *nearest but incorrect*
class, found by one FGSM step of size ``epsilon`` on the trained model ``f_0``:

    x' = x + epsilon * sign(grad_x CE(f_0(x), y)),        y_nbi = argmax_c f_0(x')_c,

and the model is fine-tuned on ``{(x, y_nbi)}`` (mean cross-entropy). When the step does not cross
the boundary ``y_nbi = y``, as in the reference (which reports the share of labels that changed as its
"attack success ratio"; here ``info.relabelled``). The reference computes ``y_nbi`` batch by batch
with the frozen original model, so the labels are the same every epoch; here they are computed once.
It takes the step in pixel units of images in [0, 1] and clips to [0, 1]; here the step is in the
units of the stored inputs, unclipped.

**Boundary Expanding.** The output layer gets a *shadow* class ``C``: a new row ``(w_s, b_s)`` of the
last dense layer (Xavier-normal ``w_s``, ``b_s = 0``). The whole widened network is fine-tuned to put
every forget example in the shadow class (cross-entropy over ``C + 1`` logits with label ``C``), then
the shadow row is pruned, leaving a ``C``-way model whose features for the forget set have moved
towards a direction no remaining class uses. No output layer is grown here: the logits are affine
in the last layer's kernel ``W [D, C]`` and bias ``b``, so the shadow logit ``phi(x) . w_s + b_s`` is
column 0 of ``logits_fn`` evaluated with ``W[:, 0] = w_s`` and ``b[0] = 0`` (plus ``b_s``). This
needs the last operation of ``logits_fn`` to be that dense layer (true of every model in
``jaxunlearn.models``) and costs a second forward pass per step. The layer is found in ``params`` as
the only 2-D leaf of shape ``[D, C]`` (with its sibling ``[C]`` bias, if any), or named by ``head``.

Defaults of the reference code (CIFAR-10, AllCNN/ResNet-18): 10 epochs over the forget set, batch
64, SGD lr 1e-5, momentum 0.9, no weight decay; ``epsilon = 0.1`` (the FGSM bound).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.curvature.chunks import chunked_map
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, train_epochs
from jaxunlearn.train.loop import params_only
from jaxunlearn.train.optim import torch_sgd

__all__ = ["BoundaryShrinkInfo", "boundary_expand", "boundary_shrink", "find_head", "nearest_incorrect_labels"]


class BoundaryShrinkInfo(NamedTuple):
    """``loss``: epoch losses ``[num_epochs]``; ``relabelled``: share of forget examples with ``y_nbi != y``."""

    loss: jax.Array
    relabelled: jax.Array


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _default_optimizer(optimizer):
    return torch_sgd(1e-5, momentum=0.9) if optimizer is None else optimizer


def _model_fn(logits_fn):
    return lambda params, batch: logits_fn(params, batch[0])


def nearest_incorrect_labels(logits_fn: Callable[[Any, jax.Array], jax.Array], params: Any, x: jax.Array,
                             y: jax.Array, epsilon: float, chunk_size: int = 256) -> jax.Array:
    """``y_nbi`` of Boundary Shrink (module docstring) for inputs ``x [k, ...]``, labels ``y [k]``; int32 ``[k]``.

    The FGSM step uses each example's own input gradient (``logits_fn`` in eval mode treats the
    examples of a batch independently); chunks of ``chunk_size`` bound the memory.
    """

    def chunk_labels(chunk):
        xc, yc = chunk
        xc = xc.astype(jnp.result_type(xc.dtype, jnp.float32))
        grad = jax.grad(lambda z: _cross_entropy(logits_fn(params, z), yc))(xc)
        return jnp.argmax(logits_fn(params, xc + epsilon * jnp.sign(grad)), axis=-1).astype(jnp.int32)

    return chunked_map(chunk_labels, (x, y), chunk_size)


def boundary_shrink(
    logits_fn: Callable[[Any, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    epsilon: float = 0.1,
    num_epochs: int = 10,
    batch_size: int = 64,
    num_classes: int | None = None,
) -> Unlearner:
    """Boundary Shrink (module docstring).

    Args:
      logits_fn: ``logits_fn(params, x [B, ...]) -> [B, C]`` (eval mode).
      optimizer: default ``torch_sgd(1e-5, momentum=0.9)`` (the reference's SGD).
      epsilon: the FGSM step ``epsilon > 0`` in input units (0.1).
      num_epochs: passes over the relabelled forget set (10). batch_size: 64 (also the FGSM chunk).
      num_classes: checks the labels given to ``init``.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, BoundaryShrinkInfo)`` relabels the
      requested examples at ``params`` and fine-tunes on them with a fresh optimizer state.
    """
    optimizer = _default_optimizer(optimizer)
    epsilon = check_number(epsilon, "epsilon", low=0.0, low_inclusive=False)
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    loss = params_only(lambda p, batch: _cross_entropy(logits_fn(p, batch[0]), batch[1]))

    def run(params, req, state, key):
        del state
        x_f, y_f = req.forget
        labels = nearest_incorrect_labels(logits_fn, params, x_f, y_f, epsilon, batch_size)
        train_state, losses = train_epochs(loss, optimizer, params, (x_f, labels), key=key, batch_size=batch_size,
                                           num_epochs=num_epochs)
        return train_state.params, BoundaryShrinkInfo(losses, jnp.mean(labels != y_f, dtype=jnp.float32))

    return iterative_unlearner(run, num_classes=num_classes, model_fn=_model_fn(logits_fn))


def _key_name(entry: Any) -> Any:
    for attribute in ("key", "name", "idx"):
        if hasattr(entry, attribute):
            return getattr(entry, attribute)
    return entry


def find_head(params: Any, num_classes: int, head: Sequence[Any] | None = None) -> tuple[tuple, tuple | None]:
    """``(kernel_path, bias_path)``: the key paths of the output layer's kernel ``[D, C]`` and bias ``[C]``.

    ``head``: the keys of the node holding that layer (e.g. ``("linear3",)``, ``("fc",)``); ``None``
    searches the whole pytree. Raises ``ValueError`` unless exactly one 2-D leaf of shape ``[D, C]``
    is found; ``bias_path`` is ``None`` when that node has no ``[C]`` leaf.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    where = None if head is None else tuple(head)

    def inside(path):
        return where is None or tuple(_key_name(k) for k in path[:-1]) == where

    kernels = [path for path, a in leaves if jnp.ndim(a) == 2 and jnp.shape(a)[1] == num_classes and inside(path)]
    if len(kernels) != 1:
        found = ", ".join(jax.tree_util.keystr(p) for p in kernels) or "none"
        raise ValueError(
            f"boundary_expand needs the output layer: exactly one 2-D weight [D, {num_classes}] "
            f"{'in params' if where is None else f'under head={where!r}'}, found {found}. "
            "Pass head=(the keys of the output layer's node), e.g. head=('fc',)."
        )
    parent = kernels[0][:-1]
    biases = [path for path, a in leaves if path[:-1] == parent and jnp.shape(a) == (num_classes,)]
    return kernels[0], (biases[0] if biases else None)


def boundary_expand(
    logits_fn: Callable[[Any, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_classes: int,
    head: Sequence[Any] | None = None,
    num_epochs: int = 10,
    batch_size: int = 64,
) -> Unlearner:
    """Boundary Expanding (module docstring).

    Args:
      logits_fn: ``logits_fn(params, x [B, ...]) -> [B, C]`` (eval mode) whose last operation is the
        dense output layer.
      optimizer: default ``torch_sgd(1e-5, momentum=0.9)``; it trains the parameters and the shadow row.
      num_classes: ``C``; the shadow class is ``C`` (labels given to ``init`` are checked).
      head: keys of the output layer's node in ``params`` (:func:`find_head`); ``None`` finds it.
      num_epochs: passes over the forget set (10). batch_size: 64.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, IterativeInfo)``: ``key`` splits into
      the shadow row's draw and the shuffles; the returned parameters have the structure of ``params``
      (the shadow row pruned).
    """
    optimizer = _default_optimizer(optimizer)
    num_classes = check_positive_int(num_classes, "num_classes")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")

    def run(params, req, state, key):
        del state
        kernel_path, bias_path = find_head(params, num_classes, head)

        def shadow_logit(p, w_s, b_s, x):
            def swap(path, a):
                if path == kernel_path:
                    return a.at[:, 0].set(w_s)
                return a.at[0].set(0.0) if path == bias_path else a

            return logits_fn(jax.tree_util.tree_map_with_path(swap, p), x)[:, 0] + b_s

        def loss(trainable, batch):
            p, (w_s, b_s) = trainable
            x, y = batch
            logits = jnp.concatenate([logits_fn(p, x), shadow_logit(p, w_s, b_s, x)[:, None]], axis=-1)
            return _cross_entropy(logits, y)

        k_shadow, k_train = jax.random.split(key)
        kernel = dict(jax.tree_util.tree_flatten_with_path(params)[0])[kernel_path]
        width = kernel.shape[0]
        w_s = jax.random.normal(k_shadow, (width,), kernel.dtype) * jnp.sqrt(2.0 / (width + num_classes + 1))
        x_f = req.forget[0]
        shadow_class = jnp.full((x_f.shape[0],), num_classes, jnp.int32)
        train_state, losses = train_epochs(params_only(loss), optimizer, (params, (w_s, jnp.zeros((), kernel.dtype))),
                                           (x_f, shadow_class), key=k_train, batch_size=batch_size,
                                           num_epochs=num_epochs)
        return train_state.params[0], losses

    return iterative_unlearner(run, num_classes=num_classes, model_fn=_model_fn(logits_fn))
