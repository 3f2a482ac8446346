"""ℓ1-sparse unlearning (Jia, Liu, Ram, Yao, Liu, Liu, Sharma & Liu, "Model Sparsity Can Simplify Machine
Unlearning", NeurIPS 2023): fine-tuning on the retained data with a decaying ℓ1 penalty.

Epoch ``e = 0, ..., E-1`` minimises, over minibatches ``B`` of the retained set ``D_r``,

    L_e(theta) = (1/|B|) sum_{z in B} l(theta; z) + gamma_e * ||theta||_1,
    gamma_e   = gamma * (1 - e / E),

the paper's "linear decay" scheduler from ``gamma`` towards 0 (constant within an epoch, as the
reference updates it once per epoch; here ``optax.linear_schedule(gamma, 0, E)`` evaluated at the
epoch). The penalty covers every weight (``||theta||_1`` over the whole pytree); its gradient is
``gamma_e * sign(theta)`` (0 at 0, :func:`l1_norm`). The sparsity prior pushes the weights the forget set needed, and
the retained data no longer supports, towards zero.

Reference code: OPTML-Group/Unlearn-Sparse (``FT_prune``, the ``FT_l1`` loop of ``unlearn/FT.py``):
10 epochs of SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256 on CIFAR-10 / ResNet-18. The
repository has no ℓ1-specific default for ``gamma``: its ``--alpha`` flag defaults to 0.2, a value
shared with Fisher forgetting that would zero a network within an epoch, and its README leaves
``--alpha ${alpha}`` to the user; published run scripts of follow-up work use ``gamma = 1e-4`` with
lr 0.01 and 10 epochs, the default here.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, scan_epochs, train_epochs
from jaxunlearn.train.loop import init_train_state, params_only, weighted_mean
from jaxunlearn.train.optim import torch_sgd

__all__ = ["l1_norm", "l1_sparse"]


def l1_norm(params: Any) -> jax.Array:
    """``||theta||_1`` over every leaf, with gradient ``sign(theta)`` (0 at 0, as PyTorch's).

    Written as ``sum stop_gradient(sign(theta)) * theta``: ``jnp.abs`` differentiates to 1 at 0, which
    would push weights that are exactly zero (pruned or never used) off zero.
    """
    return sum(jnp.vdot(jax.lax.stop_gradient(jnp.sign(p)), p) for p in jax.tree.leaves(params))


def l1_sparse(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    gamma: float = 1e-4,
    num_epochs: int = 10,
    batch_size: int = 256,
    num_classes: int | None = None,
) -> Unlearner:
    """ℓ1-sparse fine-tuning on the retained data (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean loss (eval mode).
      optimizer: default ``torch_sgd(0.01, momentum=0.9, weight_decay=5e-4)``.
      gamma: the initial ℓ1 weight ``gamma >= 0`` (1e-4), decayed linearly over the epochs.
      num_epochs: ``E``, passes over ``D_r`` (10). batch_size: 256.
      num_classes: checks the labels given to ``init``.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, IterativeInfo)`` trains ``E``
      epochs over the examples alive after the request (epoch ``e`` shuffled with ``fold_in(key, e)``)
      with one optimizer state; ``info.loss[e]`` is epoch ``e``'s mean of ``L_e``.
    """
    optimizer = torch_sgd(0.01, momentum=0.9, weight_decay=5e-4) if optimizer is None else optimizer
    gamma = check_number(gamma, "gamma")
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    schedule = optax.linear_schedule(gamma, 0.0, max(num_epochs, 1))
    retain_loss = weighted_mean(loss_fn)

    def run(params, req, state, key):
        def epoch(train_state, e, epoch_key):
            gamma_e = schedule(e)
            penalised = params_only(lambda p, batch: retain_loss(p, batch) + gamma_e * l1_norm(p))
            train_state, losses = train_epochs(penalised, optimizer, None, state.store.data, state=train_state,
                                               key=epoch_key, batch_size=batch_size, num_epochs=1, mask=req.retain)
            return train_state, losses[0]

        train_state, losses = scan_epochs(epoch, init_train_state(params, optimizer), num_epochs=num_epochs, key=key)
        return train_state.params, losses

    return iterative_unlearner(run, num_classes=num_classes, model_fn=loss_fn)
