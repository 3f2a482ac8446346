"""Scale benchmark: time and peak memory per 1,000 examples of ResNet-18's costly steps, at two dataset sizes.

    python benchmarks/scale.py                      # CPU: N = 1,000 and 2,000 (tens of minutes on 2 cores)
    python benchmarks/scale.py --quick --width 8    # N = 128 and 256, ResNet-18 at 1/8 width: a smoke run
    python benchmarks/scale.py --sizes 10000,50000  # on an accelerator
    python benchmarks/scale.py --ops ssd,epoch --json results/scale.json

A ResNet-18 (``jaxunlearn.models.create("resnet18", num_classes=100, input_shape=(32, 32, 3))``) on
``N`` examples of :func:`jaxunlearn.data.synthetic_cifar100`, through the library's public functions:

  ssd     the full-data SSD importances: ``methods.ssd(loss).init(params, (x, y))``, i.e.
          ``curvature.fisher_diagonal(estimator="batch_squared", batch_size=64)`` over all N examples
  jit     one JiT step: ``methods.lipschitz(...).update`` on a request of one batch (128 examples, 25
          perturbations each, train mode, ``sample_batch`` perturbations per forward), data of N examples
  hvp     one Hessian-vector product (the step of a LiSSA recursion): ``curvature.hvp`` on a minibatch of 128
          drawn from the N examples
  epoch   one training epoch: ``train.fit(models.training_loss(resnet), optax.sgd(0.1, momentum=0.9))``,
          batch 128, shuffled

Each (operation, N) runs in a fresh subprocess. It places the data and the model first, then calls the
operation twice on different inputs: the first call's time minus the second's is the compile time; the
second (warm) call gives the time and the peak memory. Peak memory is reported *beyond* what was resident
before the warm call (the data, the model, the compiled program): on CPU the peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, reset to the current RSS through ``/proc/self/clear_refs``
just before the warm call, and glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed so that freed buffers leave the
RSS); on an accelerator ``jax.devices()[0].memory_stats()["peak_bytes_in_use"]`` minus the bytes in use
before the first call (that peak cannot be reset, so it covers both calls). Where the reset is refused, the
CPU peak covers the compilation too (flagged ``*``). Chunked passes keep the peak flat in N; the data
itself (``data MiB``) is on top.

Columns: ``examples`` per call; ``compile s``; ``warm s``; ``s/1k``: warm seconds per 1,000 examples;
``peak MiB`` beyond the resident data; ``50k s``: ``s/1k`` x 50, the cost of a pass over 50,000 examples
(``--extrapolate``): the SSD importances of full CIFAR, one epoch, JiT over 50,000 forget examples (a
CIFAR-100 class is 500: 1 % of it), HVPs over 50,000 examples (a LiSSA recursion costs depth x batch).
Timings are wall-clock on whatever else the machine runs: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

OPS = ("ssd", "jit", "hvp", "epoch")
BATCH = {"ssd": 64, "jit": 128, "hvp": 128, "epoch": 128}
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2.0 ** 20


# ---- inside a worker --------------------------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _reset_cpu_peak() -> bool:
    """Reset the peak RSS (``VmHWM``, which ``ru_maxrss`` reads) to the current RSS; False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _settle(step: float = 0.1, limit: float = 3.0) -> None:
    """Wait until two RSS readings ``step`` seconds apart differ by under 1 MiB (at most ``limit`` seconds)."""
    last, waited = _rss(), 0.0
    while waited < limit:
        time.sleep(step)
        waited += step
        now = _rss()
        if abs(now - last) < MIB:
            return
        last = now


class Memory:
    """Peak memory of the next call beyond what is resident now, on the CPU (RSS) or an accelerator."""

    def __init__(self, device):
        stats = device.memory_stats() if device.platform != "cpu" else None
        self.device, self.accelerator = device, stats is not None and "peak_bytes_in_use" in stats
        self.base = stats["bytes_in_use"] if self.accelerator else None
        self.exact = True

    def before_warm_call(self):
        """Take the baseline: on the CPU once the RSS has settled (XLA frees the last call's buffers after
        its outputs are ready), then reset the peak to it."""
        if not self.accelerator:
            _settle()
            self.exact = _reset_cpu_peak()
            self.base = _rss()

    def peak_delta(self) -> int:
        if self.accelerator:
            return self.device.memory_stats()["peak_bytes_in_use"] - self.base
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base


