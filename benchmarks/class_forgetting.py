"""Forgetting comparison over scenarios: full class, sub-class (where the data has sub-classes) and random.

    python benchmarks/class_forgetting.py                 # digits, seeds 0,1,2, all methods
    python benchmarks/class_forgetting.py --quick         # one seed
    python benchmarks/class_forgetting.py --dataset cifar20 --data-dir ~/tensorflow_datasets --model resnet18

Prints one table per scenario (rows: methods; columns: accuracies on retain/forget train/test, the entropy
membership attack, JS and L1 distance to the retrained model, ZRF, warm wall time and the speed-up over
retraining) and writes results/<dataset>-<scenario>/ as the `jaxunlearn forget` command does.
Digits has no sub-classes; the sub-class scenario runs on cifar20 (a CIFAR-100 class inside the CIFAR-20 model).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from jaxunlearn.cli import parse_seeds
from jaxunlearn.experiments import ForgettingConfig, format_table, resolve_methods, run_forgetting, summarise, write_results

SCENARIOS = {
    "digits": ("class:3", "random:50"),
    "mnist": ("class:3", "random:600"),
    "fashion_mnist": ("class:0", "random:600"),
    "cifar10": ("class:0", "random:0.00165"),
    "cifar100": ("class:rocket", "random:0.00165"),
    "cifar20": ("class:vehicle2", "subclass:rocket", "random:0.00165"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=sorted(SCENARIOS))
    parser.add_argument("--model", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--methods", default="all")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="one seed (SSD and JiT need a converged model, so the "
                                                             "training epochs stay as given)")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    try:
        seeds = (0,) if args.quick else parse_seeds(args.seeds)
    except ValueError as error:
        parser.error(str(error))
    epochs = args.epochs
    for scenario in SCENARIOS[args.dataset]:
        config = ForgettingConfig(dataset=args.dataset, scenario=scenario, methods=resolve_methods(args.methods),
                                  seeds=seeds, model=args.model, epochs=epochs, data_dir=args.data_dir)
        rows = run_forgetting(config, progress=False, log=lambda m: print(m, file=sys.stderr))
        summaries = summarise(rows)
        title = f"{config.dataset} / {config.model_name} / {scenario}, {len(seeds)} seeds"
        print(f"\n{title}\n{format_table(summaries, scenario=scenario)}")
        out = os.path.join(args.out, f"{config.dataset}-{scenario.replace(':', '_')}")
        write_results(out, {**dataclasses.asdict(config), "title": title}, rows, summaries)


if __name__ == "__main__":
    main()
