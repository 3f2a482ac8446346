"""Fine-tuning on the retained data (the "finetune" baseline of the SSD and JiT code).

Plain minibatch training of the trained model on the retain set ``D_r`` only,

    theta <- theta - lr * grad (1/|B|) sum_{z in B} l(theta; z),   B ~ D_r,

hoping the forget set's influence decays ("catastrophic forgetting"). The
reference code (Foster et al., SSD, AAAI 2024, strategy ``finetune``) runs
5 epochs of SGD with lr 0.02, momentum 0.9 and weight decay 5e-4 at a constant
learning rate; those are the defaults here (PyTorch-style coupled weight decay,
:func:`jaxunlearn.train.torch_sgd`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from jaxunlearn._validation import check_positive_int
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, retain_training
from jaxunlearn.train.optim import torch_sgd


def finetune(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_epochs: int = 5,
    batch_size: int = 64,
    num_classes: int | None = None,
) -> Unlearner:
    """Fine-tune on the retained data (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar``, the mean loss over the batch (eval mode).
      optimizer: optax optimizer; default ``torch_sgd(0.02, momentum=0.9, weight_decay=5e-4)``.
      num_epochs: passes over ``D_r`` (default 5); 0 returns the parameters unchanged.
      batch_size: minibatch size (64, the SSD code's full/sub-class loaders).
      num_classes: checks the labels given to ``init`` (a ``Dataset`` brings its own).

    Returns:
      ``Unlearner`` (:mod:`jaxunlearn.methods.base`): ``init(params, data, *, key)`` stores the
      training data; ``update(params, request, state, *, key) -> (params, state, IterativeInfo)``
      trains ``num_epochs`` shuffled epochs on the examples still alive after the request (``D_r``),
      from ``params`` with a fresh optimizer state. The forget examples are never trained on.
    """
    optimizer = torch_sgd(0.02, momentum=0.9, weight_decay=5e-4) if optimizer is None else optimizer
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    run = retain_training(loss_fn, optimizer, batch_size=batch_size, num_epochs=num_epochs)
    return iterative_unlearner(run, num_classes=num_classes, model_fn=loss_fn)