def _worker(op: str, n: int, sample_batch: int, width: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from jaxunlearn import curvature, data, methods, models, train
    from jaxunlearn.methods.lipschitz import train_mode_apply

    device = jax.devices()[0]
    train_set, _ = data.synthetic_cifar100(num_train=n, num_test=1, seed=0)
    x, y = jax.device_put(train_set.x), jax.device_put(train_set.y)
    module, variables = models.create("resnet18", num_classes=100, input_shape=(32, 32, 3),
                                      stage_widths=tuple(width * m for m in (1, 2, 4, 8)),
                                      key=jax.random.key(0, impl="rbg"))
    params = variables["params"]
    batch = min(BATCH[op], n)
    jax.block_until_ready((x, y, variables))
    del train_set
    memory = Memory(device)
    loss = models.classifier_loss(module, variables)
    examples = n if op in ("ssd", "epoch") else batch

    def record(cold: float, warm: float) -> dict:
        return {"op": op, "n": n, "examples": examples, "batch": batch, "cold_s": cold, "warm_s": warm,
                "compile_s": max(cold - warm, 0.0), "per_1000_s": warm / examples * 1000.0,
                "peak_bytes": memory.peak_delta(), "peak_exact": memory.exact, "data_bytes": x.nbytes + y.nbytes,
                "parameters": sum(leaf.size for leaf in jax.tree.leaves(params)),
                "device": f"{device.platform}: {device.device_kind}"}

    if op == "ssd":
        unlearner = methods.ssd(loss, alpha=10.0, lambda_=1.0, batch_size=batch)

        def call(i):
            return unlearner.init(params, (x, y), key=jax.random.key(i)).full_importance

    elif op == "jit":
        unlearner = methods.lipschitz(train_mode_apply(module, variables), sigma=0.5, eta=3e-4,
                                      batch_size=batch, sample_batch=sample_batch)
        state = unlearner.init(params, (x, y), key=jax.random.key(0))

        def call(i):
            request = jnp.arange(i * batch, (i + 1) * batch) % n
            return unlearner.update(params, request, state, key=jax.random.key(i))[0]

    elif op == "hvp":
        step = jax.jit(lambda p, v, d, idx: curvature.hvp(loss, p, v, jax.tree.map(lambda a: a[idx], d)))
        v = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape, p.dtype), params)

        def call(i):
            idx = jax.random.choice(jax.random.key(i), n, (batch,), replace=False)
            return step(params, v, (x, y), idx)

    else:  # one epoch: fit runs epochs 0 (compile + run) and 1 (warm); its eval_fn marks the epoch ends
        optimizer = optax.sgd(0.1, momentum=0.9)
        state = train.init_train_state(params, optimizer, {k: v for k, v in variables.items() if k != "params"})
        stamps = []  # end of epoch 0, start of epoch 1 (after the baseline is taken), end of epoch 1

        def mark(_params, _model_state):
            stamps.append(time.perf_counter())
            if len(stamps) == 1:
                memory.before_warm_call()
                stamps.append(time.perf_counter())
            return {}

        start = time.perf_counter()
        out = train.fit(models.training_loss(module), optimizer, state, (x, y), batch_size=batch, num_epochs=2,
                        key=jax.random.key(0), progress=False, eval_fn=mark)
        jax.block_until_ready(out)
        return record(stamps[0] - start, stamps[2] - stamps[1])

    start = time.perf_counter()
    jax.block_until_ready(call(0))  # compile + run; the result is dropped before the warm call
    cold = time.perf_counter() - start
    memory.before_warm_call()
    start = time.perf_counter()
    jax.block_until_ready(call(1))
    warm = time.perf_counter() - start
    return record(cold, warm)



