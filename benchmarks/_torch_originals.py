"""The PyTorch side of ``benchmarks/vs_pytorch.py``: the originals' computations, written from their description.

Written from /work/shared/reference/original-algorithms.md (what each original computes), in the originals'
style: eager PyTorch, one ``backward`` per batch (or per example where the original loops over examples),
parameters updated in place. Incidental costs of the originals (progress bars, prints, NaN checks, the JiT
``deepcopy`` of every batch) are left out, so the times here are a lower bound of the originals'.

Models (NCHW images, PyTorch layer names, so :func:`jaxunlearn.models.export_torch_state_dict` fills them):
:class:`MLP` (``mcmcMLP`` of ``fshp971/mcmc-unlearning``), :class:`SmallCNN`, :class:`LeNet`,
:class:`OneHotCVAE` (``clear-nus/selective-amnesia/vae``) and :class:`VariationalLeNet` (BIF's mean-field
LeNet with the local reparameterisation trick).

Computations (each returns what the comparison checks):

* :func:`ssd`: Selective Synaptic Dampening (``if-loops/selective-synaptic-dampening``):
  ``I_L = (1/M) sum_j (grad meanCE(B_j))^2`` over the loader's batches, then
  ``theta <- min(lambda I_D / I_f, 1) theta`` where ``I_f > alpha I_D``.
* :func:`jit_forget`: JiT (``jwf40/Information-Theoretic-Unlearning``, ``Lipschitz.modify_weight``): per forget
  batch, ``(1/N) sum_s sum_i ||f(x_i) - f(x~_si)|| / ||x_i - x~_si||`` (no gradient through ``f(x~)``), plain SGD,
  gradients zeroed once before the loop.
* :func:`lissa`: BIF's recursion ``h_t = v + h_{t-1} - (s H_{B_t}) h_{t-1}`` by double backward; returns ``s h_T``.
* :func:`per_example_fisher`: ``(1/N) sum_i (grad l_i)^2``, one ``backward`` per example (batch size 1).
* :func:`sgld_chain`: ``theta <- theta - eta grad F_hat + N(0, 2 eta)``, ``F_hat = sum theta^2/(2 sigma^2) + n meanCE``.
* :func:`sa_fisher`: Selective Amnesia's ``calculate_fim.py``: per sample, ``x = decoder(z, c)`` without gradient,
  then ``(grad (BCE + KL))^2`` of the VAE on ``(x, c)``, averaged.
* :func:`vbnn_forget`: BIF's ``vbnnForgetter``: ``v`` and every HVP averaged over ``bbp_T`` stochastic passes,
  the recursion above with ``s = scaling0 / n``, then ``gamma <- gamma + s h_T``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NoiseFn = Callable[[torch.Tensor], torch.Tensor]


def _randn_like(t: torch.Tensor) -> torch.Tensor:
    return torch.randn_like(t)


# ----------------------------------------------------------------------------------------------------------- models


class MLP(nn.Module):
    """``linear1 .. linearL`` with ReLU between, on inputs flattened as ``x.view(B, -1)``."""

    def __init__(self, sizes: Sequence[int]):
        super().__init__()
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            setattr(self, f"linear{i + 1}", nn.Linear(a, b))
        self.depth = len(sizes) - 1

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"linear{i}")(x)
            if i < self.depth:
                x = F.relu(x)
        return x


class SmallCNN(nn.Module):
    """``conv1 -> relu -> pool -> conv2 -> relu -> pool -> fc1 -> relu -> fc2`` (5x5 convolutions)."""

    def __init__(self, in_channels: int, channels: int, hidden: int, flat: int, num_classes: int = 10,
                 padding: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 5, padding=padding)
        self.conv2 = nn.Conv2d(channels, channels, 5, padding=padding)
        self.fc1 = nn.Linear(flat, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.reshape(x.shape[0], -1))))


class LeNet(nn.Module):
    """LeNet-5 ``conv6-pool-conv16-pool-fc120-fc84-fc10`` (no padding: 32x32 inputs)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc3(F.relu(self.fc2(x)))


