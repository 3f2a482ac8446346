"""Soft-target losses used by distillation-style unlearning (Bad Teacher, SCRUB).

With ``q = softmax(z_s / T)`` the student's tempered distribution and ``p`` a
target distribution over ``C`` classes, for a batch of ``B`` examples

    KL(p || q) = sum_{b, c} p_bc (log p_bc - log q_bc)  /  B          ("batchmean")
               = the same sum / (B * C)                               ("mean": PyTorch
                 ``F.kl_div``'s default element-wise reduction, used by the Bad Teacher code)

and ``0 log 0 = 0``. The SCRUB distillation loss (Kurmanji et al., NeurIPS 2023,
``DistillKL``) is ``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` with "batchmean".
"""

from __future__ import annotations

import jax

KL_REDUCTIONS = ("batchmean", "mean", "sum")


def kl_to_target(student_logits: jax.Array, target_probs: jax.Array, *, temperature: float = 1.0,
                 reduction: str = "batchmean") -> jax.Array:
    """``KL(target || softmax(student_logits / T))`` (module docstring). Inputs [B, C]; scalar output."""
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {KL_REDUCTIONS}; got {reduction!r}.")
    if student_logits.shape != target_probs.shape:
        raise ValueError(f"student_logits {student_logits.shape} and target_probs {target_probs.shape} must match.")
    log_q = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    terms = jax.scipy.special.xlogy(target_probs, target_probs) - target_probs * log_q
    total = terms.sum()
    if reduction == "sum":
        return total
    if reduction == "batchmean":
        return total / student_logits.shape[0]
    return total / student_logits.size


def distill_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float = 4.0) -> jax.Array:
    """SCRUB's ``DistillKL``: ``T^2 KL(softmax(teacher / T) || softmax(student / T))`` per example (batchmean)."""
    target = jax.nn.softmax(teacher_logits / temperature, axis=-1)
    return temperature**2 * kl_to_target(student_logits, target, temperature=temperature)
