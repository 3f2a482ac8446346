"""Loop strategies on convolutional and dense workloads: time of each as a ratio to the same steps outside any loop.

    python benchmarks/loops.py            # full run (SSD over 5,000 examples): 20 min on a busy 2-core CPU
    python benchmarks/loops.py --quick    # fewer examples and steps: 6 min there
(most of the time is compilation: full unrolling alone compiles for about a minute).
    python benchmarks/loops.py --json results/loops.json

Workloads (each a loop of gradient steps; the model's parameters are arguments, never constants):
  ssd cnn    SSD importances (squared batch gradients summed over the data, the "batch_squared" Fisher):
             SmallCNN(channels=8, hidden=32) at 32x32x3, 5,000 examples in batches of 100
  jit cnn    JiT steps (jaxunlearn.methods.lipschitz.lipschitz_loss, 10 perturbations, plain SGD) on the
             same CNN, 512 forget examples in batches of 64
  sgld lenet SGLD steps (jaxunlearn.bayes.sgld, blackjax's kernel) on LeNet-5 at 32x32x1, 50 steps of 64
  ssd mlp    SSD importances on a dense MLP 64-128-128-10, 5,000 examples in batches of 100

Columns (warm times: compilation excluded, reported separately; --repeats rounds each time every strategy
once, in turn, and the best round counts: the estimate least disturbed by other work on a shared machine):
  floor s     the same jitted step outside any loop, called on each batch in turn and waited for: the sum of
              the step times (the unit of every ratio)
  scan        one jitted lax.scan over the steps (jaxunlearn.loops policy "scan")
  unroll 8    lax.scan(unroll=8)
  unroll all  lax.scan(unroll=True): every step inlined
  host loop   a Python loop of the jitted step (asynchronous dispatch); only possible eagerly
  policy      jaxunlearn.loops.scan with the default policy ("auto": on CPU, convolutions rewritten in
              their canonical layout inside the loop)
  library     the library entry point under the default policy (curvature.fisher_diagonal,
              methods.lipschitz(...).update, bayes.run_chain); a slightly different program (the library's
              own minibatch draws, checks), so its ratio also shows their overhead
A second table gives the compile time (seconds) of each strategy.
"""

from __future__ import annotations

import argparse
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from jaxunlearn import bayes, loops
from jaxunlearn.curvature import fisher_diagonal
from jaxunlearn.io import atomic_write_json
from jaxunlearn.methods.lipschitz import lipschitz, lipschitz_loss
from jaxunlearn.models.lenet import LeNet
from jaxunlearn.models.small_cnn import SmallCNN
from jaxunlearn.train.loop import init_train_state, make_step, with_key

STRATEGIES = ("scan", "unroll 8", "unroll all", "host loop", "policy")


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        for width in (128, 128):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


def _ce_loss(module):
    def loss(params, batch):
        logits = module.apply({"params": params}, batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

    return loss


def _data(key, n, shape, classes=10):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n,) + shape), jax.random.randint(ky, (n,), 0, classes)


