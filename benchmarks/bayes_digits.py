"""Bayesian forgetting of a growing number of one class's samples: a Bayesian network on digits.

The BIF paper's Fashion-MNIST figure (Fu et al. 2021, arXiv 2101.06417) on scikit-learn's 8x8 digits, so it runs
on a CPU: remove ``k`` samples of class 0 (a fixed random order, in chunks of ``rm_bs``) from a variational network
(VI forgetting) and from SGLD / SGHMC chains (MCMC forgetting); compare the *processed* model with the *target*
(retrained without those ``k`` samples) and the *origin* (``k = 0``). The experiment is the paper setting's
(:mod:`jaxunlearn.experiments.paper_bayesian`, ``jaxunlearn paper bif-vi-fashion_mnist`` etc.): this script runs
its :func:`~jaxunlearn.experiments.paper_bayesian.run_seed` with the settings' hyperparameters on other data.

Reported per method and ``k``: error on the forgotten samples (S_f), the remaining training samples (S_r) and the
test set; the confidence-threshold membership attack of the ICLR'22 paper (% of S_f judged non-member); the L1
prediction difference to the target on the test set; and the wall time of forgetting against retraining (both
after compilation). Each ``k`` is its own forgetting run from the origin, as the original's one run per
``kill_num``; the models are evaluated as stored (BIF takes no sampler step before evaluating; a variational
network is evaluated with one stochastic pass).

The originals' settings (Fashion-MNIST, 60000 points) are kept where they scale (``lr / N``, decay schedules,
prior std, ``scaling0``, ``iter_T``, ``samp_T``, ``bbp_T``, batch 128); ``rm_bs`` is 16 instead of 64 since
digits has ~130 training samples per class, and the LeNet pads its convolutions (8 -> 4 -> 2).

    python benchmarks/bayes_digits.py --quick      # MLP, 2000-step chains, samp_T 2, bbp_T 2, k in 48/96/128
    python benchmarks/bayes_digits.py              # LeNet, the originals' step counts

Writes ``digits_errors.png`` (errors against the number removed, one panel per method) and
``bayes_digits.json`` into ``--out`` (atomically).
"""

from __future__ import annotations

import argparse
import os

from jaxunlearn.data import load_dataset, load_digits
from jaxunlearn.experiments import paper_bayesian
from jaxunlearn.io import atomic_write_json, save_figure

#: method -> the paper setting whose hyperparameters it runs with.
SETTINGS = {s.name.split("-")[1]: s for s in paper_bayesian.SETTINGS if s.name.startswith("bif-")}
QUICK = {"steps": 2000, "decay_every": 800, "samp_T": 2, "bbp_T": 2}
DIGITS = {"rm_bs": 16, "padding": "SAME"}


def _plot(results, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * len(results), 3.8))
    for ax, (method, result) in zip(fig.subplots(1, len(results), squeeze=False)[0], results.items()):
        paper_bayesian.plot_errors(ax, paper_bayesian.summarize([result]), method.upper())
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/")
    parser.add_argument("--quick", action="store_true", help="MLP, 2000-step chains, samp_T 2, bbp_T 2")
    parser.add_argument("--methods", nargs="+", default=["vi", "sgld", "sghmc"], choices=["vi", "sgld", "sghmc"])
    parser.add_argument("--model", choices=["lenet", "mlp"], default=None, help="default lenet (quick: mlp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=["digits", "fashion_mnist"], default="digits",
                        help="fashion_mnist reads prepared tensorflow-datasets data from --data-dir (LeNet at 32x32)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets folder for --dataset fashion_mnist")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    model_name = args.model or ("mlp" if args.quick else "lenet")
    if args.dataset == "digits":
        train, test = load_digits()
        sizes = (48, 96, 128) if args.quick else (16, 32, 64, 96, 128)
        overrides = DIGITS
    else:  # the BIF experiment: 1k..6k T-shirts (class 0; 6,000 is the whole class)
        train, test = load_dataset("fashion_mnist", data_dir=args.data_dir, preset="lenet")
        sizes = (1000, 3000, 6000) if args.quick else (1000, 2000, 3000, 4000, 5000, 6000)
        overrides = {}
    results = {}
    for method in args.methods:
        params = {**SETTINGS[method].params, **overrides, "model": model_name, "sizes": sizes}
        if args.quick:
            params.update({k: v for k, v in QUICK.items() if k in params})
        results[method] = result = paper_bayesian.run_seed(method, params, train, test, args.seed)
        print(f"\n== {method.upper()} ({model_name}, seed {args.seed}; errors in %, MIA = % of S_f judged non-member)")
        print(f"{'k':>4} {'model':<10} {'err S_f':>8} {'err S_r':>8} {'err test':>9} {'MIA':>6} {'L1 test':>8}")
        for r in result["rows"]:
            for name in paper_bayesian.MODELS:
                e = r[name]
                print(f"{r['k']:>4} {name:<10} {e['err_forget']:>8.1f} {e['err_remain']:>8.1f} {e['err_test']:>9.1f} "
                      f"{e['mia']:>6.1f} {e['l1_test']:>8.3f}")
            print(f"{'':>4} time (s): forget {r['processed']['seconds']:.2f}, retrain {r['target']['seconds']:.2f}")
    _plot(results, os.path.join(args.out, "digits_errors.png"))
    atomic_write_json(os.path.join(args.out, "bayes_digits.json"), results)


if __name__ == "__main__":
    main()
