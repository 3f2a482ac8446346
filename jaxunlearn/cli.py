"""The ``jaxunlearn`` console command.

    jaxunlearn forget                                  # digits, class 3, every method, 3 seeds
    jaxunlearn forget --scenario random:50 --methods ssd,finetune,scrub --seeds 0,1
    jaxunlearn forget --methods ssd,jit --set ssd.alpha=5 --set jit.sigma=0.3 --set finetune.optimizer.lr=0.01
    jaxunlearn forget --config my.toml --print-config  # the resolved configuration as TOML, no training
    jaxunlearn forget --dataset cifar20 --model resnet18 --scenario subclass:rocket --data-dir ~/tensorflow_datasets
    jaxunlearn forget --models 32 --seeds 0           # + the challenge's forget and final scores from 32 models a side
    jaxunlearn sweep --grid ssd.alpha=1,3,10,30 --grid lfssd.alpha=0.3,1,3 --seeds 0   # trade-off curves

Settings come from the defaults, then a TOML file (``--config``), then the
flags and ``--set METHOD.KEY=VALUE`` (:mod:`jaxunlearn.experiments.config`).
Trained originals and references, and each method's result row, are kept in
a cache (:mod:`jaxunlearn.experiments.cache`, ``--cache-dir``; ``--no-cache``
computes everything again, ``--rerun-methods`` reruns the methods on the
cached models), so a second identical run trains nothing and changing one
setting reruns one method.

Every argument is checked before any data is loaded or any model trained
(:func:`validate_forget_args`): a wrong value ends the command within seconds
with exit code 2 and one line ``error: ...`` on stderr. The results of a run
replace ``<out>/<dataset>-<scenario>/`` (a sweep: ``<out>/<dataset>-<scenario>-sweep/``)
as a whole folder (:func:`jaxunlearn.experiments.write_results`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from jaxunlearn.experiments.registry import ALL_METHODS, COMPARED


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
    superclasses as ``y``. A synthetic dataset (``synthetic_<name>``) gets one
    exact pair of the comparison's sizes (its labels are balanced).
    """
    import numpy as np

    from jaxunlearn.data import Dataset, coarse_labels, load_digits
    from jaxunlearn.experiments.classification import SYNTHETIC_SIZES
    from jaxunlearn.data.tfds_loaders import MAX_CLASS_COUNT, SPLIT_SIZES, TFDS_DATASETS

    if dataset == "digits":
        return [load_digits()]
    synthetic = dataset.startswith("synthetic_")
    name = dataset.removeprefix("synthetic_")
    source = "cifar100" if name == "cifar20" else name
    k = TFDS_DATASETS[source][0]

    def make(n):
        y = np.arange(n) % k
        x = np.zeros((n, 1), np.float32)
        if name == "cifar20":
            return Dataset(x=x, y=coarse_labels(y), num_classes=20, fine_y=y, num_fine_classes=100)
        return Dataset(x=x, y=y, num_classes=k)

    if synthetic:  # balanced labels, a permutation of arange(n) % K: the class counts are exact
        return [tuple(make(n) for n in SYNTHETIC_SIZES)]
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


def _layers(args: argparse.Namespace) -> tuple[dict, dict]:
    """The run settings and method overrides of ``args``: :data:`~jaxunlearn.experiments.config.RUN_DEFAULTS`
    < the ``--config`` file < the flags given, and the file's method tables < ``--set``."""
    from jaxunlearn.experiments.config import (
        RUN_DEFAULTS,
        combine,
        overrides_from_sets,
        read_toml,
        resolve_settings,
        split_file,
    )

    file_run, file_methods = {}, {}
    path = getattr(args, "config", None)
    if path is not None:
        file_run, file_methods = split_file(read_toml(path), f"--config {path}")
        resolve_settings(file_methods, "digits", f"--config {path}")  # keys and types, named after the file
    flags = {key: getattr(args, key, None) for key in RUN_DEFAULTS}
    flags["cache"] = False if getattr(args, "no_cache", False) else None
    run = {**RUN_DEFAULTS, **file_run, **{k: v for k, v in flags.items() if v is not None}}
    return run, combine(file_methods, overrides_from_sets(getattr(args, "set", None) or []))