# ---- the driver ----------------------------------------------------------------------------------------

def measure(op: str, n: int, sample_batch: int, width: int) -> dict:
    """Run one measurement in a fresh subprocess; raise ``RuntimeError`` with its output when it fails."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", op, str(n), "--sample-batch", str(sample_batch),
           "--width", str(width)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scale benchmark {op} at N={n} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def table(rows: list[dict], extrapolate: int) -> str:
    head = ("| op | N | examples | compile s | warm s | s/1k | peak MiB | data MiB | "
            f"{extrapolate // 1000}k s |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        flag = "" if r["peak_exact"] else "*"
        out.append(f"| {r['op']} | {r['n']} | {r['examples']} | {r['compile_s']:.1f} | {r['warm_s']:.2f} | "
                   f"{r['per_1000_s']:.2f} | {r['peak_bytes'] / MIB:.0f}{flag} | {r['data_bytes'] / MIB:.0f} | "
                   f"{r['per_1000_s'] * extrapolate / 1000:.0f} |")
    return "\n".join(out)


def flatness(rows: list[dict]) -> list[str]:
    """One line per op: the peak at the largest N over the peak at the smallest."""
    lines = []
    for op in dict.fromkeys(r["op"] for r in rows):
        mine = sorted((r for r in rows if r["op"] == op), key=lambda r: r["n"])
        if len(mine) > 1:
            lo, hi = mine[0], mine[-1]
            ratio = hi["peak_bytes"] / max(lo["peak_bytes"], 1)
            lines.append(f"{op}: peak at N={hi['n']} / N={lo['n']} = {ratio:.2f}x "
                         f"(data grew {hi['data_bytes'] / lo['data_bytes']:.1f}x)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", default="1000,2000", help="dataset sizes N, comma-separated (default 1000,2000)")
    parser.add_argument("--quick", action="store_true", help="N = 128,256 (with --width 8: a smoke run)")
    parser.add_argument("--ops", default=",".join(OPS), help=f"operations, comma-separated, of {', '.join(OPS)}")
    parser.add_argument("--sample-batch", type=int, default=5,
                        help="JiT: perturbed forwards evaluated at once (memory bound; default 5)")
    parser.add_argument("--width", type=int, default=64,
                        help="ResNet-18 stage widths (W, 2W, 4W, 8W); 64 is ResNet-18, 8 a cheap smoke model")
    parser.add_argument("--extrapolate", type=int, default=50000, help="examples to extrapolate to (default 50000)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("OP", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(_worker(args.worker[0], int(args.worker[1]), args.sample_batch, args.width)), flush=True)
        return 0
    try:
        sizes = [128, 256] if args.quick else [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be positive integers separated by commas, got {args.sizes!r}.")
    ops = [op.strip() for op in args.ops.split(",")]
    unknown = sorted(set(ops) - set(OPS))
    if unknown or not sizes or min(sizes) < 1 or args.width < 1 or args.sample_batch < 1:
        parser.error(f"--ops must name some of {OPS} (got {unknown}); --sizes, --width and --sample-batch "
                     "must be positive integers.")
    rows = []
    for op in ops:
        for n in sizes:
            row = measure(op, n, args.sample_batch, args.width)
            print(f"[scale] {op} N={n}: warm {row['warm_s']:.2f} s, peak {row['peak_bytes'] / MIB:.0f} MiB",
                  file=sys.stderr, flush=True)
            rows.append(row)
    print(f"ResNet-18, widths {args.width}-{8 * args.width} ({rows[0]['parameters'] / 1e6:.1f} M parameters), on "
          f"synthetic CIFAR-100, device {rows[0]['device']}")
    print(table(rows, args.extrapolate))
    print("\n".join(flatness(rows)))
    if any(not r["peak_exact"] for r in rows):
        print("* the peak RSS could not be reset before the warm call: it includes the compilation.")
    if args.json:
        from jaxunlearn.io import atomic_write_json

        atomic_write_json(args.json, {"rows": rows, "extrapolate": args.extrapolate})
    return 0


if __name__ == "__main__":
    sys.exit(main())
