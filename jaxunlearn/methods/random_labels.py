"""Random-label fine-tuning, "RL" of the sparsity and saliency unlearning papers.

Each of ``E`` epochs makes two passes with one optimizer (its state carried
from pass to pass and epoch to epoch):

* over the forget set ``D_f`` with freshly drawn labels
  ``y~_i ~ Uniform{0, ..., C-1}`` (new ones every epoch), minimising
  ``(1/|B|) sum_{i in B} CE(f_theta(x_i), y~_i)``;
* over the retained set ``D_r`` with the true labels.

This is the CIFAR-10 branch of the reference code (``unlearn/RL.py`` of
OPTML-Group/Unlearn-Saliency, the baseline of Jia et al., "Model Sparsity Can
Simplify Machine Unlearning", NeurIPS 2023, and of Fan et al., "SalUn",
ICLR 2024). The originals draw the labels from **all** ``C`` classes, so a
label equals the true one with probability ``1/C``; ``wrong_labels=True``
draws from the ``C - 1`` other classes instead
(:func:`~jaxunlearn.methods.amnesiac.random_other_labels`, Amnesiac's rule).
Their CIFAR-100 branch instead shuffles the relabelled forget set into ``D_r``
(one pass per epoch): that is :func:`~jaxunlearn.methods.amnesiac.amnesiac`
with SGD. Defaults: the reference CIFAR-10 / ResNet-18 example, 10 epochs of
SGD lr 0.013, momentum 0.9, weight decay 5e-4, batch 256, constant learning
rate (its MultiStepLR milestones 91 and 136 are never reached in 10 epochs).
SalUn (:mod:`jaxunlearn.methods.salun`) is this training restricted to the
salient weights.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_positive_int
from jaxunlearn.methods.amnesiac import random_other_labels
from jaxunlearn.methods.base import DataState, Request, Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, scan_epochs, train_epochs
from jaxunlearn.train.loop import init_train_state, params_only, weighted_mean
from jaxunlearn.train.optim import torch_sgd

__all__ = ["random_label_epochs", "random_labels"]


def random_label_epochs(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation,
    params: Any,
    req: Request,
    store: DataState,
    key: jax.Array,
    *,
    num_classes: int,
    num_epochs: int,
    batch_size: int,
    wrong_labels: bool = False,
) -> tuple[Any, jax.Array]:
    """The training of one random-label request (module docstring), from ``params``.

    Epoch ``e`` uses ``k = fold_in(key, e)`` split into ``(label, forget, retain)`` keys: the labels
    of the forget pass, and the shuffles of the two passes. The retained pass runs over ``store.data``
    masked by ``req.retain``. Returns ``(new_params, losses [num_epochs, 2])`` (forget, retain pass).
    """
    x_f, y_f = req.forget
    draw = ((lambda k: random_other_labels(k, y_f, num_classes)) if wrong_labels
            else (lambda k: jax.random.randint(k, y_f.shape, 0, num_classes, jnp.int32)))
    forget_loss, retain_loss = params_only(loss_fn), params_only(weighted_mean(loss_fn))

    def epoch(train_state, e, epoch_key):
        del e
        k_label, k_forget, k_retain = jax.random.split(epoch_key, 3)
        train_state, l_forget = train_epochs(forget_loss, optimizer, None, (x_f, draw(k_label)), state=train_state,
                                             key=k_forget, batch_size=batch_size, num_epochs=1)
        train_state, l_retain = train_epochs(retain_loss, optimizer, None, store.data, state=train_state,
                                             key=k_retain, batch_size=batch_size, num_epochs=1, mask=req.retain)
        return train_state, jnp.concatenate([l_forget, l_retain])

    train_state, losses = scan_epochs(epoch, init_train_state(params, optimizer), num_epochs=num_epochs, key=key)
    return train_state.params, losses


def random_labels(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_classes: int,
    num_epochs: int = 10,
    batch_size: int = 256,
    wrong_labels: bool = False,
) -> Unlearner:
    """Random-label fine-tuning (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean cross-entropy (eval mode).
      optimizer: default ``torch_sgd(0.013, momentum=0.9, weight_decay=5e-4)``.
      num_classes: ``C``, the classes the labels are drawn from (labels given to ``init`` are checked).
      num_epochs: epochs, each a forget pass then a retain pass (10). batch_size: both passes (256).
      wrong_labels: draw from the ``C - 1`` classes other than the true one (default ``False``:
        uniform over all ``C``, as the originals).

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, IterativeInfo)`` trains from
      ``params`` with a fresh optimizer state; ``info.loss`` is ``[num_epochs, 2]`` (forget, retain).
    """
    optimizer = torch_sgd(0.013, momentum=0.9, weight_decay=5e-4) if optimizer is None else optimizer
    num_classes = check_positive_int(num_classes, "num_classes")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")

    def run(params, req, state, key):
        return random_label_epochs(loss_fn, optimizer, params, req, state.store, key, num_classes=num_classes,
                                   num_epochs=num_epochs, batch_size=batch_size, wrong_labels=wrong_labels)

    return iterative_unlearner(run, num_classes=num_classes, model_fn=loss_fn)
