"""Side by side with the original PyTorch code: the same computation, weights, data and batch order, both timed.

    python benchmarks/vs_pytorch.py                # every case: 4.5 minutes on the quiet 2-core CPU
    python benchmarks/vs_pytorch.py --cases ssd_cnn_32,sgld_lenet --repeats 7 --json results/vs_pytorch.json
    python benchmarks/vs_pytorch.py --conv-forms   # nn.Conv against columns x matrix, 4 minutes (no PyTorch needed)
    XLA_FLAGS='--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1' \
        python benchmarks/vs_pytorch.py --torch-threads 1                     # one thread a side (see below)

Needs PyTorch, which is not a dependency of jaxunlearn: ``pip install torch==2.13.0`` (CPU wheels:
``--index-url https://download.pytorch.org/whl/cpu``); without it the script says so and exits with status 2.

Each case builds our model, copies its weights into the PyTorch module (``jaxunlearn.models.export_torch_state_dict``
where the model is supported, by hand for the CVAE and the variational LeNet), feeds both sides the same data in
the same batch order, float32, and runs the PyTorch side as the original does (eager, in place; written in
``benchmarks/_torch_originals.py`` from /work/shared/reference/original-algorithms.md). Before timing, both
sides run once (our JAX functions compile there) and must agree: the largest relative difference of the outputs
(``max |ours - torch| / max |torch|`` per array, the largest over arrays) is printed and asserted below the case's
tolerance. Where the original draws random numbers (JiT noise, SGLD noise, the variational layers' draws) the
check feeds our draws to the PyTorch side; the timed PyTorch runs draw their own with ``torch.randn``. Then
``--repeats`` rounds (default 5) time ours, then PyTorch, alternately; the table shows the medians. Before each timed
run the script waits ``--settle`` seconds (default 0.3, not timed): both runtimes keep their worker threads spinning
for a while after an operation (PyTorch's OpenMP pool, XLA's thread pool), and a run started at once shares the two
cores with the other side's spinning threads (measured here: SGLD on LeNet-5 0.80x and 0.92x back to back, 0.94x and
1.01x with a 0.5 s pause, in alternating runs of one session). PyTorch runs on
2 threads (``torch.set_num_threads(2)``, ``--torch-threads``); XLA:CPU uses the cores it has (2 here). The load
average is printed at start and end: on a machine shared with other work (load above ~1 on 2 cores) PyTorch's two
OpenMP threads wait for each other at every operator and its times grow 5-30x (LiSSA: 80 s against 2.8 s quiet),
while XLA's degrade by about the load; such runs say nothing about the two codes. Run when quiet, or compare one
thread a side (the third command above), which the load slows alike. Ours are the public entry
points called as a user calls them (an ``Unlearner``'s ``init``/``update``, ``bayes.run_chain``,
``sa_fisher_diagonal``; the pure functions ``curvature.lissa`` and ``curvature.fisher_diagonal`` under
``jaxunlearn.jit``, as their docstrings ask).

Cases (digits: scikit-learn's 8x8 digits, 1,347 training images; synthetic: standard-normal images, labels
class-sorted where SSD needs it):
  ssd_mlp         SSD (alpha 10, lambda 1, batch 64): I_D over the class-sorted training data (ConcatDataset(retain,
                  forget) order: digits 1-9, then 0), I_f over digit 0, dampening; MLP 64-128-128-10
  jit_mlp         JiT (sigma 0.1, eta 0.01, N = 25, accumulated gradients), 256 digits in batches of 64, same MLP
  lissa_1000      LiSSA (BIF's recursion), depth 1,000, batches of 128 digits, energy prior + n meanCE, same MLP
  fisher_mlp      empirical per-example Fisher diagonal over 1,000 digits, same MLP (original: one backward each)
  sgld_mlp        SGLD, 500 steps of 64 (shuffled epochs), MLP 1024-512-512-10 on 2,048 synthetic 32x32x1 images
  ssd_cnn_digits  SSD as ssd_mlp on the SmallCNN (64 channels, fc 384, padding 2) on digits
  jit_cnn_digits  JiT as jit_mlp on that SmallCNN
  ssd_cnn_32      SSD on SmallCNN(channels 8, fc 32) at 32x32x3, 5,000 synthetic images (500 a class), forget class 0
  sgld_lenet      SGLD, 50 steps of 64, LeNet-5 on 2,048 synthetic 32x32x1 images
  sa_fisher       Selective Amnesia's Fisher, 1,000 model samples, CVAE 784-512-256-z8 (original: one backward each)
  vi_update       vi_forgetting(...).update, not jitted by the caller: BIF's VI forgetting of 16 digits from the
                  variational LeNet (padding SAME), bbp_T 5, batch 128, scaling0 0.1, iter_T 16 (BIF: 64; the
                  cost of both sides grows linearly with it)

``--conv-forms`` times, for the convolutions of SmallCNN(channels 8, fc 32) at 32x32x3, LeNet-5 at 32x32x1, the
digits SmallCNN (64 channels, padding 2) at 8x8x1 and the original SmallCNN (64 channels, fc 384) at 32x32x3, flax's
``nn.Conv`` against the same convolution written as columns times a matrix, the columns from
``jax.lax.conv_general_dilated_patches`` ("patches") or from the 25 shifted slices of the padded input ("slices"),
substituted with ``flax.linen.intercept_methods`` (same parameters), and the models' own forms ("library":
``jaxunlearn.models.conv_forms``, a dense matrix product for small maps, strips of the input times a banded matrix
for other 5x5 kernels, pooling by reshape; the other three run under its policy ``lax``): one forward+backward of
the batch-mean loss (batch 64) and the SSD importance pass (squared batch gradients summed over 20 batches of 64 in
``jaxunlearn.loops.scan``); the forms are checked equal first (max abs difference of the logits and of the pass
against ``nn.Conv``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

import jaxunlearn as ju
from jaxunlearn import bayes, curvature, loops, methods
from jaxunlearn.data import load_digits
from jaxunlearn.data.minibatch import shuffled_batches
from jaxunlearn.io import atomic_write_json
from jaxunlearn.methods.selective_amnesia import sa_fisher_diagonal, sample_fisher_inputs
from jaxunlearn.methods.vi_forgetting import vi_forgetting
from jaxunlearn.models import bayesian, classifier_loss, create, export_torch_state_dict, load_torch_state_dict
from jaxunlearn.models.conv_forms import conv_policy
from jaxunlearn.models.cvae import create_cvae
from jaxunlearn.models.lenet import LeNet
from jaxunlearn.models.small_cnn import SmallCNN
from jaxunlearn.train.classifier import train_classifier

torch = None  # imported by main(), after the check that it is installed
to = None  # benchmarks/_torch_originals.py, imported with torch

CASES = ("ssd_mlp", "jit_mlp", "lissa_1000", "fisher_mlp", "sgld_mlp", "ssd_cnn_digits", "jit_cnn_digits",
         "ssd_cnn_32", "sgld_lenet", "sa_fisher", "vi_update")
TORCH_MISSING = (
    "benchmarks/vs_pytorch.py compares against the original PyTorch code and needs PyTorch, which jaxunlearn does "
    "not depend on. Install the CPU build:\n    pip install torch==2.13.0\n(or pip install torch "
    "--index-url https://download.pytorch.org/whl/cpu), then run it again. --conv-forms alone needs no PyTorch."
)


class Case(NamedTuple):
    """One comparison.

    ``ours()`` and ``original()`` run the computation (``original`` on the PyTorch model, which the untimed
    ``reset()`` puts back to the initial weights); ``agree(ours_out, original_out)`` returns the largest relative
    difference (for random computations it reruns both sides on the same draws and ignores its arguments);
    ``tolerance`` bounds it.
    """

    ours: Callable[[], Any]
    original: Callable[[], Any]
    reset: Callable[[], None]
    agree: Callable[[Any, Any], float]
    tolerance: float


# ------------------------------------------------------------------------------------------------------- helpers


def _tensor(a: Any):
    """A torch tensor holding a private, writable copy of the array ``a``."""
    return torch.from_numpy(np.array(a, copy=True))


def _nchw(x: Any):
    """NHWC (ours) -> NCHW torch tensor; other ranks as they are."""
    x = np.asarray(x)
    return _tensor(np.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x)


def _rel_diff(ours: Any, theirs: Any) -> float:
    """``max over arrays of max |a - b| / max |b|`` (absolute where ``b`` is all zeros)."""
    worst = 0.0
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} against {b.shape}")
        scale = np.max(np.abs(b))
        worst = max(worst, float(np.max(np.abs(a - b)) / (scale if scale > 0 else 1.0)))
    return worst


class _Torch:
    """A PyTorch model holding our weights; ``fresh()`` puts the initial weights back and returns the model."""

    def __init__(self, model, state: dict):
        self.model, self.state = model, {k: _tensor(v) for k, v in state.items()}
        self.model.load_state_dict(self.state)

    def fresh(self):
        self.model.load_state_dict(self.state)
        return self.model

    def names(self) -> list[str]:
        return [n for n, _ in self.model.named_parameters()]


def _to_flax(module, variables, named: dict) -> Any:
    """A ``named_parameters``-like dict (PyTorch layout) -> our params tree, by the library's importer."""
    arrays = {k: v.detach().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in named.items()}
    return load_torch_state_dict(module, variables, arrays)["params"]


