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

from jaxunlearn.methods.base import Unlearner
from jaxunlearn.train.classifier import batched_logits
from jaxunlearn.train.inputs import (
    as_arrays,
    check_positive_int,
    check_same_features,
    ensure_finite,
    key_or_default,
    request_key,
)
from jaxunlearn.train.losses import KL_REDUCTIONS, kl_to_target
from jaxunlearn.train.loop import fit, init_train_state, params_only


class BadTeacherState(NamedTuple):
    """What ``init`` precomputes.

    ``retain_x``: [N_r, ...] retained inputs; ``retain_logits``: [N_r, C] the frozen
    competent teacher's (the original model's) logits on them; ``incompetent_params``:
    the randomly initialised teacher; ``key``: PRNG key for the next request.
    """

    retain_x: jax.Array
    retain_logits: jax.Array
    incompetent_params: Any
    key: jax.Array


def _inputs(data: Any, name: str) -> jax.Array:
    data = as_arrays(data, name)
    return jnp.asarray(data[0] if isinstance(data, (tuple, list)) else data)


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
    progress: bool = False,
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

    Returns:
      ``Unlearner``: ``init(params, retain_data, *, key=None) -> BadTeacherState`` freezes the
      competent teacher by computing its logits on ``D_r`` once, and draws the incompetent
      teacher from ``init_fn`` with ``key`` (``jax.random.key(0)`` when ``None``);
      ``update(params, forget_data, state, *, key=None) -> (params, state)`` draws ``S_r``,
      computes the incompetent teacher's targets on ``forget_data`` (``Dataset``, ``(x, y)``
      or ``x``; labels are not used) and distils the student starting from ``params``.
    """
    if kl_reduction not in KL_REDUCTIONS:
        raise ValueError(f"kl_reduction must be one of {KL_REDUCTIONS}; got {kl_reduction!r}.")
    if not 0.0 <= float(retain_fraction) <= 1.0:
        raise ValueError(f"retain_fraction must lie in [0, 1]; got {retain_fraction}.")
    optimizer = optax.adam(1e-4) if optimizer is None else optimizer
    num_epochs = check_positive_int(num_epochs, "num_epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    eval_batch_size = check_positive_int(eval_batch_size, "eval_batch_size")
    incompetent_fn = logits_fn if incompetent_logits_fn is None else incompetent_logits_fn

    def init(params: Any, retain_data: Any, *, key: Any = None) -> BadTeacherState:
        ensure_finite(params, "params")
        teacher_key, next_key = jax.random.split(key_or_default(key))
        x_r = _inputs(retain_data, "retain_data")
        retain_logits = batched_logits(logits_fn, params, x_r, eval_batch_size)
        return BadTeacherState(x_r, retain_logits, init_fn(teacher_key), next_key)

    def loss(params, batch):
        x, target = batch
        return kl_to_target(logits_fn(params, x), target, temperature=temperature, reduction=kl_reduction)

    train_loss = params_only(loss)  # built once: repeated requests reuse the compiled epoch

    def update(params: Any, forget_data: Any, state: BadTeacherState, *, key: Any = None) -> tuple[Any, BadTeacherState]:
        x_f = _inputs(forget_data, "forget_data")
        ensure_finite(params, "params")
        check_same_features(state.retain_x, x_f, "retain_data", "forget_data")
        run_key, next_key = request_key(state.key, key)
        subset_key, train_key = jax.random.split(run_key)
        n_r = state.retain_x.shape[0]
        keep = int(retain_fraction * n_r)
        idx = jax.random.permutation(subset_key, n_r)[:keep]
        forget_target = jax.nn.softmax(
            batched_logits(incompetent_fn, state.incompetent_params, x_f, eval_batch_size) / temperature, axis=-1
        )
        retain_target = jax.nn.softmax(jnp.take(state.retain_logits, idx, axis=0) / temperature, axis=-1)
        data = (
            jnp.concatenate([x_f, jnp.take(state.retain_x, idx, axis=0).astype(x_f.dtype)]),
            jnp.concatenate([forget_target, retain_target.astype(forget_target.dtype)]),
        )
        train_state, _ = fit(
            train_loss, optimizer, init_train_state(params, optimizer), data,
            batch_size=batch_size, num_epochs=num_epochs, key=train_key, progress=progress, desc="bad teacher",
        )
        return train_state.params, state._replace(key=next_key)

    return Unlearner(init, update)
