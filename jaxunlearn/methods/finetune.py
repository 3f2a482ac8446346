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

from jaxunlearn.methods.base import RetainState, Unlearner, init_retain_state
from jaxunlearn.train.inputs import check_positive_int, forget_request, request_key
from jaxunlearn.train.loop import fit, init_train_state, params_only
from jaxunlearn.train.optim import torch_sgd


def finetune(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_epochs: int = 5,
    batch_size: int = 64,
    progress: bool = False,
) -> Unlearner:
    """Fine-tune on the retained data (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar``, the mean loss over the batch.
      optimizer: optax optimizer; default ``torch_sgd(0.02, momentum=0.9, weight_decay=5e-4)``.
      num_epochs: passes over ``D_r`` (default 5); 0 returns the parameters unchanged.
      batch_size: minibatch size (64, the SSD code's full/sub-class loaders).
      progress: tqdm bar over epochs (eager calls only).

    Returns:
      ``Unlearner``:
      ``init(params, retain_data, *, key=None) -> RetainState`` stores the retain set
      (``Dataset`` or ``(x, y)``) and the key (``jax.random.key(0)`` when ``None``);
      ``update(params, forget_data, state, *, key=None) -> (params, state)`` validates the
      request (``forget_data`` is not trained on: fine-tuning only sees ``D_r``) and trains
      ``num_epochs`` epochs on the stored retain set, starting from ``params`` with a fresh
      optimizer state. ``update`` is jittable on ``(x, y)`` arrays.
    """
    optimizer = torch_sgd(0.02, momentum=0.9, weight_decay=5e-4) if optimizer is None else optimizer
    train_loss = params_only(loss_fn)  # built once: repeated requests reuse the compiled epoch
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")

    def update(params: Any, forget_data: Any, state: RetainState, *, key: Any = None) -> tuple[Any, RetainState]:
        forget_request(params, forget_data, state.retain[0])
        run_key, next_key = request_key(state.key, key)
        train_state, _ = fit(
            train_loss, optimizer, init_train_state(params, optimizer), state.retain,
            batch_size=batch_size, num_epochs=num_epochs, key=run_key, progress=progress, desc="finetune",
        )
        return train_state.params, state._replace(key=next_key)

    return Unlearner(init_retain_state, update)
