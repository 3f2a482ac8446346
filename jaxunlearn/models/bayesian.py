"""Mean-field Gaussian Bayesian layers and networks (Bayes by Backprop with local reparameterisation).

Blundell et al. (2015) "Weight Uncertainty in Neural Networks"; Kingma, Salimans
& Welling (2015) for the local reparameterisation trick; in the form used by
Fu et al., "Bayesian Inference Forgetting" (arXiv 2101.06417, 2021).

Every weight ``w`` has ``q(w) = N(mu, sigma^2)`` with ``sigma = exp(rho)``
(exponential, **not** softplus, as the originals). A layer computing
``y = x W + b`` samples its *output* instead of its weights::

    mean = x mu_W + mu_b,     var = x^2 sigma_W^2 + sigma_b^2,     y = mean + sqrt(var) * eps,

``eps ~ N(0, 1)`` of the output's shape, drawn from the flax rng stream
``"bbp"``; a convolution does the same with ``conv(x, mu_W)`` and
``conv(x^2, sigma_W^2)``. As in the originals there is no train/eval
difference: every forward pass is one stochastic pass.

Initialisation (the originals' PyTorch defaults): ``mu_W`` Kaiming-uniform with
``a = sqrt(5)``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; ``mu_b`` the same
bound; ``rho = log 0.1`` (``sigma = 0.1``).

Parameters are named ``kernel_mu, kernel_rho, bias_mu, bias_rho``. The KL to
the prior ``N(0, sigma_p^2)`` is the originals' form with constants dropped::

    KL(q || p) = sum mu^2 / (2 sigma_p^2) + sum [ exp(2 rho) / (2 sigma_p^2) - rho ]   (+ const)

over every ``*_mu`` and ``*_rho`` leaf of the parameter tree.

The networks :class:`BayesMLP` and :class:`BayesLeNet` build either the
variational network (``variational=True``) or the same architecture with
point weights (``variational=False``, the network whose weights SG-MCMC
samples), both with the initialisation above. Images are NHWC.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.models import conv_forms

__all__ = ["MeanFieldDense", "MeanFieldConv", "PointDense", "PointConv", "BayesMLP", "BayesLeNet",
           "kl_divergence", "stochastic_logits_fn", "RNG_STREAM"]

RNG_STREAM = "bbp"
_LOG_SIGMA0 = math.log(0.1)


def _flat_draw(sampler: Callable, key: jax.Array, shape: tuple, dtype: Any) -> jax.Array:
    # Drawn flat, then reshaped: on jax 0.10.2 (threefry_partitionable) random draws of 4-D shapes take
    # ~20 s to compile on CPU, flat ones ~1 s; the distribution is the same.
    return sampler(key, (math.prod(shape),), dtype).reshape(shape)


def _fan_in_uniform(fan_in: int) -> Callable:
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return _flat_draw(lambda k, s, d: jax.random.uniform(k, s, d, -bound, bound), key, shape, dtype)

    return init


def _conv(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    return conv_forms.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


class MeanFieldDense(nn.Module):
    """Dense layer with mean-field Gaussian weights, local reparameterisation. ``[..., fan_in] -> [..., features]``."""

    features: int
    rho_init: float = _LOG_SIGMA0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        init = _fan_in_uniform(fan_in)
        k_mu = self.param("kernel_mu", init, (fan_in, self.features))
        k_rho = self.param("kernel_rho", nn.initializers.constant(self.rho_init), (fan_in, self.features))
        b_mu = self.param("bias_mu", init, (self.features,))
        b_rho = self.param("bias_rho", nn.initializers.constant(self.rho_init), (self.features,))
        mean = x @ k_mu + b_mu
        var = (x * x) @ jnp.exp(2.0 * k_rho) + jnp.exp(2.0 * b_rho)
        eps = _flat_draw(jax.random.normal, self.make_rng(RNG_STREAM), mean.shape, mean.dtype)
        return mean + jnp.sqrt(var) * eps


class MeanFieldConv(nn.Module):
    """2-D convolution with mean-field Gaussian weights, local reparameterisation. NHWC in and out."""

    features: int
    kernel_size: int = 5
    padding: str = "VALID"
    rho_init: float = _LOG_SIGMA0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        init = _fan_in_uniform(self.kernel_size * self.kernel_size * x.shape[-1])
        k_mu = self.param("kernel_mu", init, shape)
        k_rho = self.param("kernel_rho", nn.initializers.constant(self.rho_init), shape)
        b_mu = self.param("bias_mu", init, (self.features,))
        b_rho = self.param("bias_rho", nn.initializers.constant(self.rho_init), (self.features,))
        mean = _conv(x, k_mu, self.padding) + b_mu
        var = _conv(x * x, jnp.exp(2.0 * k_rho), self.padding) + jnp.exp(2.0 * b_rho)
        eps = _flat_draw(jax.random.normal, self.make_rng(RNG_STREAM), mean.shape, mean.dtype)
        return mean + jnp.sqrt(var) * eps


class PointDense(nn.Module):
    """Dense layer with point weights and the same PyTorch-default initialisation (for SG-MCMC networks)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = _fan_in_uniform(x.shape[-1])
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        return x @ kernel + bias


