"""SalUn: saliency unlearning (Fan, Liu, Zhang, Wong, Wei & Liu, "SalUn: Empowering Machine Unlearning via
Gradient-based Weight Saliency in Both Image Classification and Generation", ICLR 2024).

1. **Weight saliency** of the forget set ``D_f`` at the trained weights ``theta_0``:

       s = | grad_theta L(theta_0; D_f) |,      L = mean cross-entropy over D_f,

   and the hard mask ``m = 1[s ranks among the top fraction rho of all weights]`` (one ranking
   over every weight of the model, not per layer): ``m`` marks the ``floor(rho * n)`` weights
   with the largest ``s`` (ties broken by position, a stable sort).
2. **Random-label fine-tuning of the salient weights only**
   (:func:`~jaxunlearn.methods.random_labels.random_label_epochs`): every optimizer update is
   multiplied by ``m``, ``theta <- theta + m * u``, so the other weights keep their trained values
   exactly, weight decay and momentum included. This equals the reference, which masks the gradients
   and then restores the unselected weights and their momentum after each step.

Reference code: OPTML-Group/Unlearn-Saliency, ``Classification/generate_mask.py`` (the saliency
sums the batch gradients of ``-CE`` over the forget loader; ``|.|`` and the ranking make the sign and
the batch weighting immaterial up to the weight of a short last batch, and here the exact mean over
``D_f`` is used) and ``unlearn/RL.py``. Defaults of its CIFAR-10 / ResNet-18 example: ``rho = 0.5``
(``with_0.5.pt``), 10 epochs of SGD lr 0.013, momentum 0.9, weight decay 5e-4, batch 256.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.curvature.chunks import chunked_sum
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner
from jaxunlearn.methods.random_labels import random_label_epochs
from jaxunlearn.train.optim import torch_sgd

__all__ = ["SalUnInfo", "masked_updates", "saliency_mask", "salun"]


class SalUnInfo(NamedTuple):
    """``loss``: ``[num_epochs, 2]`` pass losses (forget, retain); ``selected``: the fraction of weights
    the saliency mask let train."""

    loss: jax.Array
    selected: jax.Array


def saliency_mask(loss_fn: Callable[[Any, Any], jax.Array], params: Any, forget: Any, fraction: float,
                  chunk_size: int = 256) -> Any:
    """The hard saliency mask of step 1 (module docstring): a bool pytree like ``params``.

    ``forget``: the forget examples ``(x [k, ...], y [k])``; the gradient of their summed loss (the
    mean's up to the factor ``k``, which leaves the ranking unchanged) is accumulated over chunks of
    ``chunk_size`` examples. Exactly ``floor(fraction * n)`` of the ``n`` weights are
    selected.
    """
    def summed(p, chunk):  # the chunk's mean loss times its size: chunk sums add up to the total
        return loss_fn(p, chunk) * jax.tree.leaves(chunk)[0].shape[0]

    grad = chunked_sum(lambda chunk, _: jax.grad(summed)(params, chunk), forget, chunk_size)
    flat, unravel = ravel_pytree(jax.tree.map(jnp.abs, grad))
    top = jnp.argsort(-flat, stable=True)[: int(fraction * flat.shape[0])]
    return unravel(jnp.zeros(flat.shape, bool).at[top].set(True))


def masked_updates(optimizer: optax.GradientTransformation, mask: Any) -> optax.GradientTransformation:
    """``optimizer`` whose updates are zero where ``mask`` (bool pytree like the params) is false."""
    return optax.chain(optimizer, optax.stateless(lambda updates, _: jax.tree.map(
        lambda u, m: jnp.where(m, u, jnp.zeros_like(u)), updates, mask)))


def salun(
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation | None = None,
    *,
    num_classes: int,
    fraction: float = 0.5,
    num_epochs: int = 10,
    batch_size: int = 256,
    wrong_labels: bool = False,
) -> Unlearner:
    """SalUn (module docstring).

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` mean cross-entropy (eval mode).
      optimizer: default ``torch_sgd(0.013, momentum=0.9, weight_decay=5e-4)``; its updates are masked.
      num_classes: ``C`` of the random labels (labels given to ``init`` are checked).
      fraction: ``rho`` in (0, 1], the share of weights trained (0.5).
      num_epochs: random-label epochs (10). batch_size: both passes and the saliency chunks (256).
      wrong_labels: random labels from the ``C - 1`` other classes (default: all ``C``, as the original).

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` stores the training data;
      ``update(params, request, state, *, key) -> (params, state, SalUnInfo)`` computes the mask of
      the requested examples at ``params``, then runs the masked random-label epochs.
    """
    optimizer = torch_sgd(0.013, momentum=0.9, weight_decay=5e-4) if optimizer is None else optimizer
    num_classes = check_positive_int(num_classes, "num_classes")
    fraction = check_number(fraction, "fraction", low=0.0, low_inclusive=False, high=1.0)
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")

    def run(params, req, state, key):
        mask = saliency_mask(loss_fn, params, req.forget, fraction, batch_size)
        new_params, losses = random_label_epochs(
            loss_fn, masked_updates(optimizer, mask), params, req, state.store, key, num_classes=num_classes,
            num_epochs=num_epochs, batch_size=batch_size, wrong_labels=wrong_labels)
        selected = ravel_pytree(mask)[0].mean(dtype=jnp.float32)
        return new_params, SalUnInfo(losses, selected)

    return iterative_unlearner(run, num_classes=num_classes, model_fn=loss_fn)