class OneHotCVAE(nn.Module):
    """Selective Amnesia's one-hot CVAE: encoder ``[x, c] -> h1 -> h2 -> (mu, log var)``, decoder
    ``[z, c] -> h2 -> h1 -> x`` with a sigmoid; ``forward(x, c, eps)`` uses ``z = mu + exp(log var / 2) eps``."""

    def __init__(self, x_dim: int, h1: int, h2: int, z_dim: int, num_classes: int = 10):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(x_dim + num_classes, h1), nn.Linear(h1, h2)
        self.fc31, self.fc32 = nn.Linear(h2, z_dim), nn.Linear(h2, z_dim)
        self.fc4, self.fc5, self.fc6 = nn.Linear(z_dim + num_classes, h2), nn.Linear(h2, h1), nn.Linear(h1, x_dim)

    def decoder(self, z, c):
        h = F.relu(self.fc4(torch.cat([z, c], -1)))
        return torch.sigmoid(self.fc6(F.relu(self.fc5(h))))

    def forward(self, x, c, eps):
        h = F.relu(self.fc2(F.relu(self.fc1(torch.cat([x, c], -1)))))
        mu, log_var = self.fc31(h), self.fc32(h)
        return self.decoder(mu + torch.exp(0.5 * log_var) * eps, c), mu, log_var


class _MeanField(nn.Module):
    """A mean-field Gaussian layer, local reparameterisation: ``mean + sqrt(var) * eps`` with
    ``mean = op(x; mu_W, mu_b)``, ``var = op(x^2; exp(2 rho_W), exp(2 rho_b))`` (sigma = exp(rho), as BIF)."""

    def __init__(self, weight_shape, out_features, op):
        super().__init__()
        self.weight_mu = nn.Parameter(torch.zeros(weight_shape))
        self.weight_rho = nn.Parameter(torch.zeros(weight_shape))
        self.bias_mu = nn.Parameter(torch.zeros(out_features))
        self.bias_rho = nn.Parameter(torch.zeros(out_features))
        self.op = op

    def forward(self, x, noise: NoiseFn):
        mean = self.op(x, self.weight_mu, self.bias_mu)
        var = self.op(x * x, torch.exp(2.0 * self.weight_rho), torch.exp(2.0 * self.bias_rho))
        return mean + torch.sqrt(var) * noise(mean)


class VariationalLeNet(nn.Module):
    """BIF's variational LeNet-5 (mean-field conv and linear layers); ``padding`` of both 5x5 convolutions.

    ``forward(x, noise)``: ``noise(mean)`` gives each layer's standard-normal draw (``torch.randn_like`` in the
    original); the layers are visited in order conv1, conv2, fc1, fc2, fc3.
    """

    def __init__(self, in_channels: int, flat: int, padding: int, num_classes: int = 10):
        super().__init__()

        def conv(x, w, b):
            return F.conv2d(x, w, b, padding=padding)

        self.conv1 = _MeanField((6, in_channels, 5, 5), 6, conv)
        self.conv2 = _MeanField((16, 6, 5, 5), 16, conv)
        self.fc1 = _MeanField((120, flat), 120, F.linear)
        self.fc2 = _MeanField((84, 120), 84, F.linear)
        self.fc3 = _MeanField((num_classes, 84), num_classes, F.linear)

    def forward(self, x, noise: NoiseFn = _randn_like):
        x = F.max_pool2d(F.relu(self.conv1(x, noise)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x, noise)), 2)
        x = F.relu(self.fc1(x.reshape(x.shape[0], -1), noise))
        return self.fc3(F.relu(self.fc2(x, noise)), noise)

    def kl(self, prior_std: float):
        """``sum mu^2 / (2 sigma_p^2) + sum [exp(2 rho) / (2 sigma_p^2) - rho]`` (BIF's KL, constants dropped)."""
        total = 0.0
        for name, p in self.named_parameters():
            if name.endswith("_mu"):
                total = total + (p * p).sum() / (2 * prior_std**2)
            else:
                total = total + (torch.exp(2 * p) / (2 * prior_std**2) - p).sum()
        return total


