"""The ``jaxunlearn`` console command.

    jaxunlearn forget                                  # digits, class 3, every method, 3 seeds
    jaxunlearn forget --scenario random:50 --methods ssd,finetune,scrub --seeds 0,1
    jaxunlearn forget --dataset cifar20 --model resnet18 --scenario subclass:rocket --data-dir ~/tensorflow_datasets
    jaxunlearn forget --models 32 --seeds 0           # + the challenge's forget and final scores from 32 models a side

Every argument is checked before any data is loaded or any model trained
(:func:`validate_forget_args`): a wrong value ends the command within seconds
with exit code 2 and one line ``error: ...`` on stderr. The results of a run
replace ``<out>/<dataset>-<scenario>/`` as a whole folder
(:func:`jaxunlearn.experiments.write_results`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from jaxunlearn.experiments.registry import ALL_METHODS


class UsageError(ValueError):
    """A command-line value that cannot run; the command prints ``error: <message>`` and exits with 2."""


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: non-empty, distinct, non-negative integers."""
    from jaxunlearn._validation import check_positive_int

    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise UsageError(f"--seeds takes comma-separated integers such as 0,1,2; got {text!r} (no seed).")
    seeds = []
    for part in parts:
        try:
            seeds.append(check_positive_int(int(part), "a seed", allow_zero=True))
        except ValueError:
            raise UsageError(f"--seeds takes comma-separated non-negative integers such as 0,1,2; got {text!r} "
                             f"(entry {part!r}).") from None
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds lists a seed twice ({text!r}); the spread over seeds would be understated.")
    return tuple(seeds)


def _stand_ins(dataset: str) -> list[tuple[Any, Any]]:
    """``(train, test)`` pairs with the class structure of ``dataset``, for checking a scenario without its images.

    ``digits`` is embedded and loads at once (one exact pair). For a tfds
    dataset (sizes in :mod:`jaxunlearn.data.tfds_loaders`) two pairs of
    zero inputs: the first gives every class as many examples as the
    dataset's largest class (:data:`~jaxunlearn.data.tfds_loaders.MAX_CLASS_COUNT`),
    so class scenarios are checked against an upper bound; the second has the
    exact split sizes (:data:`~jaxunlearn.data.tfds_loaders.SPLIT_SIZES`), for
    random scenarios. CIFAR-20 cycles through the 100 fine classes with the
    superclasses as ``y``.
    """
    import numpy as np

    from jaxunlearn.data import Dataset, coarse_labels, load_digits
    from jaxunlearn.data.tfds_loaders import MAX_CLASS_COUNT, SPLIT_SIZES, TFDS_DATASETS

    if dataset == "digits":
        return [load_digits()]
    source = "cifar100" if dataset == "cifar20" else dataset
    k = TFDS_DATASETS[source][0]

    def make(n):
        y = np.arange(n) % k
        x = np.zeros((n, 1), np.float32)
        if dataset == "cifar20":
            return Dataset(x=x, y=coarse_labels(y), num_classes=20, fine_y=y, num_fine_classes=100)
        return Dataset(x=x, y=y, num_classes=k)

    n_train, n_test = SPLIT_SIZES[source]
    return [(make(k * MAX_CLASS_COUNT[source]), make(n_test)), (make(n_train), make(n_test))]


def _check_scenario(scenario: str, dataset: str, seeds: tuple[int, ...]) -> None:
    """Raise :class:`UsageError` when ``scenario`` cannot select a forget set of ``dataset`` (see :func:`_stand_ins`)."""
    from jaxunlearn.experiments.scenario import parse_scenario

    pairs = _stand_ins(dataset)
    try:
        for seed in seeds:
            split = parse_scenario(scenario, *pairs[0], seed=seed)
            if split.scenario == "random":
                for train, test in pairs[1:]:
                    parse_scenario(scenario, train, test, seed=seed)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--scenario {scenario!r} does not fit {dataset}: {err}") from None