def _torch_params(module, variables, tree: Any, names: list[str]) -> list:
    """Our params-shaped ``tree`` -> tensors in PyTorch layout, in the order of ``names``."""
    exported = export_torch_state_dict(module, {"params": tree})
    return [_tensor(exported[n]) for n in names]


def _block(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` waited for: JAX dispatches asynchronously, the timer must see the finished result."""
    return lambda: jax.block_until_ready(fn())


def _digits(flat: bool):
    """Digits training split (1,347), class-sorted, with digit 0 moved last: ConcatDataset(retain, forget) order."""
    train, _ = load_digits(flatten=flat)
    order = np.concatenate([np.flatnonzero(train.y == c) for c in (*range(1, 10), 0)])
    return train.x[order], train.y[order].astype(np.int32)


def _synthetic(n: int, shape: tuple, seed: int, sorted_labels: bool = False):
    """``n`` standard-normal float32 inputs of ``shape`` and int32 labels (``n / 10`` a class in order, or random)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    y = np.repeat(np.arange(10), n // 10) if sorted_labels else rng.integers(0, 10, n)
    return x, y.astype(np.int32)


def _model(name: str, shape: tuple, **kwargs):
    """``jaxunlearn.models.create(name)`` for 10 classes and one example of ``shape``, key 0."""
    return create(name, num_classes=10, input_shape=shape, key=jax.random.key(0), **kwargs)


def _torch_classifier(name: str, module, variables, shape: tuple):
    """The PyTorch twin of one of our classifiers, holding its weights."""
    if name == "mlp":
        sizes = [int(np.prod(shape)), *module.hidden, module.num_classes]
        model = to.MLP(sizes)
    elif name == "small_cnn":
        flat = variables["params"]["fc1"]["kernel"].shape[0]
        model = to.SmallCNN(shape[-1], module.channels, module.hidden, flat, padding=module.padding)
    else:
        model = to.LeNet(shape[-1])
    return _Torch(model, export_torch_state_dict(module, variables))


# ---------------------------------------------------------------------------------------------------------- cases


def ssd_case(name: str, shape: tuple, data: tuple, forget_class: int, **model_kwargs) -> Case:
    """SSD: ``init`` (I_D over all of ``data``, in its order) and one ``update`` (I_f over ``forget_class``)."""
    module, variables = _model(name, shape, **model_kwargs)
    params = variables["params"]
    x, y = data
    forget_idx = np.flatnonzero(y == forget_class)
    unlearner = methods.ssd(classifier_loss(module, variables), alpha=10.0, lambda_=1.0, batch_size=64)
    tm = _torch_classifier(name, module, variables, shape)
    xt, yt = _nchw(x), _tensor(y).long()
    full = [(xt[i:i + 64], yt[i:i + 64]) for i in range(0, len(y), 64)]
    fx, fy = xt[forget_idx], yt[forget_idx]
    forget = [(fx[i:i + 64], fy[i:i + 64]) for i in range(0, len(forget_idx), 64)]
    data_j = (jnp.asarray(x), jnp.asarray(y))

    def ours():
        state = unlearner.init(params, data_j, key=jax.random.key(1))
        new, state, _ = unlearner.update(params, jnp.asarray(forget_idx), state, key=jax.random.key(2))
        return state.full_importance, new

    def original():
        model = tm.model
        full_imp, _ = to.ssd(model, full, forget, alpha=10.0, lambda_=1.0)
        return full_imp, dict(model.named_parameters())

    def agree(o, t):
        return _rel_diff(o, (_to_flax(module, variables, t[0]), _to_flax(module, variables, t[1])))

    return Case(_block(ours), original, tm.fresh, agree, 1e-3)


def jit_case(name: str, shape: tuple, x: np.ndarray, k: int = 256, batch: int = 64, **model_kwargs) -> Case:
    """JiT over the first ``k`` examples of ``x`` in batches of ``batch``, N = 25, the original's accumulation."""
    module, variables = _model(name, shape, **model_kwargs)
    params = variables["params"]
    num_samples, sigma, eta = 25, 0.1, 0.01
    logits = ju.models.logits_fn(module, variables)
    unlearner = methods.lipschitz(logits, sigma=sigma, eta=eta, num_samples=num_samples, batch_size=batch,
                                  accumulate_grads=True, train_mode=False)
    data_j = jnp.asarray(x)
    state = unlearner.init(params, data_j, key=jax.random.key(1))
    request = jnp.arange(k)
    tm = _torch_classifier(name, module, variables, shape)
    xt = _nchw(x[:k])
    batches = [xt[i:i + batch] for i in range(0, k, batch)]

    def ours():
        return unlearner.update(params, request, state, key=jax.random.key(2))[0]

    def original():
        to.jit_forget(tm.model, batches, sigma=sigma, eta=eta, num_samples=num_samples)
        return dict(tm.model.named_parameters())

    def agree(_o, _t):
        eps = jax.random.normal(jax.random.key(3), (num_samples, k, *shape))
        mine = unlearner.update(params, request, state, key=jax.random.key(2), noise=eps)[0]
        e = np.asarray(eps)
        e = np.transpose(e, (0, 1, 4, 2, 3)) if e.ndim == 5 else e  # [N, k, H, W, C] -> [N, k, C, H, W]
        noise = [_tensor(e[:, i:i + batch]) for i in range(0, k, batch)]
        to.jit_forget(tm.fresh(), batches, sigma=sigma, eta=eta, num_samples=num_samples, noise=noise)
        return _rel_diff(mine, _to_flax(module, variables, dict(tm.model.named_parameters())))

    return Case(_block(ours), original, tm.fresh, agree, 1e-3)


def lissa_case(depth: int = 1000, batch: int = 128, prior_std: float = 0.05) -> Case:
    """BIF's recursion of ``depth`` steps on the digits MLP (trained 10 epochs); ``v`` = gradient of the summed CE
    of digit 0; the scale from ``curvature.estimate_scale`` (power iteration), the same number on both sides."""
    module, variables = _model("mlp", (64,), hidden=(128, 128))
    x, y = _digits(flat=True)
    n = len(y)
    data = (jnp.asarray(x), jnp.asarray(y))
    # trained first and a tight prior (sigma_p 0.05): at the random initial weights, or with sigma_p 0.15 after 10
    # epochs, the Hessian has negative curvature and BIF's undamped recursion diverges (ours raises
    # LissaDivergenceError there)
    variables, _ = train_classifier(module, variables, data, optimizer=optax.adam(1e-3), num_epochs=10,
                                    batch_size=64, key=jax.random.key(9), progress=False)
    params = variables["params"]
    logits = ju.models.logits_fn(module, variables)
    energy = bayes.bnn_energy(logits, prior_std=prior_std)
    forget = np.flatnonzero(y == 0)
    v = jax.jit(jax.grad(energy.forget))(params, (data[0][forget], data[1][forget]))
    rng = np.random.default_rng(0)
    idx = jnp.asarray(np.stack([rng.choice(n, batch, replace=False) for _ in range(depth)]).astype(np.int32))

    def loss(p, b):
        return energy.energy(p, b, n)

    scale = float(jax.jit(lambda p, i, d: curvature.estimate_scale(loss, p, i, key=jax.random.key(4), data=d))(
        params, idx, data))
    run = ju.jit(lambda p, vv, i, d: curvature.lissa(loss, p, vv, i, data=d, scale=scale).ihvp)
    tm = _torch_classifier("mlp", module, variables, (64,))
    xt, yt = _tensor(x), _tensor(y).long()
    v_t = _torch_params(module, variables, v, tm.names())
    idx_t = _tensor(np.asarray(idx)).long()

    def original():
        model = tm.model
        out = to.lissa(model, v_t, lambda i: to.bnn_energy(model, xt[i], yt[i], n, prior_std), idx_t, scale)
        return dict(zip(tm.names(), out))

    def agree(o, t):
        return _rel_diff(o, _to_flax(module, variables, t))

    return Case(_block(lambda: run(params, v, idx, data)), original, tm.fresh, agree, 1e-3)


def fisher_case(num: int = 1000) -> Case:
    """Empirical per-example Fisher over the first ``num`` digits (natural order); ours on the per-layer path."""
    module, variables = _model("mlp", (64,), hidden=(128, 128))
    params = variables["params"]
    train, _ = load_digits(flatten=True)
    x, y = train.x[:num], train.y[:num].astype(np.int32)
    loss = classifier_loss(module, variables)
    run = ju.jit(lambda p, d: curvature.fisher_diagonal(loss, p, d))
    data = (jnp.asarray(x), jnp.asarray(y))
    tm = _torch_classifier("mlp", module, variables, (64,))
    xt, yt = _tensor(x), _tensor(y).long()

    def agree(o, t):
        return _rel_diff(o, _to_flax(module, variables, t))

    return Case(_block(lambda: run(params, data)), lambda: to.per_example_fisher(tm.model, xt, yt), tm.fresh,
                agree, 1e-3)


def sgld_case(name: str, steps: int, batch: int = 64, n: int = 2048, prior_std: float = 0.1, check_steps: int = 8,
              **model_kwargs) -> Case:
    """``bayes.run_chain`` with SGLD (lr 0.5 / n, constant) against the PyTorch SGLD loop on the same batches;
    agreement is checked on the chain's first ``check_steps`` steps with our noise fed to the PyTorch side."""
    shape = (32, 32, 1)
    module, variables = _model(name, shape, **model_kwargs)
    params = variables["params"]
    x, y = _synthetic(n, shape, seed=1)
    data = (jnp.asarray(x), jnp.asarray(y))
    lr = 0.5 / n
    logits = ju.models.logits_fn(module, variables)
    sampler = bayes.sgld(bayes.bnn_energy(logits, prior_std=prior_std).energy)
    state = sampler.init(params)
    key = jax.random.key(5)
    k_batches, k_steps = jax.random.split(key)  # run_chain's documented key use
    idx = shuffled_batches(k_batches, jnp.ones((n,), bool), steps, batch)
    tm = _torch_classifier(name, module, variables, shape)
    xt, yt, idx_t = _nchw(x), _tensor(y).long(), _tensor(np.asarray(idx)).long()

    def ours():
        return bayes.run_chain(sampler, key, state, data, lr=lr, num_steps=steps, batch_size=batch)[0].position

    def original():
        to.sgld_chain(tm.model, xt, yt, idx_t, lr=lr, prior_std=prior_std)
        return dict(tm.model.named_parameters())

    def agree(_o, _t):
        from blackjax.util import generate_gaussian_noise  # the draws of blackjax's SGLD kernel

        # the first check_steps steps: over longer chains the two float32 trajectories part at ReLU and max-pool
        # kinks, which route whole gradients (LeNet: 5e-6 apart after 10 steps, 7e-2 after 20; the MLP 1e-6 after 50)
        mine = bayes.run_chain(sampler, key, state, data, lr=lr, num_steps=check_steps, batch_size=batch)[0].position
        draw = jax.jit(lambda k: generate_gaussian_noise(k, params))
        keys = jax.random.split(k_steps, check_steps)
        names = tm.names()
        to.sgld_chain(tm.fresh(), xt, yt, idx_t[:check_steps], lr=lr, prior_std=prior_std,
                      noise=lambda t: _torch_params(module, variables, draw(keys[t]), names))
        return _rel_diff(mine, _to_flax(module, variables, dict(tm.model.named_parameters())))

    return Case(_block(ours), original, tm.fresh, agree, 1e-3)


def _cvae_state(params: Any) -> dict:
    """Our CVAE's params as the PyTorch ``OneHotCVAE`` state dict (Dense kernels transposed)."""
    return {f"{layer}.{kind}": np.asarray(params[layer][leaf]).T if leaf == "kernel"
            else np.asarray(params[layer][leaf])
            for layer in params for leaf, kind in (("kernel", "weight"), ("bias", "bias"))}


def sa_case(num_samples: int = 1000) -> Case:
    """``sa_fisher_diagonal`` (per-layer fast path) against ``calculate_fim.py``'s per-sample loop."""
    module, params = create_cvae(jax.random.key(0), x_dim=784)
    key = jax.random.key(6)
    tm = _Torch(to.OneHotCVAE(784, 512, 256, 8), _cvae_state(params))
    z, c, eps = sample_fisher_inputs(module, key, num_samples)
    draws = (_tensor(z), _tensor(c).long(), _tensor(eps))

    def original():
        return to.sa_fisher(tm.model, num_samples, z_dim=8)

    def agree(o, _t):
        fisher = to.sa_fisher(tm.fresh(), num_samples, z_dim=8, draws=draws)
        theirs = {layer: {"kernel": fisher[f"{layer}.weight"].numpy().T, "bias": fisher[f"{layer}.bias"].numpy()}
                  for layer in o}
        return _rel_diff(o, theirs)

    return Case(_block(lambda: sa_fisher_diagonal(module, params, key, num_samples=num_samples)), original,
                tm.fresh, agree, 1e-3)


_VLAYERS = ("MeanFieldConv_0", "MeanFieldConv_1", "MeanFieldDense_0", "MeanFieldDense_1", "MeanFieldDense_2")
_TLAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


def _vlenet_state(params: Any, spatial: int, channels: int) -> dict:
    """Our variational LeNet's params in the PyTorch twin's layout (``fc1`` rows from (H, W, C) to (C, H, W))."""
    perm = np.arange(spatial * spatial * channels).reshape(spatial, spatial, channels).transpose(2, 0, 1).ravel()
    state = {}
    for ours, theirs in zip(_VLAYERS, _TLAYERS):
        for part in ("mu", "rho"):
            k = np.asarray(params[ours][f"kernel_{part}"])
            if k.ndim == 4:
                k = k.transpose(3, 2, 0, 1)
            else:
                k = (k[perm] if theirs == "fc1" else k).T
            state[f"{theirs}.weight_{part}"] = k
            state[f"{theirs}.bias_{part}"] = np.asarray(params[ours][f"bias_{part}"])
    return state


def _nhwc_conv(x, kernel, padding):
    """The convolution of :class:`jaxunlearn.models.bayesian.MeanFieldConv` (stride 1, NHWC x HWIO)."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _layer_draws(module, params, x, key) -> list:
    """The standard-normal draws of each mean-field layer in one stochastic pass of ``module`` (in call order),
    recovered as ``(y - mean) / sqrt(var)`` from each layer's output (flax ``intercept_methods``)."""
    draws = []

    def capture(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        if isinstance(mod, (bayesian.MeanFieldConv, bayesian.MeanFieldDense)) and context.method_name == "__call__":
            (a,) = args
            p = mod.variables["params"]
            if isinstance(mod, bayesian.MeanFieldConv):
                mean = _nhwc_conv(a, p["kernel_mu"], mod.padding) + p["bias_mu"]
                var = _nhwc_conv(a * a, jnp.exp(2 * p["kernel_rho"]), mod.padding) + jnp.exp(2 * p["bias_rho"])
            else:
                mean = a @ p["kernel_mu"] + p["bias_mu"]
                var = (a * a) @ jnp.exp(2 * p["kernel_rho"]) + jnp.exp(2 * p["bias_rho"])
            draws.append((out - mean) / jnp.sqrt(var))
        return out

    with nn.intercept_methods(capture):
        module.apply({"params": params}, x, rngs={bayesian.RNG_STREAM: key})
    return draws


def vi_case(request_size: int = 16, iter_T: int = 16, bbp_T: int = 5, batch: int = 128) -> Case:
    """``vi_forgetting(...).update`` (un-jitted by the caller) against BIF's ``vbnnForgetter`` on digits."""
    prior_std, scaling0 = 0.15, 0.1
    x, y = _digits(flat=False)
    n = len(y)
    module = bayesian.BayesLeNet(10, variational=True, padding="SAME")
    params = jax.jit(lambda k: module.init({"params": k, bayesian.RNG_STREAM: k}, jnp.zeros((1, 8, 8, 1))))(
        jax.random.key(0))["params"]
    energy = bayes.vbnn_energy(bayesian.stochastic_logits_fn(module), prior_std=prior_std)
    forgetter = vi_forgetting(energy, scaling0=scaling0, iter_T=iter_T, bbp_T=bbp_T, batch_size=batch)
    data = (jnp.asarray(x), jnp.asarray(y))
    state = forgetter.init(params, data, key=jax.random.key(1))
    request = jnp.asarray(np.random.default_rng(2).permutation(np.flatnonzero(y == 0))[:request_size])
    key = jax.random.key(3)
    tm = _Torch(to.VariationalLeNet(1, 64, padding=2), _vlenet_state(params, 2, 16))
    xt, yt = _nchw(x), _tensor(y).long()
    request_t = _tensor(request).long()
    forget_t = (xt[request_t], yt[request_t])
    k_batches, k_noise = jax.random.split(key)  # the documented key use of update and vi_influence
    idx = shuffled_batches(k_batches, jnp.ones((n,), bool), iter_T, batch)
    idx_t = _tensor(np.asarray(idx)).long()

    def run_original(model, noise=None):
        to.vbnn_forget(model, forget_t, xt, yt, idx_t, n=n, scaling0=scaling0, bbp_T=bbp_T, prior_std=prior_std,
                       noise=noise)
        return dict(model.named_parameters())

    def agree(o, _t):
        k_grad, k_hvp = jax.random.split(k_noise)
        capture = jax.jit(lambda xx, k: _layer_draws(module, params, xx, k))
        passes = {("grad", j): capture(data[0][request], k) for j, k in enumerate(jax.random.split(k_grad, bbp_T))}
        hvp_keys = jax.random.split(k_hvp, (iter_T, bbp_T))
        for t in range(iter_T):
            for j in range(bbp_T):
                passes[("hvp", t, j)] = capture(data[0][idx[t]], hvp_keys[t, j])

        def noise(tag):
            it = iter([_nchw(d) for d in passes[tag]])
            return lambda mean: next(it)

        theirs = run_original(tm.fresh(), noise)
        flat = {f"{t}.{kind}_{part}": theirs[f"{t}.{kind}_{part}"].detach().numpy()
                for t in _TLAYERS for kind in ("weight", "bias") for part in ("mu", "rho")}
        mine = _vlenet_state(o, 2, 16)
        return _rel_diff([mine[k] for k in sorted(flat)], [flat[k] for k in sorted(flat)])

    def ours():
        return forgetter.update(params, request, state, key=key)[0]

    return Case(_block(ours), lambda: run_original(tm.model), tm.fresh, agree, 1e-3)


def build_case(name: str) -> Case:
    """The :class:`Case` called ``name`` (one of :data:`CASES`, described in the module docstring)."""
    if name in ("ssd_mlp", "ssd_cnn_digits"):
        data = _digits(flat=name == "ssd_mlp")
        if name == "ssd_mlp":
            return ssd_case("mlp", (64,), data, 0, hidden=(128, 128))
        return ssd_case("small_cnn", (8, 8, 1), data, 0)
    if name == "jit_mlp":
        return jit_case("mlp", (64,), _digits(flat=True)[0], hidden=(128, 128))
    if name == "jit_cnn_digits":
        return jit_case("small_cnn", (8, 8, 1), _digits(flat=False)[0])
    if name == "ssd_cnn_32":
        x, y = _synthetic(5000, (32, 32, 3), seed=0, sorted_labels=True)
        order = np.concatenate([np.flatnonzero(y != 0), np.flatnonzero(y == 0)])  # retain, then forget
        return ssd_case("small_cnn", (32, 32, 3), (x[order], y[order]), 0, channels=8, hidden=32)
    if name == "lissa_1000":
        return lissa_case()
    if name == "fisher_mlp":
        return fisher_case()
    if name == "sgld_mlp":
        return sgld_case("mlp", 500, hidden=(512, 512))
    if name == "sgld_lenet":
        return sgld_case("lenet", 50)
    if name == "sa_fisher":
        return sa_case()
    if name == "vi_update":
        return vi_case()
    raise ValueError(f"unknown case {name!r}; choose from {', '.join(CASES)}.")


# -------------------------------------------------------------------------------------------------------- timing

SETTLE_S = 0.3
"""Seconds of pause before each timed run (``--settle``; module docstring)."""


def _seconds(fn: Callable[[], Any]) -> float:
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(name: str, repeats: int) -> dict:
    """Build, check and time one case: warm medians of ``repeats`` alternating runs (ours, original, ...)."""
    t0 = time.perf_counter()
    case = build_case(name)
    ours_out = case.ours()  # compiles
    first = time.perf_counter() - t0
    case.reset()
    original_out = case.original()
    diff = case.agree(ours_out, original_out)
    if not diff <= case.tolerance:
        raise AssertionError(f"{name}: ours and the original disagree, max rel diff {diff:.2e} > {case.tolerance}")
    times = {"ours": [], "original": []}
    for _ in range(repeats):
        times["ours"].append(_seconds(case.ours))
        case.reset()
        times["original"].append(_seconds(case.original))
    ours, original = statistics.median(times["ours"]), statistics.median(times["original"])
    print(f"  {name}: ours {ours:.3f} s, original {original:.3f} s, diff {diff:.1e} (setup and compile {first:.1f} s)",
          file=sys.stderr, flush=True)
    return {"case": name, "original_s": original, "ours_s": ours, "speedup": original / ours, "max_rel_diff": diff,
            "ours_runs_s": times["ours"], "original_runs_s": times["original"]}


def _print_rows(header: tuple, cells: list[tuple]) -> None:
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for c in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(c, widths)))


def _print_table(rows: list[dict]) -> None:
    _print_rows(("case", "original (PyTorch)", "ours", "ours vs original (x faster)", "max rel diff"),
                [(r["case"], f"{r['original_s']:.3f} s", f"{r['ours_s']:.3f} s", f"{r['speedup']:.2f}x",
                  f"{r['max_rel_diff']:.1e}") for r in rows])


# ---------------------------------------------------------------------------------------------------- conv forms


def _conv_as_matrix(form: str) -> Callable:
    """A ``flax.linen.intercept_methods`` interceptor computing every ``nn.Conv`` call (stride 1) as columns x matrix.

    ``form="patches"``: the columns are ``jax.lax.conv_general_dilated_patches`` of the input, ``[B, H', W',
    C * kh * kw]`` with features ordered ``(c, kh, kw)``, and the kernel ``[kh, kw, C, O]`` is laid out to match.
    ``form="slices"``: the columns are the ``kh * kw`` shifted slices of the zero-padded input concatenated on the
    feature axis, ordered ``(kh, kw, c)``, the kernel's own order (a plain reshape).
    """

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        if type(mod) is not nn.Conv or context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if mod.strides not in (None, 1, (1, 1)) or not isinstance(mod.padding, int):
            raise ValueError(f"the conv forms cover stride 1 and integer padding; {mod.name} has strides "
                             f"{mod.strides!r}, padding {mod.padding!r}.")
        (x,) = args
        kernel = mod.variables["params"]["kernel"]
        kh, kw, cin, cout = kernel.shape
        pad = mod.padding
        if form == "patches":
            cols = jax.lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), ((pad, pad), (pad, pad)),
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
            matrix = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin * kh * kw, cout)
        else:
            xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
            cols = jnp.concatenate([xp[:, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)], axis=-1)
            matrix = kernel.reshape(kh * kw * cin, cout)
        out = cols @ matrix
        return out + mod.variables["params"]["bias"] if mod.use_bias else out

    return interceptor


CONV_FORMS = ("nn.Conv", "patches", "slices", "library")


def _apply(module, params, x, form: str):
    """Logits of ``module`` with its ``nn.Conv`` layers in ``form`` (one of :data:`CONV_FORMS`): ``nn.Conv`` is
    the plain ``lax`` convolution and pooling, ``library`` the models' own forms (``models.conv_forms``, policy
    ``auto``: dense matrices for small maps, strips times banded matrices for other 5x5 kernels, pooling by
    reshape)."""
    if form == "library":
        return module.apply({"params": params}, x)
    with conv_policy("lax"):
        if form == "nn.Conv":
            return module.apply({"params": params}, x)
        with nn.intercept_methods(_conv_as_matrix(form)):
            return module.apply({"params": params}, x)


def _conv_form_functions(module, form: str):
    """``(grad_fn(params, batch), ssd_pass(params, stacked_batches))``, jitted, in one convolution form."""

    def loss(p, batch):
        return ju.models.per_example_cross_entropy(_apply(module, p, batch[0], form), batch[1]).mean()

    def ssd_pass(p, stacked):
        def body(acc, batch):
            return otu.tree_add(acc, jax.tree.map(jnp.square, jax.grad(loss)(p, batch))), None

        return loops.scan(body, otu.tree_zeros_like(p), stacked)[0]

    return jax.jit(jax.grad(loss)), jax.jit(ssd_pass)


def _conv_form_rows(label: str, module, shape: tuple, repeats: int) -> list[dict]:
    """Check the forms equal on ``module`` (logits and SSD pass), then time both workloads in every form,
    the forms alternating within each round."""
    x, y = _synthetic(20 * 64, shape, seed=3)
    params = module.init(jax.random.key(0), jnp.zeros((1, *shape)))["params"]
    stacked = (jnp.asarray(x).reshape(20, 64, *shape), jnp.asarray(y).reshape(20, 64))
    first = jax.tree.map(lambda a: a[0], stacked)
    fns = {form: _conv_form_functions(module, form) for form in CONV_FORMS}
    outs = {form: (jax.jit(lambda p, xx, form=form: _apply(module, p, xx, form))(params, first[0]),
                   fns[form][1](params, stacked)) for form in CONV_FORMS}
    for grad_fn, _ in fns.values():
        jax.block_until_ready(grad_fn(params, first))  # compile
    diff = {form: max(float(jnp.max(jnp.abs(a - b))) for a, b in
                      zip(jax.tree.leaves(outs[form]), jax.tree.leaves(outs["nn.Conv"]))) for form in CONV_FORMS}
    runs = {(form, part): (lambda fn=fn, arg=arg: jax.block_until_ready(fn(params, arg)))
            for form, pair in fns.items() for part, (fn, arg) in enumerate(zip(pair, (first, stacked)))}
    times: dict = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            times[k].append(_seconds(run))
    med = {k: statistics.median(v) for k, v in times.items()}
    return [{"model": label, "workload": what, **{f"{form}_s": med[form, part] for form in CONV_FORMS},
             "max_abs_diff": {form: diff[form] for form in CONV_FORMS[1:]}}
            for part, what in ((0, "fwd+bwd, batch 64"), (1, "SSD pass, 20 x 64 in loops.scan"))]


def conv_forms(repeats: int) -> list[dict]:
    """``nn.Conv`` against two columns x matrix forms (:func:`_conv_as_matrix`) and the library's own forms on
    SmallCNN(8, 32) at 32x32x3, LeNet-5 at 32x32x1, the digits SmallCNN (64 channels, padding 2) at 8x8x1 and the
    original SmallCNN (64 channels) at 32x32x3 (module doc)."""
    rows = [*_conv_form_rows("SmallCNN c8 32x32x3", SmallCNN(channels=8, hidden=32), (32, 32, 3), repeats),
            *_conv_form_rows("LeNet-5 32x32x1", LeNet(), (32, 32, 1), repeats),
            *_conv_form_rows("SmallCNN c64 pad 2 8x8x1", SmallCNN(padding=2), (8, 8, 1), repeats),
            *_conv_form_rows("SmallCNN c64 32x32x3", SmallCNN(), (32, 32, 3), repeats)]
    _print_rows(("model", "workload", "nn.Conv", "patches x matrix", "slices x matrix", "library forms",
                 "patches vs nn.Conv (x faster)", "slices vs nn.Conv (x faster)", "library vs nn.Conv (x faster)",
                 "max abs diff"),
                [(r["model"], r["workload"], *(f"{r[f'{form}_s'] * 1e3:.2f} ms" for form in CONV_FORMS),
                  *(f"{r['nn.Conv_s'] / r[f'{form}_s']:.2f}x" for form in CONV_FORMS[1:]),
                  f"{max(r['max_abs_diff'].values()):.1e}") for r in rows])
    return rows


# ----------------------------------------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    global SETTLE_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--cases", help=f"comma-separated subset of: {','.join(CASES)} (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side, alternating (default 5)")
    parser.add_argument("--settle", type=float, default=SETTLE_S,
                        help=f"seconds of pause before each timed run, so the other side's threads go idle "
                             f"(default {SETTLE_S})")
    parser.add_argument("--json", help="also write the results to this JSON file (atomically)")
    parser.add_argument("--torch-threads", type=int, default=2,
                        help="PyTorch's intra-op threads (default 2, as the cores here); for a 1-thread comparison "
                             "also give XLA one thread: XLA_FLAGS='--xla_cpu_multi_thread_eigen=false "
                             "intra_op_parallelism_threads=1'")
    parser.add_argument("--conv-forms", action="store_true",
                        help="only time nn.Conv against patches x matrix (module doc); needs no PyTorch")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be a positive integer")
    if not args.settle >= 0:
        parser.error("--settle must be a number of seconds >= 0")
    SETTLE_S = args.settle
    if args.torch_threads < 1:
        parser.error("--torch-threads must be a positive integer")
    cases = CASES if not args.cases else tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}"
    load_start = os.getloadavg()
    result: dict = {"device": device, "load_start": load_start}
    if args.conv_forms:
        print(f"device: {device}; load average at start {load_start[0]:.2f}")
        result["conv_forms"] = conv_forms(args.repeats)
    else:
        global torch, to
        try:
            import torch as _torch
        except ImportError:
            print(TORCH_MISSING, file=sys.stderr)
            raise SystemExit(2) from None
        torch = _torch
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import _torch_originals

        to = _torch_originals
        torch.set_num_threads(args.torch_threads)
        result["torch"] = torch.__version__
        result["torch_threads"] = args.torch_threads
        result["settle_s"] = SETTLE_S
        result["xla_flags"] = os.environ.get("XLA_FLAGS", "")
        print(f"device: {device}; torch {torch.__version__} on {torch.get_num_threads()} threads; XLA_FLAGS "
              f"{result['xla_flags'] or '(none)'}; load average at start {load_start[0]:.2f}")
        result["rows"] = [measure(name, args.repeats) for name in cases]
        _print_table(result["rows"])
    result["load_end"] = os.getloadavg()
    print(f"load average (1 min) at start {load_start[0]:.2f}, at end {result['load_end'][0]:.2f}")
    if args.json:
        atomic_write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