# ----------------------------------------------------------------------------------------------------- computations


def ssd(model: nn.Module, full_batches: Iterable, forget_batches: Iterable, *, alpha: float, lambda_: float):
    """SSD in place on ``model``; returns ``(I_D, I_f)`` as dicts like ``named_parameters``."""
    model.eval()

    def importance(batches):
        imp = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        count = 0
        for x, y in batches:
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            for n, p in model.named_parameters():
                imp[n] += p.grad.detach() ** 2
            count += 1
        return {n: v / count for n, v in imp.items()}

    full, forget = importance(full_batches), importance(forget_batches)
    with torch.no_grad():
        for n, p in model.named_parameters():
            selected = forget[n] > alpha * full[n]
            factor = torch.clamp(lambda_ * full[n] / forget[n], max=1.0)
            p[selected] = p[selected] * factor[selected]
    return full, forget


def jit_forget(model: nn.Module, batches: Iterable[torch.Tensor], *, sigma: float, eta: float, num_samples: int,
               noise: Sequence[torch.Tensor] | None = None):
    """JiT in place on ``model``; ``noise[b]`` (``[N, B, ...]``) replaces the draws of batch ``b`` when given."""
    optimizer = torch.optim.SGD(model.parameters(), lr=eta)
    optimizer.zero_grad()  # once: the steps use the running sum of the gradients (the original's quirk)
    for b, x in enumerate(batches):
        out = model(x)
        lo, hi = x.min(), x.max()
        loss = torch.zeros(())
        for s in range(num_samples):
            eps = torch.randn_like(x) if noise is None else noise[b][s]
            x2 = torch.clamp(x + sigma * eps, min=lo, max=hi)
            with torch.no_grad():
                out2 = model(x2)
            in_norm = torch.linalg.vector_norm((x - x2).reshape(x.shape[0], -1), dim=1)
            out_norm = torch.linalg.vector_norm(out - out2, dim=1)
            loss = loss + (out_norm / in_norm).sum()
        (loss / num_samples).backward()
        optimizer.step()


def _gaussian_prior(model: nn.Module, prior_std: float):
    return sum((p * p).sum() for p in model.parameters()) / (2 * prior_std**2)


def bnn_energy(model: nn.Module, x, y, n: int, prior_std: float):
    """``F_hat = sum theta^2 / (2 sigma_p^2) + n * meanCE`` (the MCMC BNN energy of BIF / MCMC unlearning)."""
    return _gaussian_prior(model, prior_std) + n * F.cross_entropy(model(x), y)


def _hvp(params, energy, vector, scale: float):
    """``(scale H) vector`` by double backward: the gradient of ``<grad(scale F), vector>``."""
    grads = torch.autograd.grad(scale * energy, params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector))
    return torch.autograd.grad(dot, params)


def lissa(model: nn.Module, v: Sequence[torch.Tensor], energy_fn: Callable[[object], torch.Tensor],
          batches: Iterable, scale: float):
    """BIF's Neumann recursion ``h <- v + h - (s H_B) h``; returns ``s h_T`` (a list like ``parameters()``)."""
    params = list(model.parameters())
    h = [t.clone() for t in v]
    for batch in batches:
        hv = _hvp(params, energy_fn(batch), h, scale)
        for hh, vv, hvv in zip(h, v, hv):
            hh += vv - hvv
    return [scale * hh for hh in h]


def per_example_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """``(1/N) sum_i (grad CE(f(x_i), y_i))^2``, one ``backward`` per example; a dict like ``named_parameters``."""
    model.eval()
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for n, p in model.named_parameters():
            fisher[n] += p.grad.detach() ** 2
    return {n: f / x.shape[0] for n, f in fisher.items()}


