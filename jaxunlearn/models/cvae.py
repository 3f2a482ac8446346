"""One-hot conditional VAE of Selective Amnesia (Heng & Soh, NeurIPS 2023, arXiv 2305.10120).

The ``OneHotCVAE`` of the original ``clear-nus/selective-amnesia/vae`` code, as flax linen:

* encoder ``[x, c] -> h1 -> h2 -> (mu, log sigma^2)`` in ``R^z`` (ReLU),
* decoder ``[z, c] -> h2 -> h1 -> x_dim`` (ReLU, sigmoid at the end),

where ``c`` is the condition: a one-hot class vector, or any real vector of
length ``num_classes`` (the attacks feed soft and noisy conditions). Sizes:
``784-512-256-z8`` for MNIST (the original ``mnist.yaml``). Weights start as PyTorch's
``nn.Linear`` default (``models._common.torch_kernel_init``), biases at zero. For the 8x8
digits, ``64-256-128-z8`` (:data:`DIGITS_HIDDEN`): the input is 12x smaller,
so the hidden layers are halved.

Loss (the original's, **summed** over the batch, not averaged)::

    l_VAE(theta; x, c) = sum_b [ BCE(x_hat_b, x_b) + KL_b ]
    BCE(x_hat, x) = -sum_d [x_d log x_hat_d + (1 - x_d) log(1 - x_hat_d)]
    KL = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    z = mu + sigma * eps,  eps ~ N(0, I)  (reparameterisation; eps is an input)

``x_hat = sigmoid(logits)`` and the BCE is evaluated from the logits as
``softplus(l) - x l``, equal to the formula above and finite where PyTorch's
``binary_cross_entropy`` would clamp ``log`` at -100 (only for saturated
pixels). Pixels are floats in ``[0, 1]`` (the original uses ToTensor only).

Shapes: ``x`` (B, x_dim) float, ``cond`` (B, num_classes), ``eps`` and ``z``
(B, z_dim). Images (B, H, W, C) are flattened with :func:`flatten_images`.

:class:`CVAELoss` is the per-example loss as a
:class:`~jaxunlearn.curvature.layerwise.LayerwiseLoss`: the squared per-example
gradients of the seven ``Dense`` layers then come from the per-layer formula
``(a^2)^T (delta^2)`` (:func:`jaxunlearn.curvature.fisher_diagonal`'s fast path)
instead of a per-example copy of every weight (``vmap`` of ``grad``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxunlearn.curvature.layerwise import LayerwiseLoss
from jaxunlearn.models._common import torch_kernel_init

MNIST_HIDDEN = (512, 256)
DIGITS_HIDDEN = (256, 128)


class CVAE(nn.Module):
    """One-hot conditional VAE (MLP encoder and decoder) of Selective Amnesia (Heng & Soh, NeurIPS 2023).

    Attributes:
      x_dim: number of input features (784 for MNIST, 64 for 8x8 digits).
      num_classes: length of the condition vector.
      hidden: ``(h1, h2)``; the encoder is ``x_dim+C -> h1 -> h2``, the decoder ``z+C -> h2 -> h1``.
      z_dim: latent dimension (8 in the original).
    """

    x_dim: int
    num_classes: int = 10
    hidden: Sequence[int] = MNIST_HIDDEN
    z_dim: int = 8

    def setup(self):
        h1, h2 = self.hidden
        self.fc1 = nn.Dense(h1, kernel_init=torch_kernel_init)
        self.fc2 = nn.Dense(h2, kernel_init=torch_kernel_init)
        self.fc31 = nn.Dense(self.z_dim, kernel_init=torch_kernel_init)
        self.fc32 = nn.Dense(self.z_dim, kernel_init=torch_kernel_init)
        self.fc4 = nn.Dense(h2, kernel_init=torch_kernel_init)
        self.fc5 = nn.Dense(h1, kernel_init=torch_kernel_init)
        self.fc6 = nn.Dense(self.x_dim, kernel_init=torch_kernel_init)

    def encode(self, x: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(mu, logvar)``, each (B, z_dim), of q(z | x, c)."""
        h = nn.relu(self.fc1(jnp.concatenate([x, cond], axis=-1)))
        h = nn.relu(self.fc2(h))
        return self.fc31(h), self.fc32(h)

    def decode_logits(self, z: jax.Array, cond: jax.Array) -> jax.Array:
        """Bernoulli logits of p(x | z, c), (B, x_dim)."""
        h = nn.relu(self.fc4(jnp.concatenate([z, cond], axis=-1)))
        h = nn.relu(self.fc5(h))
        return self.fc6(h)

    def decode(self, z: jax.Array, cond: jax.Array) -> jax.Array:
        """Mean image ``sigmoid(logits)`` in [0, 1], (B, x_dim)."""
        return nn.sigmoid(self.decode_logits(z, cond))

    def __call__(self, x: jax.Array, cond: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(logits, mu, logvar)`` with ``z = mu + exp(logvar / 2) * eps``."""
        mu, logvar = self.encode(x, cond)
        z = mu + jnp.exp(0.5 * logvar) * eps
        return self.decode_logits(z, cond), mu, logvar

    def call_packed(self, inputs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """:meth:`__call__` on one array ``inputs = concat([x, cond, eps], -1)``, (B, x_dim + num_classes + z_dim):
        the single-input form in which :class:`CVAELoss` hands examples to ``LayerwiseLoss``."""
        x, cond, eps = jnp.split(inputs, [self.x_dim, self.x_dim + self.num_classes], axis=-1)
        return self(x, cond, eps)


class VAELossTerms(NamedTuple):
    """The two summed parts of the VAE loss: ``bce`` and ``kl`` (scalars)."""

    bce: jax.Array
    kl: jax.Array


def create_cvae(
    key: jax.Array, *, x_dim: int, num_classes: int = 10, hidden: Sequence[int] | None = None, z_dim: int = 8
) -> tuple[CVAE, Any]:
    """``(module, params)``; ``hidden`` defaults to ``(512, 256)`` for ``x_dim >= 400`` else ``(256, 128)``."""
    if not isinstance(x_dim, int) or x_dim < 1:
        raise ValueError(f"x_dim must be a positive int (784 for MNIST, 64 for 8x8 digits), got {x_dim!r}.")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
    if not isinstance(z_dim, int) or z_dim < 1:
        raise ValueError(f"z_dim must be a positive int, got {z_dim!r}.")
    if hidden is None:
        hidden = MNIST_HIDDEN if x_dim >= 400 else DIGITS_HIDDEN
    hidden = tuple(int(h) for h in hidden)
    if len(hidden) != 2 or min(hidden) < 1:
        raise ValueError(f"hidden must be two positive layer widths (h1, h2), got {hidden!r}.")
    module = CVAE(x_dim=x_dim, num_classes=num_classes, hidden=hidden, z_dim=z_dim)
    return module, _init_params(module, key)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(module: CVAE, key: jax.Array) -> Any:
    """``module.init`` on zeros of one example, compiled once per module (not op by op)."""
    dims = (module.x_dim, module.num_classes, module.z_dim)
    return module.init(key, *(jnp.zeros((1, d)) for d in dims))["params"]


def flatten_images(x: Any) -> jax.Array:
    """(N, H, W, C) or (N, D) -> (N, D) float32."""
    x = jnp.asarray(x, jnp.float32)
    if x.ndim < 2:
        raise ValueError(f"x must have a leading example axis and features, got shape {x.shape}.")
    return x.reshape(x.shape[0], -1)


def one_hot(labels: Any, num_classes: int) -> jax.Array:
    """Integer labels (B,) -> one-hot conditions (B, num_classes) float32."""
    return jax.nn.one_hot(jnp.asarray(labels), num_classes, dtype=jnp.float32)


def per_example_vae_loss_terms(outputs: tuple[jax.Array, jax.Array, jax.Array], x: jax.Array) -> VAELossTerms:
    """``(BCE, KL)`` of the module doc per example, each (B,), from the outputs ``(logits, mu, logvar)`` of
    :meth:`CVAE.__call__` and the targets ``x`` (B, x_dim)."""
    logits, mu, logvar = outputs
    bce = jnp.sum(jax.nn.softplus(logits) - x * logits, axis=-1)
    kl = -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar), axis=-1)
    return VAELossTerms(bce, kl)


def per_example_vae_loss(outputs: tuple[jax.Array, jax.Array, jax.Array], x: jax.Array) -> jax.Array:
    """``l_VAE = BCE + KL`` per example, (B,), from the outputs of :meth:`CVAE.__call__` and the targets ``x``."""
    terms = per_example_vae_loss_terms(outputs, x)
    return terms.bce + terms.kl


def vae_loss_terms(module: CVAE, params: Any, x: jax.Array, cond: jax.Array, eps: jax.Array) -> VAELossTerms:
    """``(BCE, KL)`` of the module doc, each summed over the batch.

    Args:
      x: (B, x_dim) targets in [0, 1]; cond: (B, num_classes); eps: (B, z_dim) standard normal draws.
    """
    terms = per_example_vae_loss_terms(module.apply({"params": params}, x, cond, eps), x)
    return VAELossTerms(jnp.sum(terms.bce), jnp.sum(terms.kl))


def vae_loss(module: CVAE, params: Any, x: jax.Array, cond: jax.Array, eps: jax.Array) -> jax.Array:
    """``l_VAE = BCE + KL`` summed over the batch (scalar), as the original's ``loss_function``."""
    terms = vae_loss_terms(module, params, x, cond, eps)
    return terms.bce + terms.kl


def summed_loss_fn(module: CVAE):
    """``loss(params, (x, cond, eps)) -> l_VAE`` summed over the batch.

    The library's ``loss_fn(params, batch)`` shape. The original sums over the
    batch, so this is ``B`` times the library's usual mean; for a batch of one
    (how :mod:`jaxunlearn.curvature` presents each example) both agree.
    """

    def loss(params, batch):
        x, cond, eps = batch
        return vae_loss(module, params, x, cond, eps)

    return loss


def decode(module: CVAE, params: Any, z: jax.Array, cond: jax.Array) -> jax.Array:
    """Mean images ``sigmoid(decoder(z, c))`` (B, x_dim) in [0, 1]."""
    return module.apply({"params": params}, z, cond, method=CVAE.decode)


class CVAELoss(LayerwiseLoss):
    """``l_VAE`` per example as a :class:`~jaxunlearn.curvature.layerwise.LayerwiseLoss`, for the Dense fast path.

    ``loss(params, (x, cond, eps))`` is the batch **mean** ``(1/B) sum_b l_VAE(theta; x_b, c_b, eps_b)``
    (the library's ``loss_fn`` convention; the original's loss is the sum, :func:`vae_loss`), and
    :meth:`squared_grad_sum` the sum over the batch of ``(d l_VAE(theta; x_b, c_b, eps_b) / d theta)^2``,
    what :func:`jaxunlearn.curvature.fisher_diagonal` averages. Every parameter of the CVAE sits in one of
    its seven ``Dense`` layers, each called once per example, so the whole diagonal comes from
    ``sum_b (a_b^2)^T (delta_b^2)`` per layer (BackPACK; Dangel, Kunstner & Hennig, ICLR 2020), with ``a_b``
    the layer's input and ``delta_b`` the gradient of example ``b``'s loss at the layer's output.

    Examples reach the module as ``concat([x, cond, eps], -1)`` (:meth:`CVAE.call_packed`), the targets
    as ``x``. Subclasses override :meth:`vae_inputs` to derive ``(x, cond, eps)`` from another batch
    form (Selective Amnesia's Fisher decodes them from model samples).

    Args:
      module: the :class:`CVAE`.
    """

    def __init__(self, module: CVAE):
        super().__init__(module, per_example_vae_loss, apply_kwargs={"method": CVAE.call_packed})

    def vae_inputs(self, params: Any, batch: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(x (B, x_dim), cond (B, num_classes), eps (B, z_dim))`` of ``batch``; here ``batch`` is that triple."""
        del params
        x, cond, eps = batch
        return x, cond, eps

    def _packed(self, params: Any, batch: Any) -> tuple[jax.Array, jax.Array]:
        x, cond, eps = self.vae_inputs(params, batch)
        return jnp.concatenate([x, cond, eps], axis=-1), x

    def per_example_losses(self, params: Any, batch: Any) -> jax.Array:
        """``l_VAE`` of each example of ``batch``, (B,)."""
        return super().per_example_losses(params, self._packed(params, batch))

    def squared_grad_sum(self, params: Any, batch: Any) -> Any:
        """``sum_b (d l_VAE(theta; x_b, c_b, eps_b) / d theta)^2``, a pytree like ``params`` (per-layer formula)."""
        return super().squared_grad_sum(params, self._packed(params, batch))


def encode(module: CVAE, params: Any, x: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mu, logvar)`` (B, z_dim) each."""
    return module.apply({"params": params}, x, cond, method=CVAE.encode)


def sample(module: CVAE, params: Any, key: jax.Array, labels: Any) -> jax.Array:
    """Mean images of ``z ~ N(0, I)`` decoded with ``onehot(labels)``: (B, x_dim) for labels (B,)."""
    labels = jnp.asarray(labels)
    z = jax.random.normal(key, (labels.shape[0], module.z_dim))
    return decode(module, params, z, one_hot(labels, module.num_classes))