def _check_settings(methods: tuple[str, ...], settings: dict[str, dict], what: str = "") -> None:
    """Configure each method of ``methods`` with its settings on a stand-in problem, so that a value the method
    rejects (``ssd.alpha=-1``, ``influence.solver=newton``) is an error before any training."""
    from jaxunlearn.experiments.registry import method_kwargs
    from jaxunlearn.methods.registry import ClassifierProblem, build

    def never_called(*args, **kwargs):
        raise AssertionError("configuring a method must not call the model")

    stand_in = ClassifierProblem(never_called, never_called, never_called, 10, never_called)
    for name in methods:
        if name in COMPARED:
            try:
                build(name, stand_in, **method_kwargs(settings[name]))
            except (ValueError, TypeError) as err:
                raise UsageError(f"{name}{what}: {err}") from None


def validate_forget_args(args: argparse.Namespace) -> dict[str, Any]:
    """Check every argument of ``jaxunlearn forget`` (or ``sweep``) cheaply, before any data is loaded or model
    trained.

    Args:
      args: the parsed arguments of the sub-command (attributes it lacks count as not given).

    Returns:
      The keyword arguments of ``jaxunlearn.experiments.ForgettingConfig`` (dataset name normalised, methods
      resolved, seeds parsed, ``settings``: the method overrides), and ``"out"``: the result folder of this run,
      ``"models"``: the number of models per side of a many-model run (``--models``) or ``None``, ``"cache_dir"``:
      the model cache's folder or ``None`` (``--no-cache``), ``"run"``: the resolved run settings (for
      :func:`jaxunlearn.experiments.to_toml`), and for a sweep ``"points"``: the grid points per method.

    Raises:
      UsageError: the first argument that cannot run, with what is accepted.
    """
    from jaxunlearn._validation import check_number, check_positive_int
    from jaxunlearn.data import DATASETS, SYNTHETIC_DATASETS
    from jaxunlearn.experiments.cache import default_cache_dir
    from jaxunlearn.experiments.classification import DEFAULT_MODEL
    from jaxunlearn.experiments.config import ConfigError, resolve_settings
    from jaxunlearn.experiments.many_models import check_model, check_num_models
    from jaxunlearn.experiments.registry import profile_of, resolve_methods
    from jaxunlearn.experiments.report import EPSILON_FILE, RESULT_FILES
    from jaxunlearn.experiments.sweep import SWEEP_FILES, grid_points, parse_grid
    from jaxunlearn.io import check_output_folder, check_replaceable
    from jaxunlearn.models import MODELS

    sweep = getattr(args, "grid", None) is not None
    try:
        run, overrides = _layers(args)
        grids = [parse_grid(g) for g in args.grid] if sweep else []
    except ConfigError as err:
        raise UsageError(str(err)) from None
    try:
        epochs = check_positive_int(run["epochs"], "--epochs")
        batch_size = check_positive_int(run["batch_size"], "--batch-size")
        lr = check_number(run["lr"], "--lr", low=0.0, low_inclusive=False)
        num_models = None if run["models"] is None else check_num_models(run["models"], "--models")
    except ValueError as err:
        raise UsageError(str(err)) from None
    if sweep and num_models is not None:
        raise UsageError("--models does not combine with a sweep; sweep first, then run forget --models N on the "
                         "settings chosen.")
    seeds = parse_seeds(run["seeds"])
    method_text = run["methods"]
    if sweep:  # a sweep runs its swept methods, and the methods named with --methods (or in the file) once
        named = "" if method_text.strip() == "all" else method_text
        method_text = ",".join(dict.fromkeys([g.method for g in grids] + named.split(",")))
    if not method_text.strip(" ,"):
        raise UsageError(f"--methods is empty; pass 'all' or a comma-separated subset of {', '.join(ALL_METHODS)}.")
    try:
        methods = resolve_methods(method_text)
    except ValueError as err:
        raise UsageError(str(err)) from None
    dataset = run["dataset"].strip().lower().replace("-", "_")
    if dataset not in DATASETS + SYNTHETIC_DATASETS:
        raise UsageError(f"unknown dataset {run['dataset']!r}; choose one of "
                         f"{', '.join(DATASETS + SYNTHETIC_DATASETS)}.")
    if dataset in SYNTHETIC_DATASETS and (run.get("data_dir") or run.get("download")):
        raise UsageError(f"{dataset} is generated, not loaded: drop --data-dir and --download.")
    model = run["model"]
    if model is not None and model not in MODELS:
        raise UsageError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}.")
    if num_models is not None:
        try:
            check_model(model or DEFAULT_MODEL.get(dataset, "mlp"))
        except ValueError as err:
            raise UsageError(f"--models: {err}") from None
    data_dir = run["data_dir"]
    if data_dir is not None and os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UsageError(f"--data-dir {data_dir} is not a folder.")
    scenario = run["scenario"].strip()
    _check_scenario(scenario, dataset, seeds)
    try:
        settings = resolve_settings(overrides, profile_of(dataset))
        points = grid_points(grids, settings) if sweep else {}
    except ConfigError as err:
        raise UsageError(str(err)) from None
    _check_settings(methods, settings)
    for method, method_points in points.items():
        for point in method_points:
            _check_settings((method,), {method: point.settings}, f" at {point.label}")
    try:
        out = check_output_folder(run["out"])
    except ValueError as err:
        raise UsageError(f"--out: {err}") from None
    folder = os.path.join(out, f"{dataset}-{scenario.replace(':', '_')}" + ("-sweep" if sweep else ""))
    files = SWEEP_FILES if sweep else RESULT_FILES + ((EPSILON_FILE,) if num_models else ())
    try:
        check_replaceable(folder, files)
    except OSError as err:
        raise UsageError(f"--out: {err}") from None
    cache_dir = None
    if run["cache"]:
        try:
            cache_dir = check_output_folder(run["cache_dir"] or default_cache_dir())
        except ValueError as err:
            raise UsageError(f"--cache-dir: {err}") from None
    resolved_run = {**run, "dataset": dataset, "scenario": scenario, "seeds": list(seeds),
                    "methods": [m for m in methods if m in COMPARED],
                    "model": model or DEFAULT_MODEL.get(dataset, "mlp"), "cache_dir": cache_dir}
    return {"dataset": dataset, "scenario": scenario, "methods": methods, "seeds": seeds, "model": model,
            "epochs": epochs, "batch_size": batch_size, "learning_rate": lr, "data_dir": data_dir,
            "download": bool(run["download"]), "warm_timing": not run["cold_timing"], "settings": overrides,
            "out": folder, "models": num_models, "cache_dir": cache_dir, "run": resolved_run, "points": points}


