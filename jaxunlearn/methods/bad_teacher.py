"""Bad Teacher / "blindspot" unlearning (Chundawat, Tarun, Mandal & Kankanhalli, AAAI 2023).

A student, initialised as a copy of the trained model, is distilled towards two
teachers at once: an *incompetent* teacher (a randomly initialised model) on
the forget samples and the *competent* original model on a random subset of
the retained samples. With ``T`` the temperature and ``l_s, l_f, l_c`` the
student, incompetent and competent logits,

    target(x) = softmax(l_f(x) / T)  if x in D_f,   softmax(l_c(x) / T)  if x in S_r,
    L(theta)  = KL(target || softmax(l_s(x) / T)),  averaged over the batch,

with ``S_r`` a uniformly random ``retain_fraction`` (30 %) of ``D_r`` drawn per
request. Defaults of the SSD reference code (strategy ``blindspot``): one
epoch over ``D_f union S_r``, Adam lr 1e-4, batch 256, ``T = 1``.

The reference computes the loss with PyTorch's ``F.kl_div`` default reduction
``'mean'``, which averages over the ``B x C`` elements instead of the ``B``
examples (the loss is divided by ``C``); ``kl_reduction="mean"`` reproduces it.
With Adam, a constant factor on the loss changes the steps only through
Adam's epsilon.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.iterative import iterative_unlearner, train_epochs
from jaxunlearn.train.classifier import batched_logits
from jaxunlearn.train.losses import KL_REDUCTIONS, kl_to_target
from jaxunlearn.train.loop import params_only, weighted_mean


class BadTeacherExtra(NamedTuple):
    """What ``init`` precomputes (``IterativeState.extra``).

    ``teacher_logits``: [N, C] the frozen competent teacher's (the original model's) logits on
    every training example; ``incompetent_params``: the randomly initialised teacher.
    """

    teacher_logits: jax.Array
    incompetent_params: Any


def random_subset(key: jax.Array, mask: jax.Array, fraction: float) -> jax.Array:
    """A uniformly random ``floor(fraction * count)`` of the examples where ``mask`` is true, as a bool mask.

    Static shapes: the alive examples are ranked by a uniform draw and the first ones kept.
    """
    rank = jax.random.uniform(key, mask.shape)
    position = jnp.argsort(jnp.argsort(jnp.where(mask, rank, 2.0 + rank)))
    keep = jnp.floor(fraction * jnp.sum(mask)).astype(jnp.int32)
    return mask & (position < keep)


def bad_teacher(
    logits_fn: Callable[[Any, jax.Array], jax.Array],
    init_fn: Callable[[Any], Any],
    optimizer: optax.GradientTransformation | None = None,
    *,
    retain_fraction: float = 0.3,
    num_epochs: int = 1,
    batch_size: int = 256,
    temperature: float = 1.0,
    kl_reduction: str = "batchmean",
    incompetent_logits_fn: Callable[[Any, jax.Array], jax.Array] | None = None,
    eval_batch_size: int = 1024,
    num_classes: int | None = None,
) -> Unlearner:
    """Bad Teacher distillation (module docstring).

    Args:
      logits_fn: ``logits_fn(params, x [B, ...]) -> [B, C]`` (eval mode), for student and
        competent teacher.
      init_fn: ``init_fn(key) -> params`` of the incompetent teacher (a random initialisation).
      optimizer: default ``optax.adam(1e-4)``.
      retain_fraction: share of ``D_r`` distilled from the competent teacher (0.3).
      num_epochs: passes over ``D_f union S_r`` (1). batch_size: 256 (128 for ViT in the reference).
      temperature: ``T`` (1). kl_reduction: ``"batchmean"`` (true KL per example, default),
        ``"mean"`` (the reference's ``F.kl_div`` element mean) or ``"sum"``.
      incompetent_logits_fn: the incompetent teacher's forward pass when its architecture
        differs; default ``logits_fn``.
      eval_batch_size: chunk size of the teacher forward passes.
      num_classes: checks the labels given to ``init``.

    Returns:
      ``Unlearner``: ``init(params, data, *, key)`` freezes the competent teacher by computing its
      logits on every training example once and draws the incompetent teacher from
      ``init_fn(key)``; ``update(params, request, state, *, key) -> (params, state, IterativeInfo)``
      draws ``S_r`` among the examples alive after the request (``key`` splits into
      ``subset_key, train_key``), targets the incompetent teacher on the requested examples and
      distils the student from ``params``.
    """
    if kl_reduction not in KL_REDUCTIONS:
        raise ValueError(f"kl_reduction must be one of {KL_REDUCTIONS}; got {kl_reduction!r}.")
    retain_fraction = check_number(retain_fraction, "retain_fraction", low=0.0, high=1.0)
    temperature = check_number(temperature, "temperature", low=0.0, low_inclusive=False)
    optimizer = optax.adam(1e-4) if optimizer is None else optimizer
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    eval_batch_size = check_positive_int(eval_batch_size, "eval_batch_size")
    incompetent_fn = logits_fn if incompetent_logits_fn is None else incompetent_logits_fn

    def prepare(params, data, key):
        return BadTeacherExtra(batched_logits(logits_fn, params, data[0], eval_batch_size), init_fn(key))

    def loss(params, batch):
        x, target = batch
        return kl_to_target(logits_fn(params, x), target, temperature=temperature, reduction=kl_reduction)

    train_loss = params_only(weighted_mean(loss))

    def run(params, req, state, key):
        subset_key, train_key = jax.random.split(key)
        x_f, x = req.forget[0], state.store.data[0]
        extra = state.extra
        forget_logits = batched_logits(incompetent_fn, extra.incompetent_params, x_f, eval_batch_size)
        data = (jnp.concatenate([x_f, x]),
                jax.nn.softmax(jnp.concatenate([forget_logits, extra.teacher_logits]) / temperature, axis=-1))
        mask = jnp.concatenate([jnp.ones(x_f.shape[:1], bool), random_subset(subset_key, req.retain, retain_fraction)])
        train_state, losses = train_epochs(train_loss, optimizer, params, data, key=train_key,
                                           batch_size=batch_size, num_epochs=num_epochs, mask=mask)
        return train_state.params, losses

    return iterative_unlearner(run, prepare=prepare, num_classes=num_classes,
                               model_fn=lambda p, batch: logits_fn(p, batch[0]))