class PointConv(nn.Module):
    """2-D convolution with point weights and the PyTorch-default initialisation. NHWC."""

    features: int
    kernel_size: int = 5
    padding: str = "VALID"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = _fan_in_uniform(self.kernel_size * self.kernel_size * x.shape[-1])
        kernel = self.param("kernel", init, (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        return _conv(x, kernel, self.padding) + bias


class BayesMLP(nn.Module):
    """MLP ``flatten -> [hidden, relu]* -> num_classes``; mean-field layers when ``variational``."""

    num_classes: int
    hidden: Sequence[int] = (100,)
    variational: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no train/eval difference (the originals' variational layers always sample)
        dense = MeanFieldDense if self.variational else PointDense
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(dense(width)(x))
        return dense(self.num_classes)(x)


class BayesLeNet(nn.Module):
    """LeNet-5 ``conv6-pool-conv16-pool-fc120-fc84-fc(num_classes)`` (ReLU, 2x2 max-pool), NHWC input.

    The originals run it on 32x32 inputs with ``VALID`` 5x5 convolutions; for
    8x8 digits use ``padding="SAME"`` (8 -> 4 -> 2, a 64-wide flatten).
    """

    num_classes: int
    variational: bool = True
    kernel_size: int = 5
    padding: str = "VALID"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        if self.variational:
            conv = lambda f: MeanFieldConv(f, self.kernel_size, self.padding)  # noqa: E731
            dense = MeanFieldDense
        else:
            conv = lambda f: PointConv(f, self.kernel_size, self.padding)  # noqa: E731
            dense = PointDense
        x = conv_forms.max_pool(nn.relu(conv(6)(x)), (2, 2))
        x = conv_forms.max_pool(nn.relu(conv(16)(x)), (2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(dense(120)(x))
        x = nn.relu(dense(84)(x))
        return dense(self.num_classes)(x)


def _leaf_name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def kl_divergence(params: Any, prior_std: float) -> jax.Array:
    """``sum mu^2/(2 sigma_p^2) + sum [exp(2 rho)/(2 sigma_p^2) - rho]`` over all ``*_mu`` / ``*_rho`` leaves.

    The originals' KL with constants dropped (module docstring). Raises
    ``ValueError`` when ``params`` holds no variational leaves (a point network).
    """
    if prior_std <= 0:
        raise ValueError(f"prior_std must be positive, got {prior_std}.")
    total, found = jnp.zeros(()), False
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = _leaf_name(path)
        if name.endswith("_mu"):
            total = total + jnp.sum(leaf**2) / (2.0 * prior_std**2)
            found = True
        elif name.endswith("_rho"):
            total = total + jnp.sum(jnp.exp(2.0 * leaf) / (2.0 * prior_std**2) - leaf)
            found = True
    if not found:
        raise ValueError(
            "params holds no '*_mu' / '*_rho' leaves: kl_divergence needs the parameters of a variational "
            "network (BayesMLP/BayesLeNet with variational=True)."
        )
    return total


def stochastic_logits_fn(module: nn.Module) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """``logits(params, x [B, ...], key) -> [B, C]``: one stochastic pass (noise from ``key`` on stream ``"bbp"``)."""

    def logits(params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
        return module.apply({"params": params}, x, rngs={RNG_STREAM: key})

    return logits
