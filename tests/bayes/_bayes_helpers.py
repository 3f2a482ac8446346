"""Shared pieces of the Bayesian-forgetting tests: a float64 switch and a conjugate Gaussian model."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxunlearn import bayes

TAU = 3.0  # prior std of the Gaussian mean


@contextlib.contextmanager
def float64():
    """Enable float64 inside the block only (the exact-Hessian checks), then restore the setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def gaussian_vi_energy(stochastic: bool) -> bayes.Energy:
    """q(theta) = N(mu, exp(rho)^2) per dimension for x ~ N(theta, I), prior N(0, TAU^2 I).

    Deterministic: the expected per-point loss in closed form. Stochastic: one reparameterised draw.
    """

    def prior(p):
        s2 = jnp.exp(2 * p["rho"])
        return jnp.sum((p["mu"] ** 2 + s2) / (2 * TAU**2) - p["rho"] + np.log(TAU) - 0.5)

    def per_example(p, x, key):
        if stochastic:
            theta = p["mu"] + jnp.exp(p["rho"]) * jax.random.normal(key, p["mu"].shape)
            return 0.5 * jnp.sum((x - theta) ** 2, axis=1)
        return 0.5 * (jnp.sum((x - p["mu"]) ** 2, axis=1) + jnp.sum(jnp.exp(2 * p["rho"])))

    return bayes.Energy(prior, per_example, stochastic=stochastic)


def exact_posterior(x):
    """Mean [d] and std (scalar) of p(theta | x) for the model above."""
    precision = 1 / TAU**2 + x.shape[0]
    return x.sum(0) / precision, 1 / np.sqrt(precision)
