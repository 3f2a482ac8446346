"""Energies of Bayesian forgetting: ``F(theta, S)`` and the forget term ``sum_{z in S'} h(theta, z)``.

Fu, He, Xu & Tao, "Bayesian Inference Forgetting" (2021) and Fu, He & Tao,
"Knowledge Removal in Sampling-based Bayesian Inference" (ICLR 2022). Every model of these papers has an energy of the form::

    F_hat(theta, B) = R(theta) + n * mean_{z in B} l(theta, z)          (minibatch estimate of F(theta, S))
    sum_{z in S'} h(theta, z) = sum_{z in S'} l(theta, z)                (the forget term)

with ``n`` the number of points the posterior currently conditions on (the
originals' ``model.n``, updated after every removal) and

=====================  ==================================  =====================================
model                  R(theta)                            l(theta, z)
=====================  ==================================  =====================================
MCMC BNN               sum theta^2 / (2 sigma_p^2)          cross-entropy
variational BNN        KL(q_gamma || p) (bayesian.py)       cross-entropy of one stochastic pass
MCMC GMM               sum_k ||m_k||^2 / (2 sigma_p^2)      -log[(1/K) sum_k N(x; m_k, I)]
variational GMM        KL(q_gamma || p) (gmm.py)            closed-form negative-ELBO data term
=====================  ==================================  =====================================

:class:`Energy` holds ``R`` and ``l``; ``energy`` and ``forget`` build the two
sums. Stochastic energies (the variational BNN) take a PRNG key: one key is
one Bayes-by-Backprop noise draw; the forgetting step averages over ``bbp_T``
keys. Deterministic energies ignore the key.

Shapes: a batch is a pytree of arrays with a leading example axis ``[B, ...]``
(classifiers ``(x [B, ...], y [B])``, mixtures ``x [B, d]``); ``per_example``
returns ``[B]``; ``energy`` and ``forget`` return scalars.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxunlearn._validation import check_number, num_examples
from jaxunlearn.models import bayesian, gmm

__all__ = ["Energy", "bnn_energy", "vbnn_energy", "gmm_energy", "vgmm_energy", "gaussian_prior"]


class Energy(NamedTuple):
    """``F_hat(theta, B) = prior(theta) + n * mean(per_example(theta, B, key))``; ``forget = sum(per_example)``.

    Attributes:
      prior: ``prior(params) -> scalar``, the regulariser ``R`` (negative
        log-prior or KL to the prior).
      per_example: ``per_example(params, batch, key) -> [B]``, the per-point loss ``l``.
      stochastic: whether ``per_example`` uses its key (Bayes-by-Backprop noise).
    """

    prior: Callable[[Any], jax.Array]
    per_example: Callable[[Any, Any, Any], jax.Array]
    stochastic: bool = False

    def _key(self, key: Any) -> Any:
        if self.stochastic and key is None:
            raise ValueError(
                "this energy is stochastic (a variational network): pass key=jax.random.key(...) for its noise draw."
            )
        return key

    def energy(self, params: Any, batch: Any, n: Any, key: Any = None) -> jax.Array:
        """``R(params) + n * mean_{z in batch} l(params, z)`` (scalar); ``n`` the current data count."""
        num_examples(batch, "batch")
        return self.prior(params) + n * jnp.mean(self.per_example(params, batch, self._key(key)))

    def forget(self, params: Any, batch: Any, key: Any = None) -> jax.Array:
        """``sum_{z in batch} l(params, z)``: the originals' ``_z_fun`` on the batch being removed (scalar)."""
        num_examples(batch, "batch")
        return jnp.sum(self.per_example(params, batch, self._key(key)))


def gaussian_prior(prior_std: float) -> Callable[[Any], jax.Array]:
    """``R(theta) = sum theta^2 / (2 sigma_p^2)`` over every leaf (constants dropped, as the originals)."""
    prior_std = check_number(prior_std, "prior_std", low=0.0, low_inclusive=False)

    def prior(params: Any) -> jax.Array:
        return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(params)) / (2.0 * prior_std**2)

    return prior


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def bnn_energy(logits_fn: Callable[[Any, jax.Array], jax.Array], prior_std: float) -> Energy:
    """MCMC Bayesian network: ``sum theta^2/(2 sigma_p^2) + n * mean CE(logits_fn(theta, x), y)``; batch ``(x, y)``.

    ``logits_fn(params, x [B, ...]) -> [B, C]`` is deterministic (for example
    ``lambda p, x: BayesLeNet(10, variational=False).apply({"params": p}, x)``).
    The originals use ``sigma_p = 0.15`` (BIF Fashion-MNIST) and ``0.1`` (ICLR'22).
    """

    def per_example(params, batch, key):
        del key
        x, y = batch
        return _cross_entropy(logits_fn(params, x), y)

    return Energy(gaussian_prior(prior_std), per_example, stochastic=False)


def vbnn_energy(stochastic_logits: Callable[[Any, jax.Array, jax.Array], jax.Array], prior_std: float) -> Energy:
    """Variational network: ``KL(q_gamma || p) + n * mean CE(one stochastic pass)``; batch ``(x, y)``.

    ``stochastic_logits(gamma, x, key) -> [B, C]`` is one local-reparameterisation
    pass (:func:`jaxunlearn.models.bayesian.stochastic_logits_fn`); the KL is
    :func:`jaxunlearn.models.bayesian.kl_divergence`.
    """
    check_number(prior_std, "prior_std", low=0.0, low_inclusive=False)

    def per_example(params, batch, key):
        x, y = batch
        return _cross_entropy(stochastic_logits(params, x, key), y)

    return Energy(lambda p: bayesian.kl_divergence(p, prior_std), per_example, stochastic=True)


def gmm_energy(prior_std: float = 1.0) -> Energy:
    """MCMC Gaussian mixture on ``means [K, d]``: ``sum ||m_k||^2/(2 sigma_p^2) + n * mean -log p(x | m)``; batch ``x [B, d]``."""
    check_number(prior_std, "prior_std", low=0.0, low_inclusive=False)
    return Energy(
        lambda m: gmm.gmm_neg_log_prior(m, prior_std),
        lambda m, x, key: gmm.gmm_neg_log_likelihood(m, x),
        stochastic=False,
    )


def vgmm_energy(prior_std: float = 1.0) -> Energy:
    """Variational Gaussian mixture on ``{"m", "rho"}``: ``KL(q || p) + n * mean data term``; batch ``x [B, d]``.

    The responsibilities are closed-form (no noise), so the energy is deterministic.
    """
    check_number(prior_std, "prior_std", low=0.0, low_inclusive=False)
    return Energy(
        lambda p: gmm.vgmm_kl(p, prior_std),
        lambda p, x, key: gmm.vgmm_data_term(p, x),
        stochastic=False,
    )
