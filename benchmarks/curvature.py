"""Curvature benchmark: HVP and Fisher-diagonal cost as ratios to a gradient, measured in one run.

    python benchmarks/curvature.py            # CPU by default; runs unchanged on GPU/TPU
    python benchmarks/curvature.py --n 4096 --repeats 20 --json results/curvature.json

Rows: an MLP (64-256-256-10) and a small CNN (8x8x1 inputs, conv16-conv32-dense10), N examples.
Columns:
  grad ms        one batched gradient of the mean loss over the N examples (the unit of every ratio)
  hvp/grad       one Hessian-vector product (forward-over-reverse) on the same batch
  fisher/grad    empirical Fisher diagonal over the N examples with the per-layer fast path
  vmap/grad      the same Fisher by vmap(grad) then squaring (the general path)
  max rel diff   largest relative difference between the two Fisher paths
  temp MiB       XLA's temporary-buffer size of the fast-path Fisher (compiled memory analysis), for
                 (chunk 64, N), (chunk 512, N), (chunk 64, 4N): flat in N, growing with the chunk
Targets (issue 2): hvp/grad <= 2; fisher/grad <= 1.5 (MLP) and <= 5 (CNN); memory flat in N.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxunlearn import curvature as cv
from jaxunlearn.io import atomic_write_json


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(256)(x))
        x = nn.relu(nn.Dense(256)(x))
        return nn.Dense(10)(x)


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(16, (3, 3), padding="SAME")(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=2, padding="SAME")(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def _ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def _time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile and warm up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _temp_mib(fn, *args):
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if analysis is None else analysis.temp_size_in_bytes / 2**20


def bench(name, model, input_shape, n, repeats):
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (4 * n,) + input_shape)
    y = jax.random.randint(ky, (4 * n,), 0, 10)
    data, big = (x[:n], y[:n]), (x, y)
    params = model.init(kp, x[:1])["params"]
    loss = cv.LayerwiseLoss(model, _ce)

    def plain(p, b):
        return loss(p, b)

    grad = jax.jit(jax.grad(plain))
    v = jax.tree.map(jnp.ones_like, params)
    hvp = jax.jit(lambda p, vv, b: cv.hvp(plain, p, vv, b))
    fisher_fast = jax.jit(lambda p, d: cv.fisher_diagonal(loss, p, d, batch_size=n))
    fisher_vmap = jax.jit(lambda p, d: cv.fisher_diagonal(plain, p, d, batch_size=n))

    t_grad = _time(grad, params, data, repeats=repeats)
    t_hvp = _time(hvp, params, v, data, repeats=repeats)
    t_fast = _time(fisher_fast, params, data, repeats=repeats)
    t_vmap = _time(fisher_vmap, params, data, repeats=max(1, repeats // 4))
    fast, slow = fisher_fast(params, data), fisher_vmap(params, data)
    rel = max(
        float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
        for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(slow))
    )
    mem = [
        _temp_mib(lambda p, d: cv.fisher_diagonal(loss, p, d, batch_size=c), params, d)
        for c, d in ((64, data), (512, data), (64, big))
    ]
    return {
        "model": name, "n": n, "grad_ms": 1e3 * t_grad, "hvp_over_grad": t_hvp / t_grad,
        "fisher_over_grad": t_fast / t_grad, "vmap_fisher_over_grad": t_vmap / t_grad, "max_rel_diff": rel,
        "temp_mib_chunk64": mem[0], "temp_mib_chunk512": mem[1], "temp_mib_chunk64_4n": mem[2],
    }


def _fmt(v):
    if v is None:
        return "n/a"
    return f"{v:.2e}" if isinstance(v, float) and abs(v) < 1e-2 else (f"{v:.2f}" if isinstance(v, float) else str(v))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="examples per measurement (default 1024)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", help="also write the rows to this JSON file (atomically)")
    args = parser.parse_args(argv)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}", file=sys.stderr)
    rows = [
        bench("MLP 64-256-256-10", MLP(), (64,), args.n, args.repeats),
        bench("CNN 8x8 c16-c32-d10", CNN(), (8, 8, 1), args.n, args.repeats),
    ]
    cols = list(rows[0])
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(_fmt(r[c]).ljust(w) for c, w in zip(cols, widths)))
    if args.json:
        atomic_write_json(args.json, {"device": jax.devices()[0].device_kind, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
