"""Forgetting-quality epsilons: a per-example numpy port of the rules against jaxunlearn's vectorised version.

    python benchmarks/forgetting_quality.py            # F = 20, 100 (port and ours), 1000 (ours), N = 32
    python benchmarks/forgetting_quality.py --quick    # F = 20 (port and ours), 200 (ours)

The port (``tests/metrics/forgetting_quality_reference.py``, the tests' reference) loops over the forget examples
in Python and materialises, per example, both threshold grids (about 160,000 threshold pairs of the
double-threshold family against the ``N`` models of each side), as the rules are stated in
:mod:`jaxunlearn.metrics.forgetting_quality`. Ours is :func:`jaxunlearn.metrics.per_example_epsilon`
(float64, chunks of 32 examples), timed after compilation. Data: per example, retrained confidences
``N(mu_i, s_i)`` and unlearned ones shifted by 0 to 2 with their own spread, as for a method that forgets
some examples well and others not.

Columns: seconds per example of each, the speed-up (port / ours) measured in this run, and the largest
absolute difference of the epsilons. Rows without the port extrapolate its time per example from the
largest F it ran. Then the *ceiling*: the forget score of two independent sets of N(0, 1) draws (same
distribution on both sides), which is well below 1 at N = 32 (about 0.2).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

from jaxunlearn import metrics

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "metrics"))
from forgetting_quality_reference import ref_epsilons  # noqa: E402 - the tests' independent numpy port

N_MODELS = 32
DELTA = 1e-5


# -- the benchmark ----------------------------------------------------------------------------------------------


def confidences(num_examples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centre = rng.normal(2.0, 2.0, num_examples)
    retrained = rng.normal(centre, rng.uniform(0.5, 2.0, num_examples), (N_MODELS, num_examples))
    shift = rng.uniform(0.0, 2.0, num_examples)
    unlearned = rng.normal(centre + shift, rng.uniform(0.5, 2.0, num_examples), (N_MODELS, num_examples))
    return unlearned, retrained


def time_ours(unlearned, retrained, repeats: int) -> tuple[float, np.ndarray]:
    eps = metrics.per_example_epsilon(unlearned, retrained)  # compile
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        eps = jax.block_until_ready(metrics.per_example_epsilon(unlearned, retrained))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), eps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="F = 20 with the port, 200 ours only")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of ours per row (median)")
    args = parser.parse_args(argv)
    sizes = [(20, True), (200, False)] if args.quick else [(20, True), (100, True), (1000, False)]

    header = f"{'N':>3} {'F':>5} {'port s/example':>15} {'ours s/example':>15} {'speed-up':>9} {'max |d eps|':>12}"
    print(header)
    print("-" * len(header))
    port_per_example = None
    for num_examples, with_port in sizes:
        unlearned, retrained = confidences(num_examples)
        ours, eps = time_ours(unlearned, retrained, args.repeats)
        ours /= num_examples
        if with_port:
            start = time.perf_counter()
            want = ref_epsilons(unlearned, retrained)
            port_per_example = (time.perf_counter() - start) / num_examples
            diff, mark = f"{np.abs(eps - want).max():12.1e}", ""
        else:
            diff, mark = f"{'-':>12}", " (port extrapolated)"
        print(f"{N_MODELS:>3} {num_examples:>5} {port_per_example:>15.2e} {ours:>15.2e} "
              f"{port_per_example / ours:>8.0f}x {diff}{mark}")

    num_examples = sizes[-1][0]
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(N_MODELS, num_examples)), rng.normal(size=(N_MODELS, num_examples))
    eps = metrics.per_example_epsilon(a, b)
    print(f"\nceiling: two independent N(0, 1) samples, N = {N_MODELS}, F = {num_examples}: forget score "
          f"{metrics.forget_score(eps, N_MODELS):.3f} (mean eps {eps.mean():.2f}); 1 needs many more models")


if __name__ == "__main__":
    main()
