"""SCRUB: student-teacher unlearning (Kurmanji, Triantafillou, Hayes & Triantafillou, NeurIPS 2023).

The student starts as the trained model, the teacher is a frozen copy of it.
With ``T`` the distillation temperature and

    d(x) = T^2 * KL( softmax(z_teacher(x) / T) || softmax(z_student(x) / T) ),   averaged over the batch

(the code's ``DistillKL``; the paper writes it d(student, teacher)), each of
``num_epochs`` epochs runs, in this order,

* a *max* pass over ``D_f`` (only in the first ``msteps`` epochs), minimising ``-d(x_f)``:
  the student moves away from the teacher on the forget set;
* a *min* pass over ``D_r``, minimising ``gamma * CE(z_student(x_r), y_r) + alpha * d(x_r)``:
  the student stays close to the teacher and correct on the retained data.

Both passes share one optimizer (one momentum buffer). Defaults of the JiT
reference code (Foster et al., the SCRUB baseline of the JiT code): SGD lr 5e-4,
momentum 0.9, weight decay 5e-4, gradient-norm clip 1, 3 epochs, ``msteps=2``,
``T = 4``, and the full-class defaults ``alpha = 0.001, gamma = 0.99``; its
sub-class and random-forgetting entry points use ``alpha = 1, gamma = 5``
(:data:`SUBCLASS_RANDOM_WEIGHTS`). The SWA smoothing term of the original is 0
there and is not implemented.

At the first max pass student and teacher agree, so ``-d`` has zero gradient
(``d`` is minimal); the max pass starts to act once the student has moved
(weight decay, the min pass), as in the original without dropout.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, train_epochs
from jaxunlearn.train.classifier import batched_logits
from jaxunlearn.train.losses import distill_kl
from jaxunlearn.train.loop import init_train_state, params_only, weighted_mean
from jaxunlearn.train.optim import torch_sgd

SUBCLASS_RANDOM_WEIGHTS = {"alpha": 1.0, "gamma": 5.0}
"""``alpha``/``gamma`` of the reference's sub-class and random-forgetting runs (``scrub(..., **SUBCLASS_RANDOM_WEIGHTS)``)."""


def scrub_losses(logits_fn: Callable, *, alpha: float, gamma: float, temperature: float) -> tuple[Callable, Callable]:
    """``(max_loss, min_loss)``, both ``loss(params, batch) -> scalar`` (module docstring).

    ``max_loss(params, (x_f, teacher_logits_f)) = -d``;
    ``min_loss(params, (x_r, y_r, teacher_logits_r)) = gamma * CE + alpha * d``.
    """

    def max_loss(params, batch):
        x, teacher_logits = batch
        return -distill_kl(logits_fn(params, x), teacher_logits, temperature)

    def min_loss(params, batch):
        x, y, teacher_logits = batch
        logits = logits_fn(params, x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return gamma * ce + alpha * distill_kl(logits, teacher_logits, temperature)

    return max_loss, min_loss


def scrub(
    logits_fn: Callable[[Any, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    alpha: float = 0.001,
    gamma: float = 0.99,
    temperature: float = 4.0,
    num_epochs: int = 3,
    msteps: int = 2,
    batch_size: int = 64,
    forget_batch_size: int | None = None,
    eval_batch_size: int = 1024,
    num_classes: int | None = None,
) -> Unlearner:
    """SCRUB (module docstring).

    Args:
      logits_fn: ``logits_fn(params, x [B, ...]) -> [B, C]`` (eval mode), student and teacher.
      optimizer: default ``torch_sgd(5e-4, momentum=0.9, weight_decay=5e-4, clip_norm=1.0)``.
      alpha, gamma: weights of the retain distillation and cross-entropy terms (0.001, 0.99).
      temperature: ``T`` (4). num_epochs: 3. msteps: epochs with a max pass (2).
      batch_size: retain batch (64); forget_batch_size: forget batch (default ``batch_size``).
      eval_batch_size: chunk size of the teacher forward passes.
      num_classes: checks the labels given to ``init``.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` freezes the teacher (``params``) through its
      logits on every training example; ``update(params, request, state, *, key) -> (params, state,
      IterativeInfo)`` runs the max/min epochs from ``params`` with one fresh optimizer state
      (``info.loss``: the ``num_epochs + min(msteps, num_epochs)`` pass losses in the order run; the
      epoch-``e`` passes shuffle with ``fold_in(key, 2e)`` (max) and ``fold_in(key, 2e + 1)`` (min)).
    """
    optimizer = torch_sgd(5e-4, momentum=0.9, weight_decay=5e-4, clip_norm=1.0) if optimizer is None else optimizer
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    msteps = check_positive_int(msteps, "msteps", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    if forget_batch_size is None:
        forget_batch_size = batch_size
    forget_batch_size = check_positive_int(forget_batch_size, "forget_batch_size")
    eval_batch_size = check_positive_int(eval_batch_size, "eval_batch_size")
    temperature = check_number(temperature, "temperature", low=0.0, low_inclusive=False)
    max_loss, min_loss = scrub_losses(logits_fn, alpha=alpha, gamma=gamma, temperature=temperature)
    max_loss, min_loss = params_only(max_loss), params_only(weighted_mean(min_loss))

    def prepare(params, data, key):
        del key
        return batched_logits(logits_fn, params, data[0], eval_batch_size)

    def run(params, req, state, key):
        teacher_logits = state.extra
        (x_f, _), (x, y) = req.forget, state.store.data
        forget = (x_f, teacher_logits[req.indices])
        retain = (x, y, teacher_logits)
        train_state, losses = init_train_state(params, optimizer), []
        for epoch in range(num_epochs):
            if epoch < msteps:
                train_state, loss = train_epochs(max_loss, optimizer, None, forget, state=train_state,
                                                 key=jax.random.fold_in(key, 2 * epoch),
                                                 batch_size=forget_batch_size, num_epochs=1)
                losses.append(loss)
            train_state, loss = train_epochs(min_loss, optimizer, None, retain, state=train_state,
                                             key=jax.random.fold_in(key, 2 * epoch + 1), batch_size=batch_size,
                                             num_epochs=1, mask=req.retain)
            losses.append(loss)
        return train_state.params, (jax.numpy.concatenate(losses) if losses else jax.numpy.zeros((0,)))

    return iterative_unlearner(run, prepare=prepare, num_classes=num_classes,
                               model_fn=lambda p, batch: logits_fn(p, batch[0]))
