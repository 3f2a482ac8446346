"""The ``jaxunlearn`` console command.

    jaxunlearn forget                                  # digits, class 3, every method, 3 seeds
    jaxunlearn forget --scenario random:50 --methods ssd,finetune,scrub --seeds 0,1
    jaxunlearn forget --dataset cifar20 --model resnet18 --scenario subclass:rocket --data-dir ~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from jaxunlearn.experiments.registry import ALL_METHODS


def _forget(args: argparse.Namespace) -> int:
    from jaxunlearn.data import DatasetNotAvailableError
    from jaxunlearn.experiments import ForgettingConfig, format_table, run_forgetting, summarise, write_results
    from jaxunlearn.experiments.registry import resolve_methods

    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
        print(f"error: --seeds takes comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    try:
        methods = resolve_methods(args.methods)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    config = ForgettingConfig(
        dataset=args.dataset, scenario=args.scenario, methods=methods, seeds=seeds, model=args.model,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, data_dir=args.data_dir,
        download=args.download, warm_timing=not args.cold_timing,
    )
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    try:
        rows = run_forgetting(config, progress=not args.quiet, log=log)
    except (DatasetNotAvailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summaries = summarise(rows)
    title = f"{config.dataset} / {config.model_name} / {config.scenario}, {len(seeds)} seed(s)"
    print(f"\n{title}\n")
    print(format_table(summaries))
    out = os.path.join(args.out, f"{config.dataset}-{config.scenario.replace(':', '_')}")
    paths = write_results(out, {**dataclasses.asdict(config), "title": title}, rows, summaries)
    print("\nwrote " + ", ".join(paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxunlearn", description="Machine unlearning in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("forget", help="compare unlearning methods on one forget scenario",
                       description="Train an original and a retrained model, run the unlearning methods, "
                                   "print a comparison table and write JSON, CSV and a PNG.")
    f.add_argument("--dataset", default="digits", help="digits (embedded, default), mnist, fashion_mnist, "
                                                       "cifar10, cifar100, cifar20 (tfds, from --data-dir)")
    f.add_argument("--scenario", default="class:3",
                   help="class:C, subclass:C (cifar20), random:K or random:FRACTION, class_subset:C:K")
    f.add_argument("--methods", default="all", help=f"'all' or a comma-separated subset of {', '.join(ALL_METHODS)}")
    f.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (mean ± std over them)")
    f.add_argument("--model", default=None, help="mlp, lenet, small_cnn, resnet18, vgg11, vit "
                                                 "(default: mlp on digits, lenet on mnist, resnet18 on cifar)")
    f.add_argument("--epochs", type=int, default=30, help="training epochs of the original and retrained models")
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the training recipe")
    f.add_argument("--data-dir", default=None, help="tensorflow-datasets folder holding prepared data")
    f.add_argument("--download", action="store_true",
                   help="let tensorflow-datasets download missing data (needs internet; default: read --data-dir only)")
    f.add_argument("--out", default="results", help="results folder (default: results/)")
    f.add_argument("--cold-timing", action="store_true",
                   help="time each method's first call, XLA compilation included (default: a warm second call)")
    f.add_argument("--quiet", action="store_true", help="no progress output")
    f.set_defaults(run=_forget)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