def sgld_chain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batches: torch.Tensor, *, lr: float,
               prior_std: float, noise: Callable[[int], Sequence[torch.Tensor]] | None = None):
    """SGLD in place on ``model`` over the index rows ``batches``; ``noise(t)`` (like ``parameters()``) replaces
    the standard-normal draws of step ``t`` when given. ``n`` of the energy is ``len(x)``."""
    params = list(model.parameters())
    n = x.shape[0]
    std = math.sqrt(2 * lr)
    for t, idx in enumerate(batches):
        model.zero_grad()
        bnn_energy(model, x[idx], y[idx], n, prior_std).backward()
        draws = noise(t) if noise is not None else None
        with torch.no_grad():
            for i, p in enumerate(params):
                p.add_(p.grad, alpha=-lr)
                p.add_(torch.randn_like(p) if draws is None else draws[i], alpha=std)


def vae_loss(recon, x, mu, log_var):
    """``BCE(recon, x) + KL``, summed over the batch (the original's ``loss_function``)."""
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    return bce - 0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp())


def sa_fisher(model: OneHotCVAE, num_samples: int, *, z_dim: int, num_classes: int = 10,
              draws: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
    """``calculate_fim.py``: per sample ``x = decoder(z, c)`` (no gradient) and ``(grad l_VAE(x, c))^2``, averaged.

    ``draws = (z [N, z_dim], c [N], eps [N, z_dim])`` replaces the per-sample ``randn``/``randint`` draws.
    """
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(num_samples):
        if draws is None:
            z, c, eps = torch.randn(1, z_dim), torch.randint(0, num_classes, (1,)), torch.randn(1, z_dim)
        else:
            z, c, eps = draws[0][i:i + 1], draws[1][i:i + 1], draws[2][i:i + 1]
        cond = F.one_hot(c, num_classes).float()
        with torch.no_grad():
            sample = model.decoder(z, cond)
        model.zero_grad()
        recon, mu, log_var = model(sample, cond, eps)
        vae_loss(recon, sample, mu, log_var).backward()
        for n, p in model.named_parameters():
            fisher[n] += p.grad.detach() ** 2 / num_samples
    return fisher


def vbnn_forget(model: VariationalLeNet, forget: tuple, x: torch.Tensor, y: torch.Tensor, batches: torch.Tensor, *,
                n: int, scaling0: float, bbp_T: int, prior_std: float,
                noise: Callable[[object], NoiseFn] | None = None):
    """BIF's ``vbnnForgetter.forget`` in place on ``model``: ``gamma <- gamma + s h_T``, ``s = scaling0 / n``.

    ``v = mean_j grad sum_{S'} CE`` and every HVP (of ``F_hat = KL + n meanCE`` on ``x[batches[t]]``) are averaged
    over ``bbp_T`` stochastic passes. ``noise(("grad", j))`` / ``noise(("hvp", t, j))`` give the layer draws of
    each pass when given (else ``torch.randn_like``). Returns ``s h_T`` (a list like ``parameters()``).
    """
    params = list(model.parameters())
    draw = (lambda tag: _randn_like) if noise is None else noise
    fx, fy = forget
    v = None
    for j in range(bbp_T):
        g = torch.autograd.grad(F.cross_entropy(model(fx, draw(("grad", j))), fy, reduction="sum"), params)
        v = list(g) if v is None else [a + b for a, b in zip(v, g)]
    v = [a / bbp_T for a in v]
    scale = scaling0 / n
    h = [a.clone() for a in v]
    for t, idx in enumerate(batches):
        xb, yb = x[idx], y[idx]
        hv = None
        for j in range(bbp_T):
            energy = model.kl(prior_std) + n * F.cross_entropy(model(xb, draw(("hvp", t, j))), yb)
            r = _hvp(params, energy, h, scale)
            hv = list(r) if hv is None else [a + b for a, b in zip(hv, r)]
        for hh, vv, hvv in zip(h, v, hv):
            hh += vv - hvv / bbp_T
    with torch.no_grad():
        for p, hh in zip(params, h):
            p += scale * hh
    return [scale * hh for hh in h]
