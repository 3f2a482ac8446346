"""Gaussian mixtures of the Bayesian forgetting papers: the MCMC mixture and the variational mixture.

Fu, He, Xu & Tao, "Bayesian Inference Forgetting" (arXiv 2101.06417), and
Fu, He & Tao, "Knowledge Removal in Sampling-based Bayesian Inference"
(ICLR 2022), as their code defines them. Both models have ``K``
clusters in ``d`` dimensions with equal weights ``1/K`` and unit covariance.

**MCMC mixture** (parameters ``means``, shape ``[K, d]``; the originals' ``GMM``)::

    -log p(x | m) = -log[(1/K) sum_k N(x; m_k, I)]
                  = -logsumexp_k(-||x - m_k||^2 / 2) + log K + (d/2) log(2 pi)
    -log p(m)     = sum_k ||m_k||^2 / (2 sigma_p^2)          (constants dropped)

The originals' quadratic prior ignores their ``gmm-std`` flag; their scripts
use ``sigma_p = 1``, which is our default, so the two agree there.

**Variational mixture** (parameters ``{"m": [K, d], "rho": [K, d]}``; the
originals' ``VariationalGMM``): ``q(m_k) = N(m_k, diag(s_k^2))`` with
``s_k = softplus(rho_k)``. The cluster assignments are integrated out with
closed-form, differentiable responsibilities::

    phi_ik = softmax_k( x_i^T m_k - (||m_k||^2 + ||s_k||^2) / 2 )

and the per-point data term (the negative ELBO's likelihood part) is::

    l_i = sum_k phi_ik [ (-2 x_i^T m_k + ||m_k||^2 + ||s_k||^2) / 2 + log phi_ik ]
          + ||x_i||^2 / 2 + log K + (d/2) log(2 pi)

i.e. ``E_q[-log p(x_i, c_i | m)] - H(phi_i)``. Its minimum over ``phi`` is
attained at the responsibilities above, so ``phi`` needs no separate update.
The KL term to the prior ``N(0, sigma_p^2 I)`` is the exact Gaussian KL::

    KL(q || p) = sum_{k,j} [ (m_kj^2 + s_kj^2) / (2 sigma_p^2) - log s_kj + log sigma_p - 1/2 ]

(The originals' additive constants differ; constants change reported loss
values only, never gradients, Hessians or the forgetting step.)

Shapes: ``x`` is ``[B, d]``; per-point functions return ``[B]``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "gmm_neg_log_likelihood", "gmm_neg_log_prior", "gmm_responsibilities", "init_gmm",
    "vgmm_std", "vgmm_responsibilities", "vgmm_data_term", "vgmm_kl", "init_vgmm",
]


def _check_points(x: jax.Array, centres: jax.Array, name: str) -> None:
    if jnp.ndim(x) != 2:
        raise ValueError(f"x must be a [B, d] array of points, got shape {jnp.shape(x)}.")
    if jnp.ndim(centres) != 2 or jnp.shape(centres)[1] != jnp.shape(x)[1]:
        raise ValueError(
            f"{name} must be a [K, d] array with d = x.shape[1] = {jnp.shape(x)[1]}, got shape {jnp.shape(centres)}."
        )


def gmm_neg_log_likelihood(means: jax.Array, x: jax.Array) -> jax.Array:
    """``-log[(1/K) sum_k N(x_i; m_k, I)]`` for every point: shape ``[B]`` from ``means [K, d]``, ``x [B, d]``."""
    _check_points(x, means, "means")
    k, d = means.shape
    sq = jnp.sum((x[:, None, :] - means[None, :, :]) ** 2, axis=-1)  # [B, K]
    return -jax.nn.logsumexp(-0.5 * sq, axis=1) + math.log(k) + 0.5 * d * math.log(2.0 * math.pi)


def gmm_neg_log_prior(means: jax.Array, prior_std: float = 1.0) -> jax.Array:
    """``sum_k ||m_k||^2 / (2 sigma_p^2)`` (the Gaussian prior's constants dropped, as in the originals)."""
    return jnp.sum(means**2) / (2.0 * prior_std**2)


def gmm_responsibilities(means: jax.Array, x: jax.Array) -> jax.Array:
    """Posterior cluster probabilities ``p(c = k | x_i, m)``, shape ``[B, K]``."""
    _check_points(x, means, "means")
    sq = jnp.sum((x[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    return jax.nn.softmax(-0.5 * sq, axis=1)


def init_gmm(key: jax.Array, num_clusters: int = 4, dim: int = 2, scale: float = 1.0) -> jax.Array:
    """Cluster means drawn from ``N(0, scale^2 I)``, shape ``[K, d]``."""
    if num_clusters < 1 or dim < 1:
        raise ValueError(f"num_clusters and dim must be >= 1, got {num_clusters} and {dim}.")
    return scale * jax.random.normal(key, (num_clusters, dim))


def vgmm_std(params: Any) -> jax.Array:
    """Variational standard deviations ``s = softplus(rho)``, shape ``[K, d]``."""
    return jax.nn.softplus(params["rho"])


def _vgmm_logits(params: Any, x: jax.Array) -> jax.Array:
    m, s = params["m"], vgmm_std(params)
    _check_points(x, m, 'params["m"]')
    return x @ m.T - 0.5 * (jnp.sum(m**2, axis=1) + jnp.sum(s**2, axis=1))[None, :]  # [B, K]


def vgmm_responsibilities(params: Any, x: jax.Array) -> jax.Array:
    """Closed-form responsibilities ``phi_ik = softmax_k(x_i^T m_k - (||m_k||^2 + ||s_k||^2)/2)``, ``[B, K]``."""
    return jax.nn.softmax(_vgmm_logits(params, x), axis=1)


def vgmm_data_term(params: Any, x: jax.Array) -> jax.Array:
    """Per-point negative-ELBO data term ``l_i`` of the module docstring, shape ``[B]``.

    Equals ``-logsumexp_k(logits_ik) + ||x_i||^2/2 + log K + (d/2) log 2 pi``
    with ``logits`` the responsibilities' logits, which is how it is computed
    (the ``phi log phi`` entropy folds into the log-sum-exp).
    """
    logits = _vgmm_logits(params, x)
    k, d = params["m"].shape
    return (
        -jax.nn.logsumexp(logits, axis=1) + 0.5 * jnp.sum(x**2, axis=1)
        + math.log(k) + 0.5 * d * math.log(2.0 * math.pi)
    )


def vgmm_kl(params: Any, prior_std: float = 1.0) -> jax.Array:
    """Exact ``KL(q || N(0, sigma_p^2 I))`` summed over clusters and dimensions (scalar)."""
    m, s = params["m"], vgmm_std(params)
    return jnp.sum((m**2 + s**2) / (2.0 * prior_std**2) - jnp.log(s) + math.log(prior_std) - 0.5)


def init_vgmm(key: jax.Array, num_clusters: int = 4, dim: int = 2, scale: float = 1.0, std: float = 0.05) -> Any:
    """Variational parameters: means from ``N(0, scale^2 I)``, ``rho = softplus^{-1}(std)``."""
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}.")
    rho = math.log(math.expm1(std))
    return {"m": init_gmm(key, num_clusters, dim, scale), "rho": jnp.full((num_clusters, dim), rho, jnp.float32)}
