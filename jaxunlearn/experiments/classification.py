"""The forgetting comparison: train an original and a retrained model, run every method, measure them.

For each seed: train the original model on the whole training set and the
reference ("retrain") on the retained part only, with the same recipe; then
each method starts from the original parameters, its wall time is measured
from ``init`` to the end of ``update`` (evaluation excluded, outputs blocked
on), and the metrics compare it with the retrained model:

* accuracy on retain-train, forget-train, retain-test and forget-test;
* the entropy membership-inference attack on the forget set (SSD/JiT code);
* JS divergence and L1 distance of the predictive distributions to the
  retrained model's, on the forget-train samples;
* ZRF against a randomly initialised teacher on the forget-train samples;
* method seconds and the speed-up over retraining. With ``warm_timing`` (the
  default) every method, retraining included, runs once untimed first, so the
  times compare computation, not XLA compilation (on small data compilation
  dominates a cold run).
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable

import jax
import numpy as np
import optax

from jaxunlearn import metrics, models
from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.data import Dataset, load_dataset
from jaxunlearn.experiments.registry import ALL_METHODS, MethodContext, build_method, resolve_methods
from jaxunlearn.experiments.scenario import parse_scenario
from jaxunlearn.train import train_classifier

DEFAULT_MODEL = {"digits": "mlp", "mnist": "lenet", "fashion_mnist": "lenet", "cifar10": "resnet18",
                 "cifar100": "resnet18", "cifar20": "resnet18"}


@dataclasses.dataclass(frozen=True)
class ForgettingConfig:
    """One comparison: dataset, model, scenario, methods, seeds, and the training recipe (Adam)."""

    dataset: str = "digits"
    scenario: str = "class:3"
    methods: tuple[str, ...] = ALL_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str | None = None
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    data_dir: str | None = None
    download: bool = False
    warm_timing: bool = True

    def __post_init__(self):
        """Reject a configuration that would train nothing or train wrongly, before any work."""
        seeds = tuple(self.seeds)
        if not seeds:
            raise ValueError("seeds is empty: give at least one seed (e.g. seeds=(0,)).")
        for seed in seeds:
            check_positive_int(seed, "each seed", allow_zero=True)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds lists a seed twice ({seeds}); the spread over seeds would be understated.")
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_number(self.learning_rate, "learning_rate", low=0.0, low_inclusive=False)
        resolve_methods(self.methods)

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODEL.get(self.dataset, "mlp")


def _load(config: ForgettingConfig) -> tuple[Dataset, Dataset]:
    if config.dataset == "digits":
        return load_dataset("digits")
    return load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)


def _train(module, train: Dataset, config: ForgettingConfig, key, desc: str, progress: bool):
    input_shape = tuple(train.x.shape[1:])
    k_init, k_train = jax.random.split(key)
    _, variables = models.create(config.model_name, num_classes=train.num_classes, input_shape=input_shape, key=k_init)
    variables, _ = train_classifier(
        module, variables, train, optimizer=optax.adam(config.learning_rate), num_epochs=config.epochs,
        batch_size=config.batch_size, key=k_train, progress=progress, desc=desc,
    )
    return variables


def method_key(key: jax.Array, name: str) -> jax.Array:
    """The key of method ``name``: ``fold_in(key, crc32(name))``, independent of which other methods run."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def _warm_time(fn: Callable[[str], Any], warm: bool) -> tuple[Any, float]:
    """``fn(what)`` and its wall time; with ``warm`` a first untimed call (``what="warm-up, untimed"``)
    compiles, so the timed call (``what="timed"``) excludes compilation."""
    if warm:
        jax.block_until_ready(fn("warm-up, untimed"))
    return metrics.timed(lambda: fn("timed"))


def _evaluate(module, variables, params, split, test: Dataset, retrained_params, teacher_params) -> dict[str, float]:
    logits = models.logits_fn(module, variables)
    acc = metrics.split_accuracies(logits, params, split)
    row = {f"acc_{k}": float(v) for k, v in acc.items()}
    row["mia"] = float(metrics.entropy_mia(logits, params, split.retain_train, test, split.forget_train))
    dist = metrics.distance_to_retrained(logits, params, retrained_params, split.forget_train.x)
    row.update({f"{k}_to_retrain": float(v) for k, v in dist.items()})
    row["zrf"] = float(metrics.zrf(logits, params, teacher_params, split.forget_train.x))
    return row


def run_seed(config: ForgettingConfig, seed: int, *, progress: bool = True,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """All methods of ``config`` on one seed; one result row (a dict) per method."""
    train, test = _load(config)
    split = parse_scenario(config.scenario, train, test, seed=seed)
    input_shape = tuple(train.x.shape[1:])
    key = jax.random.key(seed)
    k_orig, k_retrain, k_teacher, k_methods = jax.random.split(key, 4)
    module, teacher = models.create(config.model_name, num_classes=train.num_classes, input_shape=input_shape,
                                    key=k_teacher)
    log(f"[seed {seed}] {config.dataset}/{config.model_name}, scenario {config.scenario}: {split.sizes}")
    original = _train(module, train, config, k_orig, f"seed {seed}: original", progress)
    retrained, retrain_seconds = _warm_time(
        lambda what: _train(module, split.retain_train, config, k_retrain, f"seed {seed}: retrain ({what})",
                            progress),
        config.warm_timing,
    )
    ctx = MethodContext(module, original, split, train.num_classes, input_shape, config.epochs,
                        config.batch_size, config.learning_rate)
    data, request = split.full_train.arrays, split.full_train_request
    rows = []
    for name in resolve_methods(config.methods):
        if name == "original":
            params, variables, seconds = original["params"], original, 0.0
        elif name == "retrain":
            params, variables, seconds = retrained["params"], retrained, retrain_seconds
        else:
            unlearner = build_method(name, ctx)
            k_init, k_update = jax.random.split(method_key(k_methods, name))

            def run(what, unlearner=unlearner, k_init=k_init, k_update=k_update):
                del what  # methods run without a bar of their own
                state = unlearner.init(original["params"], data, key=k_init)
                return unlearner.update(original["params"], request, state, key=k_update)[0]

            params, seconds = _warm_time(run, config.warm_timing)
            variables = original
        row = {"seed": seed, "method": name, "seconds": seconds,
               "speedup": retrain_seconds / seconds if seconds > 0 else float("nan")}
        row.update(_evaluate(module, variables, params, split, test, retrained["params"], teacher["params"]))
        log(f"[seed {seed}] {name:12s} forget-train acc {row['acc_forget_train']:.3f}  "
            f"retain-test acc {row['acc_retain_test']:.3f}  {seconds:.2f}s")
        rows.append(row)
    return rows


def run_forgetting(config: ForgettingConfig, *, progress: bool = True,
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every seed of ``config``; the concatenated rows of :func:`run_seed`."""
    rows = []
    for seed in config.seeds:
        rows.extend(run_seed(config, seed, progress=progress, log=log))
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds for every method and numeric column (``col`` and ``col_std``)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        summary: dict[str, Any] = {"method": method, "seeds": len(group)}
        for col in group[0]:
            if col in ("method", "seed"):
                continue
            values = np.asarray([r[col] for r in group], dtype=float)
            summary[col] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            summary[f"{col}_std"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
        out.append(summary)
    return out