def _resolved_toml(checked: dict[str, Any], command: str) -> str:
    """The resolved configuration of a checked command line as TOML (run settings, then the settings of the
    methods it runs; a sweep's grids as a comment)."""
    from jaxunlearn.experiments.config import resolve_settings, to_toml
    from jaxunlearn.experiments.registry import profile_of

    settings = resolve_settings(checked["settings"], profile_of(checked["dataset"]))
    header = (f"jaxunlearn {command}: the resolved configuration (defaults < --config FILE < flags and --set);\n"
              f"run it with: jaxunlearn {command} --config FILE")
    for method, points in checked["points"].items():
        header += f"\nswept: {method} at " + "; ".join(p.label for p in points)
    return to_toml(checked["run"], {m: settings[m] for m in checked["run"]["methods"]}, header)


def _start(args: argparse.Namespace, command: str) -> tuple[dict, Any, Any, Any] | int:
    """Validate, print the configuration when asked: ``(checked, config, cache, log)``, or an exit code."""
    try:
        checked = validate_forget_args(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    checked["toml"] = _resolved_toml(checked, command)
    if getattr(args, "print_config", False):
        print(checked["toml"], end="")
        return 0
    from jaxunlearn.experiments import ForgettingConfig, ModelCache

    fields = {f.name for f in dataclasses.fields(ForgettingConfig)}
    config = ForgettingConfig(**{k: v for k, v in checked.items() if k in fields})
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    cache = None
    if checked["cache_dir"] is not None:
        cache = ModelCache(checked["cache_dir"], log=log, reuse_rows=not getattr(args, "rerun_methods", False))
    return checked, config, cache, log


def _record(checked: dict[str, Any], config: Any, title: str) -> dict[str, Any]:
    """The configuration recorded in ``results.json``: the config, every run setting, and the resolved
    settings of the methods run."""
    settings = config.method_settings()
    return {**dataclasses.asdict(config), "method_settings": {m: settings[m] for m in checked["run"]["methods"]},
            "models": checked["models"], "out": checked["out"], "cache_dir": checked["cache_dir"], "title": title}


def _forget(args: argparse.Namespace) -> int:
    started = _start(args, "forget")
    if isinstance(started, int):
        return started
    checked, config, cache, log = started
    from jaxunlearn.data import DatasetNotAvailableError
    from jaxunlearn.experiments import format_table, run_forgetting, summarise, write_results
    from jaxunlearn.io import new_run_id

    out, num_models = checked["out"], checked["models"]
    run_id = new_run_id()
    try:
        rows = run_forgetting(config, cache=cache, progress=not args.quiet, log=log)
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
    print(format_table(summaries, scenario=config.scenario))
    try:
        paths = write_results(out, _record(checked, config, title), rows, summaries, run_id=run_id,
                              epsilons=epsilons, config_toml=checked["toml"])
    except OSError as err:
        print(f"error: cannot write the results to {out}: {err}", file=sys.stderr)
        return 1
    print("\nwrote " + ", ".join(paths))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    started = _start(args, "sweep")
    if isinstance(started, int):
        return started
    checked, config, cache, log = started
    from jaxunlearn.data import DatasetNotAvailableError
    from jaxunlearn.experiments import format_table, run_sweep, summarise, write_sweep

    try:
        rows = run_sweep(config, checked["points"], cache=cache, progress=not args.quiet, log=log)
    except (DatasetNotAvailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summaries = summarise(rows)
    title = f"{config.dataset} / {config.model_name} / {config.scenario}, {len(config.seeds)} seed(s): trade-off"
    print(f"\n{title}\n")
    print(format_table(summaries, scenario=config.scenario))
    record = {**_record(checked, config, title),
              "grid": {m: [p.label for p in pts] for m, pts in checked["points"].items()}}
    try:
        paths = write_sweep(checked["out"], record, rows, summaries, config_toml=checked["toml"])
    except OSError as err:
        print(f"error: cannot write the results to {checked['out']}: {err}", file=sys.stderr)
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


def _run_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``forget`` and ``sweep`` share. Their defaults are ``None`` (not given), so that a flag given
    wins over the config file and the file over :data:`~jaxunlearn.experiments.config.RUN_DEFAULTS`."""
    g = p.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE.toml", help="a TOML file of run settings and [method] tables "
                                                         "(flags and --set override it; see --print-config)")
    g.add_argument("--set", action="append", metavar="METHOD.KEY=VALUE",
                   help="one method setting, e.g. ssd.alpha=5, jit.sigma=0.3, finetune.optimizer.lr=0.01 "
                        "(repeatable; the value is read as a TOML scalar)")
    g.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as TOML (a valid --config file) and exit")
    r = p.add_argument_group("run")
    r.add_argument("--dataset", help="digits (embedded, default), mnist, fashion_mnist, cifar10, cifar100, "
                                     "cifar20 (tfds, from --data-dir); synthetic_cifar100, synthetic_cifar20, "
                                     "synthetic_cifar10, synthetic_mnist, synthetic_fashion_mnist (generated, 5,000 + 1,000 examples)")
    r.add_argument("--scenario", help="class:C (default class:3), subclass:C (cifar20), random:K or random:FRACTION, "
                                      "class_subset:C:K")
    r.add_argument("--methods", help=f"'all' (forget's default) or a comma-separated subset of {', '.join(COMPARED)}")
    r.add_argument("--seeds", help="comma-separated seeds (mean ± std over them; default 0,1,2)")
    r.add_argument("--model", help="mlp, lenet, small_cnn, resnet18, vgg11, vit "
                                   "(default: mlp on digits, lenet on mnist, resnet18 on cifar)")
    r.add_argument("--epochs", type=int, help="training epochs of the original and retrained models (default 30)")
    r.add_argument("--batch-size", type=int, help="training batch size (default 64)")
    r.add_argument("--lr", type=float, help="Adam learning rate of the training recipe (default 1e-3)")
    r.add_argument("--data-dir", help="tensorflow-datasets folder holding prepared data")
    r.add_argument("--download", action="store_true", default=None,
                   help="let tensorflow-datasets download missing data (needs internet; default: read --data-dir only)")
    r.add_argument("--out", help="results folder (default: results/); each run replaces its sub-folder whole")
    r.add_argument("--cold-timing", action="store_true", default=None,
                   help="time each method's first call, XLA compilation included (default: warm calls)")
    c = p.add_argument_group("model cache")
    c.add_argument("--cache-dir", help="where trained originals and references are kept "
                                       "(default: $XDG_CACHE_HOME/jaxunlearn or ~/.cache/jaxunlearn)")
    c.add_argument("--no-cache", action="store_true", help="train the original and reference models and run every "
                                                           "method again, storing nothing")
    c.add_argument("--rerun-methods", action="store_true",
                   help="use the cached models but run every method again (fresh times; rows are stored)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _paper(args: argparse.Namespace) -> int:
    """``jaxunlearn paper NAME...``: seed experiments (:mod:`jaxunlearn.experiments.paper`), one after another."""
    from jaxunlearn.experiments.config import ConfigError, read_toml
    from jaxunlearn.experiments.paper import all_settings, resolve_params
    from jaxunlearn.io import check_output_folder

    settings = all_settings()
    if args.list or not args.names:
        width = max(len(n) for n in settings)
        print("\n".join(f"{name:<{width}}  {s.title}" for name, s in settings.items()))
        return 0
    names = list(settings) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in settings]
    if unknown:
        print(f"error: unknown paper setting {', '.join(map(repr, unknown))}; `jaxunlearn paper --list` lists "
              f"them (or give all): {', '.join(settings)}", file=sys.stderr)
        return 2
    planned = []
    try:  # every name's settings and folder are checked before the first one runs
        file_values = read_toml(args.config) if args.config else None
        for name in names:
            params = resolve_params(settings[name], args.set or (), smoke=args.smoke, file_values=file_values)
            folder = check_output_folder(os.path.join(args.out, f"paper-{name}" + ("-smoke" if args.smoke else "")))
            planned.append((settings[name], params, folder))
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = 0
    for i, (setting, params, folder) in enumerate(planned):
        if len(planned) > 1 and not args.quiet:
            print(f"[{i + 1}/{len(planned)}] {setting.name}", file=sys.stderr)
        code = max(code, _paper_one(setting, params, folder, args))
    return code


def _paper_one(setting: Any, params: dict, folder: str, args: argparse.Namespace) -> int:
    """Run one checked paper setting: print its table and write ``folder`` as a whole."""
    from jaxunlearn.data import DatasetNotAvailableError, load_dataset
    from jaxunlearn.experiments import ModelCache
    from jaxunlearn.experiments.cache import default_cache_dir
    from jaxunlearn.experiments.paper import kind_module, params_toml
    from jaxunlearn.io import check_output_folder, json_bytes, new_run_id, write_folder_atomically

    toml = params_toml(setting, params)
    if args.print_config:
        print(toml, end="")
        return 0
    module = kind_module(setting.kind)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    options = module.data_options(params) if hasattr(module, "data_options") else {}
    try:
        if args.smoke:
            num_train, num_test = setting.smoke_sizes
            train, test = load_dataset(f"synthetic_{params['dataset']}", num_train=num_train, num_test=num_test,
                                       seed=0, **options)
        else:
            train, test = load_dataset(params["dataset"], data_dir=args.data_dir, download=args.download, **options)
        extra = {}
        if getattr(module, "USES_MODEL_CACHE", False) and not args.no_cache:
            extra["cache"] = ModelCache(check_output_folder(args.cache_dir or default_cache_dir()), log=log)
        log(f"[{setting.name}] {setting.title}: {len(train.y)} training and {len(test.y)} test examples"
            + (" (synthetic stand-in, --smoke)" if args.smoke else ""))
        result = module.run(setting, params, train, test, progress=not args.quiet, log=log, **extra)
    except (DatasetNotAvailableError, ValueError) as err:
        print(f"error: {setting.name}: {err}", file=sys.stderr)
        return 2
    text = module.table(setting, params, result)
    print("\n" + text)
    files = {"table.txt": text.encode(), "config.toml": toml.encode(),
             "result.json": json_bytes({"setting": setting.name, "smoke": args.smoke, "params": params,
                                        "result": result})}
    if hasattr(module, "figures"):
        files.update(module.figures(setting, params, result))
    try:
        paths = write_folder_atomically(folder, files, run_id=new_run_id())
    except OSError as err:
        print(f"error: cannot write the results to {folder}: {err}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(paths))
    return 0


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
                       description="Train an original and a retrained model (or load them from the model cache), "
                                   "run the unlearning methods, print a comparison table and write JSON, CSV, "
                                   "a PNG and the resolved config.toml.")
    _run_flags(f)
    f.add_argument("--models", type=int, nargs="?", const=32, default=None, metavar="N",
                   help="also train N (>= 2; 32 when given without a value) originals and N retrained models per "
                        "seed, unlearn all N with each method vmapped, and add the NeurIPS 2023 challenge's forget "
                        "and final scores (retrain row: a second set of N retrained models, the ceiling), a "
                        "per-example epsilon histogram and the epsilons in results.json (default: off)")
    f.set_defaults(run=_forget)
    s = sub.add_parser("sweep", help="trade-off curves: methods over grids of their settings",
                       description="Run methods over grids of their settings against an original and a retrained "
                                   "model trained once per seed; print a table and draw forget accuracy against "
                                   "retain accuracy (tradeoff.png).")
    s.add_argument("--grid", action="append", required=True, metavar="METHOD.KEY=V1,V2,...",
                   help="the values of one setting, e.g. ssd.alpha=1,3,10,30 (repeatable; a method swept on "
                        "several keys runs their product)")
    _run_flags(s)
    s.set_defaults(run=_sweep)
    p = sub.add_parser("paper", help="a seed paper's experiment with the original settings, beside its numbers",
                       description="Run one experiment of the seed papers with the original code's settings and "
                                   "print the paper's table layout with the paper's numbers beside ours. "
                                   "`jaxunlearn paper --list` names them; --smoke runs the whole path on "
                                   "synthetic data of the real shapes in about a minute.")
    p.add_argument("names", nargs="*", metavar="NAME", help="the settings to run, one after another (see --list; "
                                                             "all: every one)")
    p.add_argument("--list", action="store_true", help="list the settings and exit")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting (repeatable), e.g. --set seeds=0,1,2 --set epochs=30; "
                        "--print-config shows them all")
    p.add_argument("--config", metavar="FILE.toml", help="settings from a TOML file (a run's config.toml); "
                                                         "--set overrides them")
    p.add_argument("--smoke", action="store_true",
                   help="generated data of the same shape at a few hundred examples and the setting's short "
                        "smoke values (fewer epochs and steps, narrower models): checks the path, not the numbers")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings as TOML and exit")
    p.add_argument("--data-dir", help="tensorflow-datasets folder holding the prepared dataset")
    p.add_argument("--download", action="store_true", help="let tensorflow-datasets download and prepare it")
    p.add_argument("--out", default="results", help="results folder (default results/); the run replaces "
                                                     "<out>/paper-NAME/ as a whole")
    p.add_argument("--cache-dir", help="model cache (default $XDG_CACHE_HOME/jaxunlearn)")
    p.add_argument("--no-cache", action="store_true", help="train every model again and cache nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=_paper)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse's own errors (exit 2) and --help (exit 0)
        return stop.code if isinstance(stop.code, int) else 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
