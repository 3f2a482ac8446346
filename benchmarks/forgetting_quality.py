"""Forgetting-quality epsilons: a per-example numpy port of the rules against jaxunlearn's vectorised version.

    python benchmarks/forgetting_quality.py            # F = 20, 100 (port and ours), 1000 (ours), N = 32
    python benchmarks/forgetting_quality.py --quick    # F = 20 (port and ours), 200 (ours)

The port (copied from ``tests/metrics/test_metrics_forgetting_quality.py``) loops over the forget examples
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
import statistics
import time

import jax
import numpy as np

from jaxunlearn import metrics

N_MODELS = 32
DELTA = 1e-5


# -- the per-example numpy port ---------------------------------------------------------------------------------


def port_threshold_eps(tpr, fnr, fpr, tnr, delta):
    """eps per threshold: inf on perfect separation, NaN when discarded."""
    with np.errstate(all="ignore"):
        terms = np.stack([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)])
        both_nan = np.isnan(terms).all(axis=0)
        logs = np.clip(np.where(both_nan, np.nan, np.nanmax(np.where(both_nan, 0.0, terms), axis=0)), 0, None)
    perfect = (fpr == 0) & (fnr == 0) & (tpr == 1) & (tnr == 1)
    one_zero = ((fpr == 0) | (fnr == 0)) & ~perfect
    return np.where(perfect, np.inf, np.where(one_zero, np.nan, logs))


def port_example_epsilon(unlearned, retrained, delta=DELTA):
    pos, neg = (retrained, unlearned) if np.median(retrained) > np.median(unlearned) else (unlearned, retrained)
    range_pos, range_neg = pos.max() - pos.min(), neg.max() - neg.min()
    if range_pos + range_neg > 0 and min(range_pos, range_neg) / max(range_pos, range_neg) < 0.01:
        return 50.0
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))
    single = port_threshold_eps(
        (pos[:, None] >= t).mean(0), (pos[:, None] < t).mean(0), (neg[:, None] >= t).mean(0),
        (neg[:, None] < t).mean(0), delta,
    )
    peak, other = (neg, pos) if range_pos >= range_neg else (pos, neg)
    w = min(range_pos, range_neg)
    right_lo, right_hi = peak.min() + w - 2, peak.max() + 2
    rights = np.linspace(right_lo, right_hi, int(np.ceil((right_hi - right_lo) * 100)))
    t_left = np.concatenate([np.linspace(tr - w - 2, tr - w + 2, 400) for tr in rights])
    t_right = np.repeat(rights, 400)

    def predicted(c):
        return (t_left <= c[:, None]) & (c[:, None] <= t_right)

    tpr = predicted(peak).mean(0)
    fpr = predicted(other).mean(0)
    double = port_threshold_eps(tpr, 1 - tpr, fpr, 1 - fpr, delta)
    eps = np.concatenate([single, double])
    eps = eps[~np.isnan(eps)]
    return float(np.clip(eps.max(), 0, 50))


def port_epsilons(unlearned, retrained):
    return np.array([port_example_epsilon(unlearned[:, i], retrained[:, i]) for i in range(unlearned.shape[1])])


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
            want = port_epsilons(unlearned, retrained)
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