def _stack(data, batch):
    return jax.tree.map(lambda a: a.reshape((a.shape[0] // batch, batch) + a.shape[1:]), data)


def ssd_workload(module, shape, n, batch, key):
    """``body(params, acc, batch) = acc + grad(L)(params, batch)^2``; library: ``fisher_diagonal("batch_squared")``."""
    data = _data(key, n, shape)
    params = module.init(jax.random.key(1), data[0][:1])["params"]
    loss = _ce_loss(module)

    def body(p, acc, b):
        return otu.tree_add(acc, jax.tree.map(jnp.square, jax.grad(loss)(p, b)))

    def library(p, d):
        return fisher_diagonal(loss, p, d, estimator="batch_squared", batch_size=batch)

    return body, params, otu.tree_zeros_like(params), _stack(data, batch), (jax.jit(library), (params, data))


def jit_workload(n, batch, num_samples, key):
    """One JiT pass over ``n`` forget examples: an SGD step on the loss of ``lipschitz_loss`` per batch."""
    module = SmallCNN(num_classes=10, channels=8, hidden=32)
    x, _ = _data(key, n, (32, 32, 3))
    params = module.init(jax.random.key(1), x[:1])["params"]
    sigma, eta = 0.1, 0.01

    def apply_fn(p, xx):
        return module.apply({"params": p}, xx)

    def jit_loss(p, xb, k):
        eps = jax.random.normal(k, (num_samples * xb.size,)).reshape((num_samples,) + xb.shape)
        return lipschitz_loss(lambda pp, xx, _: apply_fn(pp, xx), p, xb, eps, sigma=sigma)

    optimizer = optax.sgd(eta)
    step = make_step(with_key(jit_loss), optimizer)

    def body(_, state, inputs):
        xb, k = inputs
        return step(state, xb, k)[0]

    keys = jax.random.split(jax.random.key(2), n // batch)
    unlearner = lipschitz(apply_fn, sigma=sigma, eta=eta, num_samples=num_samples, batch_size=batch,
                          accumulate_grads=False, train_mode=False)
    store = unlearner.init(params, x, key=jax.random.key(3))

    def library():
        return unlearner.update(params, jnp.arange(n), store, key=jax.random.key(4))[0]

    return body, None, init_train_state(params, optimizer), (_stack(x, batch), keys), (library, ())


def sgld_workload(n, batch, steps, key):
    """``steps`` SGLD steps on LeNet-5 (32x32x1), minibatches drawn before the loop; library: ``run_chain``."""
    module = LeNet(num_classes=10)
    data = _data(key, n, (32, 32, 1))
    params = module.init(jax.random.key(1), data[0][:1])["params"]
    energy = bayes.bnn_energy(lambda p, x: module.apply({"params": p}, x), prior_std=1.0)
    sampler = bayes.sgld(energy.energy)
    lr = 1e-6

    def body(d, state, inputs):
        k, idx = inputs
        return sampler.step(k, state, jax.tree.map(lambda a: a[idx], d), n, lr)

    k_idx, k_steps = jax.random.split(jax.random.key(2))
    idx = jax.random.randint(k_idx, (steps, batch), 0, n)
    state = sampler.init(params)

    def library():
        return bayes.run_chain(sampler, jax.random.key(3), state, data, lr=lr, num_steps=steps, batch_size=batch)[0]

    return body, data, state, (jax.random.split(k_steps, steps), idx), (library, ())


def _seconds(fn):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def _compiled(fn, *args):
    """``(compiled, seconds)``: ``jax.jit(fn)`` traced, lowered and compiled for ``args``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def measure(name, workload, repeats):
    """Warm seconds and compile seconds of every strategy on one workload.

    Everything is compiled and run once first; then ``repeats`` rounds time every strategy once each,
    in turn, so that all of them sample the same load of a shared machine; the best round counts.
    """
    body, aux, carry, xs, (library, library_args) = workload
    steps = jax.tree.leaves(xs)[0].shape[0]
    per_step = [jax.tree.map(lambda a, t=t: a[t], xs) for t in range(steps)]
    step, step_compile = _compiled(body, aux, carry, per_step[0])

    def host():
        c = carry
        for x in per_step:
            c = step(aux, c, x)
        return c

    runs = {"floor": lambda: sum(_seconds(lambda x=x: step(aux, carry, x)) for x in per_step), "host loop": host}
    compile_row = {"workload": name, "floor": step_compile, "host loop": step_compile}
    settings = {"scan": ("scan", 1), "unroll 8": ("scan", 8), "unroll all": ("scan", True), "policy": (None, 1)}
    for strategy, (policy, unroll) in settings.items():

        def run(a, c, x, policy=policy, unroll=unroll):
            return loops.scan(lambda cc, xx: (body(a, cc, xx), None), c, x, unroll=unroll, policy=policy)[0]

        compiled, compile_row[strategy] = _compiled(run, aux, carry, xs)
        runs[strategy] = lambda compiled=compiled: compiled(aux, carry, xs)
        print(f"  {name}: {strategy} compiled", file=sys.stderr, flush=True)
    first = _seconds(lambda: library(*library_args))
    runs["library"] = lambda: library(*library_args)
    for strategy in ("host loop", "scan", "unroll 8", "unroll all", "policy"):
        runs[strategy]()  # warm-up
    best = {strategy: float("inf") for strategy in runs}
    for _ in range(repeats):
        for strategy, fn in runs.items():
            seconds = fn() if strategy == "floor" else _seconds(fn)
            best[strategy] = min(best[strategy], seconds)
    compile_row["library"] = first - best["library"]
    row = {"workload": name, "steps": steps, "floor_s": best.pop("floor"), **best}
    return row, compile_row


def _print_table(title, rows, cols, fmt):
    print(title)
    widths = [max(len(c), *(len(fmt(r, c)) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(fmt(r, c).ljust(w) for c, w in zip(cols, widths)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--quick", action="store_true", help="1,000 SSD examples, 256 JiT examples, 20 SGLD steps")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed rounds over all strategies (the best counts; default 3)")
    parser.add_argument("--json", help="also write the tables to this JSON file (atomically)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be a positive integer")
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}"
    print(f"device: {device}")
    n_ssd, n_jit, sgld_steps = (1000, 256, 20) if args.quick else (5000, 512, 50)
    key = jax.random.key(0)
    cnn = SmallCNN(num_classes=10, channels=8, hidden=32)
    workloads = {
        "ssd cnn": lambda: ssd_workload(cnn, (32, 32, 3), n_ssd, 100, key),
        "jit cnn": lambda: jit_workload(n_jit, 64, 10, key),
        "sgld lenet": lambda: sgld_workload(2048, 64, sgld_steps, key),
        "ssd mlp": lambda: ssd_workload(MLP(), (64,), n_ssd, 100, key),
    }
    rows, compile_rows = [], []
    for name, build in workloads.items():
        row, compile_row = measure(name, build(), args.repeats)
        rows.append(row)
        compile_rows.append(compile_row)

    def ratio(r, c):
        if c in ("workload", "steps"):
            return str(r[c])
        return f"{r[c]:.3f}" if c == "floor_s" else f"{r[c] / r['floor_s']:.2f}x"

    _print_table("warm time: floor in seconds, the others as a ratio to it", rows,
                 ["workload", "steps", "floor_s", *STRATEGIES, "library"], ratio)
    print()
    _print_table("compile time, seconds", compile_rows, ["workload", "floor", *STRATEGIES, "library"],
                 lambda r, c: r[c] if c == "workload" else f"{r[c]:.2f}")
    if args.json:
        atomic_write_json(args.json, {"device": device, "warm": rows, "compile": compile_rows})
    return rows, compile_rows


if __name__ == "__main__":
    main()