def validate_forget_args(args: argparse.Namespace) -> dict[str, Any]:
    """Check every argument of ``jaxunlearn forget`` cheaply, before any data is loaded or model trained.

    Args:
      args: the parsed arguments of the ``forget`` sub-command.

    Returns:
      The keyword arguments of ``jaxunlearn.experiments.ForgettingConfig`` (dataset name normalised,
      methods resolved, seeds parsed), ``"out"``: the result folder of this run, and ``"models"``: the
      number of models per side of a many-model run (``--models``), or ``None``.

    Raises:
      UsageError: the first argument that cannot run, with what is accepted.
    """
    from jaxunlearn._validation import check_number, check_positive_int
    from jaxunlearn.data import DATASETS
    from jaxunlearn.experiments.classification import DEFAULT_MODEL
    from jaxunlearn.experiments.many_models import check_model, check_num_models
    from jaxunlearn.experiments.registry import resolve_methods
    from jaxunlearn.experiments.report import EPSILON_FILE, RESULT_FILES
    from jaxunlearn.io import check_output_folder, check_replaceable
    from jaxunlearn.models import MODELS

    try:
        epochs = check_positive_int(args.epochs, "--epochs")
        batch_size = check_positive_int(args.batch_size, "--batch-size")
        lr = check_number(args.lr, "--lr", low=0.0, low_inclusive=False)
        models = getattr(args, "models", None)  # absent from a Namespace built without --models
        num_models = None if models is None else check_num_models(models, "--models")
    except ValueError as err:
        raise UsageError(str(err)) from None
    seeds = parse_seeds(args.seeds)
    if not args.methods.strip(" ,"):
        raise UsageError(f"--methods is empty; pass 'all' or a comma-separated subset of {', '.join(ALL_METHODS)}.")
    try:
        methods = resolve_methods(args.methods)
    except ValueError as err:
        raise UsageError(str(err)) from None
    dataset = args.dataset.strip().lower().replace("-", "_")
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}.")
    if args.model is not None and args.model not in MODELS:
        raise UsageError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}.")
    if num_models is not None:
        try:
            check_model(args.model or DEFAULT_MODEL.get(dataset, "mlp"))
        except ValueError as err:
            raise UsageError(f"--models: {err}") from None
    if args.data_dir is not None and os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        raise UsageError(f"--data-dir {args.data_dir} is not a folder.")
    _check_scenario(args.scenario, dataset, seeds)
    try:
        out = check_output_folder(args.out)
    except ValueError as err:
        raise UsageError(f"--out: {err}") from None
    folder = os.path.join(out, f"{dataset}-{args.scenario.strip().replace(':', '_')}")
    try:
        check_replaceable(folder, RESULT_FILES + ((EPSILON_FILE,) if num_models else ()))
    except OSError as err:
        raise UsageError(f"--out: {err}") from None
    return {"dataset": dataset, "scenario": args.scenario.strip(), "methods": methods, "seeds": seeds,
            "model": args.model, "epochs": epochs, "batch_size": batch_size, "learning_rate": lr,
            "data_dir": args.data_dir, "download": args.download, "warm_timing": not args.cold_timing, "out": folder,
            "models": num_models}


def _forget(args: argparse.Namespace) -> int:
    try:
        checked = validate_forget_args(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from jaxunlearn.data import DatasetNotAvailableError
    from jaxunlearn.experiments import (
        ForgettingConfig,
        format_table,
        run_forgetting,
        summarise,
        write_results,
    )
    from jaxunlearn.io import new_run_id

    out, num_models = checked.pop("out"), checked.pop("models")
    config = ForgettingConfig(**checked)
    run_id = new_run_id()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    try:
        rows = run_forgetting(config, progress=not args.quiet, log=log)
        epsilons = None if num_models is None else _many_models(config, num_models, rows, not args.quiet, log)
    except (DatasetNotAvailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summaries = summarise(rows)
    title = f"{config.dataset} / {config.model_name} / {config.scenario}, {len(config.seeds)} seed(s)"
    if num_models is not None:
        from jaxunlearn.experiments.many_models import notes

        summaries = [{**s, "note": notes(s["method"])} for s in summaries]
        title += f", {num_models} models a side for the forget and final scores"
    print(f"\n{title}\n")
    print(format_table(summaries))
    try:
        paths = write_results(out, {**dataclasses.asdict(config), "models": num_models, "title": title}, rows,
                              summaries, run_id=run_id, epsilons=epsilons)
    except OSError as err:
        print(f"error: cannot write the results to {out}: {err}", file=sys.stderr)
        return 1
    print("\nwrote " + ", ".join(paths))
    return 0


def _many_models(config: Any, num_models: int, rows: list[dict], progress: bool, log: Any) -> dict:
    """Add each seed's many-model scores to ``rows`` (matched by seed and method); returns the per-example
    epsilons ``{seed: {method: [F]}}`` (:func:`jaxunlearn.experiments.many_models.run_many_models`, the model
    axis sharded over every device)."""
    from jaxunlearn.experiments.many_models import run_many_models
    from jaxunlearn.sharding import model_mesh

    epsilons = {}
    for seed in config.seeds:
        result = run_many_models(config, seed, num_models, mesh=model_mesh(), progress=progress, log=log)
        by_method = {r["method"]: r for r in result.rows}
        for row in rows:
            if row["seed"] == seed:
                row.update({k: v for k, v in by_method[row["method"]].items() if k not in ("seed", "method")})
        epsilons[seed] = result.epsilons
    return epsilons


def main(argv: list[str] | None = None) -> int:
    """Run the ``jaxunlearn`` command.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).

    Returns:
      The exit code: 0 on success, 2 for an argument that cannot run (with a line ``error: ...`` on stderr),
      1 when the results cannot be written.
    """
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
    f.add_argument("--out", default="results",
                   help="results folder (default: results/); each run replaces <out>/<dataset>-<scenario>/ whole")
    f.add_argument("--cold-timing", action="store_true",
                   help="time each method's first call, XLA compilation included (default: a warm second call)")
    f.add_argument("--models", type=int, nargs="?", const=32, default=None, metavar="N",
                   help="also train N (>= 2; 32 when given without a value) originals and N retrained models per "
                        "seed, unlearn all N with each method vmapped, and add the NeurIPS 2023 challenge's forget "
                        "and final scores (retrain row: a second set of N retrained models, the ceiling), a "
                        "per-example epsilon histogram and the epsilons in results.json (default: off)")
    f.add_argument("--quiet", action="store_true", help="no progress output")
    f.set_defaults(run=_forget)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse's own errors (exit 2) and --help (exit 0)
        return stop.code if isinstance(stop.code, int) else 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
