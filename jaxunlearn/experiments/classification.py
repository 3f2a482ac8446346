"""The forgetting comparison: train an original and a retrained model, run every method, measure them.

For each seed (:func:`prepare_seed`): train the original model on the whole
training set and the reference ("retrain") on the retained part only, with the
same recipe, or load both from the model cache (:mod:`jaxunlearn.experiments.cache`).
Then each method (:func:`run_method`) starts from the original parameters, its
wall time is measured from ``init`` to the end of ``update`` (evaluation
excluded, outputs blocked on), and the metrics compare it with the retrained model:

* accuracy on retain-train, forget-train, retain-test and forget-test (the
  last only where the forget-test set is held out: in random and class-subset
  scenarios it is the forgotten training samples again, so it is left out);
* the entropy membership-inference attack on the forget set (SSD/JiT code);
* JS divergence and L1 distance of the predictive distributions to the
  retrained model's, on the forget-train samples;
* ZRF against a randomly initialised teacher on the forget-train samples;
* ``params_changed``: the share of the parameters the method changed;
* method seconds and the speed-up over retraining. With ``warm_timing`` (the
  default) every method, retraining included, runs once first (compiling), so
  the times compare computation, not XLA compilation; a timed call shorter
  than :data:`SHORT_CALL_S` is repeated until the calls add up to
  :data:`REPEAT_TOTAL_S` and the median is reported, so speed-ups of fast
  methods are stable. The retraining time of a cached reference is the one
  measured when it was trained, and a method's row read from the cache
  (:func:`run_method`: same models, settings, timing mode and library code)
  keeps the time measured when it was computed; both say ``from_cache``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import zlib
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from jaxunlearn import metrics, models
from jaxunlearn._validation import check_number, check_positive_int, num_examples
from jaxunlearn.data import Dataset, ForgetSplit, load_dataset
from jaxunlearn.experiments.cache import ModelCache, key_hash, model_key, row_key
from jaxunlearn.experiments.config import resolve_settings
from jaxunlearn.experiments.registry import (
    ALL_METHODS,
    COMPARED,
    MethodContext,
    build_method,
    make_training_optimizer,
    profile_of,
    resolve_methods,
)
from jaxunlearn.experiments.scenario import parse_scenario
from jaxunlearn.train import train_classifier

DEFAULT_MODEL = {"digits": "mlp", "mnist": "lenet", "fashion_mnist": "lenet", "cifar10": "resnet18",
                 "cifar100": "resnet18", "cifar20": "resnet18"}
DEFAULT_MODEL.update({f"synthetic_{name}": model for name, model in DEFAULT_MODEL.items() if name != "digits"})

#: ``(num_train, num_test)`` of the generated stand-ins (``jaxunlearn.data.SYNTHETIC_DATASETS``) in the
#: comparison; their data seed is fixed (0), as a real dataset is the same for every run seed.
SYNTHETIC_SIZES = (5000, 1000)

#: A timed call shorter than this (seconds) is repeated (module docstring).
SHORT_CALL_S = 0.05
#: Repeats of a short call add up to at least this many seconds (at most :data:`MAX_REPEATS` calls).
REPEAT_TOTAL_S = 0.2
MAX_REPEATS = 200

#: A method whose forget-train accuracy moved less than this from the original's is flagged ``no_effect``.
NO_EFFECT_ACCURACY = 0.01


@dataclasses.dataclass(frozen=True)
class ForgettingConfig:
    """One comparison: dataset, model, scenario, methods, seeds, the training recipe and ``settings``,
    the methods' settings that differ from their defaults (``{method: {key: value}}``, plain values;
    :mod:`jaxunlearn.experiments.config`).

    The recipe trains ``epochs`` epochs of batches of ``batch_size`` with Adam at ``learning_rate``, or with
    ``optimizer`` when given (a table, :func:`~jaxunlearn.experiments.registry.make_training_optimizer`: the
    originals' SGD with step decay). ``model_options`` are further attributes of the classifier
    (``{"stage_widths": (16, 32, 64, 128)}``; :func:`jaxunlearn.models.create`). ``extra_metrics=False``
    leaves out the attacks, relearning and CKA of :func:`jaxunlearn.metrics.comparison_metrics` (the seeds'
    tables need accuracies and the entropy attack only)."""

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
    settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    optimizer: Mapping[str, Any] | None = None
    extra_metrics: bool = True

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
        self.method_settings()  # unknown methods, keys or types raise here
        if self.optimizer is not None:
            make_training_optimizer(self.optimizer, steps_per_epoch=1)  # an unknown optimizer or key raises here

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODEL.get(self.dataset, "mlp")

    def method_settings(self) -> dict[str, dict]:
        """The resolved settings of every compared method: the defaults of the dataset's profile
        (:func:`jaxunlearn.experiments.registry.profile_of`) with :attr:`settings` applied."""
        return resolve_settings(self.settings, profile_of(self.dataset), "settings")


def _load(config: ForgettingConfig) -> tuple[Dataset, Dataset]:
    if config.dataset == "digits":
        return load_dataset("digits")
    if config.dataset.startswith("synthetic_"):
        return load_dataset(config.dataset, num_train=SYNTHETIC_SIZES[0], num_test=SYNTHETIC_SIZES[1], seed=0)
    return load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)


def method_key(key: jax.Array, name: str) -> jax.Array:
    """The key of method ``name``: ``fold_in(key, crc32(name))``, independent of which other methods run."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def measure(fn: Callable[[str], Any], warm: bool) -> tuple[Any, float, float]:
    """Time ``fn`` (called with a word saying which run it is, for progress bars).

    Args:
      fn: the computation; its outputs are blocked on.
      warm: time a second call (the first compiles); a second call shorter than :data:`SHORT_CALL_S` is
        repeated (``"repeat"``) until the timed calls add up to :data:`REPEAT_TOTAL_S` (at most
        :data:`MAX_REPEATS`), and their median is the time.

    Returns:
      ``(output, seconds, first-call seconds)``; without ``warm`` both times are the one call's.
    """
    out, first = metrics.timed(lambda: fn("1st run, compiles" if warm else "timed"))
    if not warm:
        return out, first, first
    out, t = metrics.timed(lambda: fn("2nd run, timed"))
    times = [t]
    if t < SHORT_CALL_S:
        repeats = min(MAX_REPEATS, math.ceil(REPEAT_TOTAL_S / max(t, 1e-6)))
        while len(times) < repeats:
            times.append(metrics.timed(lambda: fn("repeat"))[1])
    return out, statistics.median(times), first


def changed_fraction(before: Any, after: Any) -> float:
    """The share of the scalar parameters of ``after`` that differ from ``before`` (same pytree structure)."""
    pairs = zip(jax.tree.leaves(before), jax.tree.leaves(after))
    changed = total = 0
    for a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        changed += int(np.count_nonzero(a != b))
        total += a.size
    return changed / total if total else 0.0


def _evaluate(run: "SeedRun", logits: Callable, params: Any) -> dict[str, float]:
    """The metrics of ``params`` (module docstring); ``logits`` is one of the seed's two compiled-once
    ``logits_fn`` objects, so the evaluation compiles once per seed, not once per method."""
    split = run.split
    acc = metrics.split_accuracies(logits, params, split)
    if split.forget_test_from == "train":  # the forget "test" set is the forgotten training samples again
        acc.pop("forget_test")
    row = {f"acc_{k}": float(v) for k, v in acc.items()}
    row["mia"] = float(metrics.entropy_mia(logits, params, split.retain_train, run.test, split.forget_train))
    dist = metrics.distance_to_retrained(logits, params, run.retrained["params"], split.forget_train.x,
                                         retrained_logits_fn=run.retrain_logits)
    row.update({f"{k}_to_retrain": float(v) for k, v in dist.items()})
    row["zrf"] = float(metrics.zrf(logits, params, run.teacher["params"], split.forget_train.x,
                                   teacher_logits_fn=run.logits))
    # the attacks, relearning and CKA of jaxunlearn.metrics.comparison (relearning needs a forget set larger
    # than its fine-tuning examples); the same key for every row of the seed: every row is probed alike
    if not run.config.extra_metrics:
        return row
    relearn = num_examples(split.forget_train.arrays) > 2 * RELEARN_EXAMPLES
    extra = metrics.comparison_metrics(
        logits, params, split=split, test=run.test, key=jax.random.fold_in(run.methods_key, 1),
        features_fn=run.features[0] if logits is run.logits else run.features[1],
        original_params=run.original["params"], retrained_params=run.retrained["params"],
        original_logits_fn=run.logits, retrained_features_fn=run.features[1],
        relearn_examples=RELEARN_EXAMPLES if relearn else 1)
    if not relearn:
        extra = {k: v for k, v in extra.items() if not k.startswith("relearn_")}
    row.update({k: float(v) for k, v in extra.items()})
    return row


#: Forget examples the relearning check fine-tunes on (:func:`jaxunlearn.metrics.relearning`).
RELEARN_EXAMPLES = 10


class SeedRun(NamedTuple):
    """One seed's shared part of a comparison (:func:`prepare_seed`): the split, the models every method is
    measured against, their eval-mode ``logits`` functions (the original's state, and the retrained
    model's), the method context, and the cache (``model_hashes``: the :func:`~jaxunlearn.experiments.cache.key_hash`
    of the original and the reference, when cached); ``retrain_seconds``: the reference's training time
    (measured when it was trained: ``retrain_cached`` when that was an earlier run)."""

    seed: int
    config: ForgettingConfig
    module: Any
    split: ForgetSplit
    test: Dataset
    teacher: dict
    original: dict
    retrained: dict
    logits: Callable
    retrain_logits: Callable
    retrain_seconds: float
    retrain_cached: bool
    ctx: MethodContext
    methods_key: jax.Array
    cache: ModelCache | None = None
    model_hashes: tuple[str, str] | None = None
    features: tuple[Callable, Callable] | None = None  # penultimate features: original's state, retrained's


def _train(config: ForgettingConfig, module, data: Dataset, key, *, template: dict, role: str, seed: int,
           cache: ModelCache | None, time_it: bool, progress: bool, log: Callable[[str], None]
           ) -> tuple[dict, float, bool, str | None]:
    """The variables of the model ``role`` trained on ``data`` (from ``cache`` when it holds them), with
    ``time_it`` its training seconds under ``config.warm_timing`` (:func:`measure`; stored with the entry),
    whether they came from the cache, and the hash of their cache key (``None`` without a cache)."""
    timing = "seconds_warm" if config.warm_timing else "seconds_cold"
    entry = None
    if cache is not None:
        entry = model_key(role=role, seed=seed, dataset=config.dataset, x=data.x, y=data.y, model=config.model_name,
                          num_classes=data.num_classes, epochs=config.epochs, batch_size=config.batch_size,
                          learning_rate=config.learning_rate, model_options=config.model_options,
                          optimizer=config.optimizer)
        hit = cache.load(entry, template)
        if hit is not None and (not time_it or timing in hit[1]):
            log(f"[seed {seed}] {role}: loaded from the cache ({cache.path(entry)})")
            return hit[0], hit[1].get(timing, math.nan), True, key_hash(entry)
        if hit is not None:
            log(f"[seed {seed}] {role}: cached, but its {timing.split('_')[1]} training time was not measured yet: "
                "training it again to time it")

    k_init, k_train = jax.random.split(key)
    if config.optimizer is None:
        optimizer = optax.adam(config.learning_rate)
    else:
        optimizer = make_training_optimizer(config.optimizer, steps_per_epoch=-(-len(data.y) // config.batch_size))

    def run(what: str | None):
        _, variables = models.create(config.model_name, num_classes=data.num_classes, input_shape=data.x.shape[1:],
                                     key=k_init, **config.model_options)
        return train_classifier(module, variables, data, optimizer=optimizer,
                                num_epochs=config.epochs, batch_size=config.batch_size, key=k_train,
                                progress=progress and what != "repeat",
                                desc=f"seed {seed}: {role}" + (f" ({what})" if what else ""))[0]

    if time_it:
        variables, seconds, first = measure(run, config.warm_timing)
        measured = {"seconds_cold": first, **({"seconds_warm": seconds} if config.warm_timing else {})}
    else:
        variables, seconds, measured = run(None), math.nan, {}
    if cache is None:
        return variables, seconds, False, None
    cache.save(entry, variables, measured)
    return variables, seconds, False, key_hash(entry)


def prepare_seed(config: ForgettingConfig, seed: int, *, cache: ModelCache | None = None, progress: bool = True,
                 log: Callable[[str], None] = print, data: tuple[Dataset, Dataset] | None = None) -> SeedRun:
    """The split of ``seed``, the original and retrained models (trained, or loaded from ``cache``), the
    teacher of ZRF and the method context: what every method of the seed is measured against. ``data``:
    the ``(train, test)`` sets of ``config.dataset`` when the caller has loaded them (default: loaded here)."""
    train, test = _load(config) if data is None else data
    split = parse_scenario(config.scenario, train, test, seed=seed)
    input_shape = tuple(train.x.shape[1:])
    key = jax.random.key(seed)
    k_orig, k_retrain, k_teacher, k_methods = jax.random.split(key, 4)
    module, teacher = models.create(config.model_name, num_classes=train.num_classes, input_shape=input_shape,
                                    key=k_teacher, **config.model_options)
    log(f"[seed {seed}] {config.dataset}/{config.model_name}, scenario {config.scenario}: {split.sizes}")
    common = dict(template=teacher, seed=seed, cache=cache, progress=progress, log=log)
    original, _, _, original_hash = _train(config, module, train, k_orig, role="original", time_it=False, **common)
    retrained, retrain_seconds, cached, retrain_hash = _train(config, module, split.retain_train, k_retrain,
                                                              role="retrain", time_it=True, **common)
    ctx = MethodContext(module, original, split, train.num_classes, input_shape, config.epochs, config.batch_size,
                        config.learning_rate, config.method_settings(), dict(config.model_options))
    logits = models.logits_fn(module, original)
    stateless = len(retrained) == 1  # params only: one logits function serves both models
    retrain_logits = logits if stateless else models.logits_fn(module, retrained)
    hashes = None if cache is None else (original_hash, retrain_hash)
    features = metrics.penultimate_fn(module, original)
    retrain_features = features if stateless else metrics.penultimate_fn(module, retrained)
    return SeedRun(seed, config, module, split, test, teacher, original, retrained, logits, retrain_logits,
                   retrain_seconds, cached, ctx, k_methods, cache, hashes, (features, retrain_features))


def run_method(run: SeedRun, name: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One result row: method ``name`` (or the ``"original"``/``"retrain"`` reference) on ``run``'s seed.

    A method's row is read from ``run.cache`` when it holds one for the same models, settings, timing mode
    and library code (:func:`jaxunlearn.experiments.cache.row_key`), else computed and stored there.

    Args:
      run: the seed's shared models (:func:`prepare_seed`).
      name: a name of :data:`~jaxunlearn.experiments.registry.ALL_METHODS`.
      settings: the method's plain settings (default: ``run.config``'s resolved settings).

    Returns:
      ``seed``, ``method``, ``seconds``, ``speedup`` (retraining seconds / method seconds), ``params_changed``,
      ``from_cache`` (the time, and for a method the whole row, come from an earlier run) and the metrics of
      the module docstring. A method whose parameters are not finite gets ``diverged: True`` and no metrics.
    """
    if name in ("original", "retrain"):
        model = run.original if name == "original" else run.retrained
        seconds = 0.0 if name == "original" else run.retrain_seconds
        row = _row(run, name, model["params"], seconds, run.logits if name == "original" else run.retrain_logits)
        row["from_cache"] = name == "retrain" and run.retrain_cached
        return row
    if settings is None:
        settings = run.ctx.settings[name]
    key = None
    if run.cache is not None:
        key = row_key(method=name, seed=run.seed, settings=dict(settings), original=run.model_hashes[0],
                      retrain=run.model_hashes[1], warm_timing=run.config.warm_timing)
        row = run.cache.load_row(key)
        if row is not None:
            return {**row, "speedup": _speedup(run.retrain_seconds, row["seconds"]), "from_cache": True}
    unlearner = build_method(name, run.ctx, settings)
    k_init, k_update = jax.random.split(method_key(run.methods_key, name))
    data, request = run.split.full_train.arrays, run.split.full_train_request
    original = run.original["params"]

    def call(what):
        del what  # methods run without a bar of their own
        state = unlearner.init(original, data, key=k_init)
        return unlearner.update(original, request, state, key=k_update)[0]

    params, seconds, _ = measure(call, run.config.warm_timing)
    row = {**_row(run, name, params, seconds, run.logits), "from_cache": False}
    if key is not None:
        run.cache.save_row(key, row)
    return row


def _speedup(retrain_seconds: float, seconds: float) -> float:
    return retrain_seconds / seconds if seconds > 0 else float("nan")


def _row(run: SeedRun, name: str, params: Any, seconds: float, logits: Callable) -> dict[str, Any]:
    """The row of ``params`` (``diverged`` and no metrics when they are not finite)."""
    row = {"seed": run.seed, "method": name, "seconds": seconds, "speedup": _speedup(run.retrain_seconds, seconds),
           "params_changed": changed_fraction(run.original["params"], params)}
    if not all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params)):
        row["diverged"] = True  # no metric of non-finite parameters: they stay out of the row (shown as "-")
        return row
    row.update(_evaluate(run, logits, params))
    return row


def describe(row: dict[str, Any]) -> str:
    """A row's two headline numbers for a progress line (or that it diverged)."""
    if row.get("diverged"):
        return "diverged: non-finite parameters"
    return f"forget-train acc {row['acc_forget_train']:.3f}  retain-test acc {row['acc_retain_test']:.3f}"


def run_seed(config: ForgettingConfig, seed: int, *, cache: ModelCache | None = None, progress: bool = True,
             log: Callable[[str], None] = print, data: tuple[Dataset, Dataset] | None = None) -> list[dict[str, Any]]:
    """All methods of ``config`` on one seed; one result row (a dict) per method (:func:`run_method`)."""
    run = prepare_seed(config, seed, cache=cache, progress=progress, log=log, data=data)
    names = resolve_methods(config.methods)
    compared = [n for n in names if n in COMPARED]
    rows = []
    for name in names:
        if name in COMPARED:
            log(f"[seed {seed}] [{compared.index(name) + 1}/{len(compared)}] {name} ...")
        row = run_method(run, name)
        log(f"[seed {seed}] {name:12s} {describe(row)}  {row['seconds']:.3g}s")
        rows.append(row)
    return rows


def run_forgetting(config: ForgettingConfig, *, cache: ModelCache | None = None, progress: bool = True,
                   log: Callable[[str], None] = print, data: tuple[Dataset, Dataset] | None = None
                   ) -> list[dict[str, Any]]:
    """Every seed of ``config``; the concatenated rows of :func:`run_seed` (models from ``cache`` when given;
    ``data``: ``(train, test)`` when already loaded)."""
    rows = []
    for seed in config.seeds:
        rows.extend(run_seed(config, seed, cache=cache, progress=progress, log=log, data=data))
    return rows


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method (rows grouped by ``"method"``, in first-seen order): the mean and standard deviation over
    seeds of every numeric column (``col`` and ``col_std``), whether any seed's row holds a true boolean
    column (``diverged``, ``from_cache``), other columns kept from the first row; and, for
    every method but the two references, ``no_effect``: whether it changed no parameter in any seed, or moved
    the mean forget-train accuracy less than :data:`NO_EFFECT_ACCURACY` from the original's."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        summary: dict[str, Any] = {"method": method, "seeds": len(group)}
        for col in group[0]:
            if col in ("method", "seed"):
                continue
            if isinstance(group[0][col], bool):
                summary[col] = any(r.get(col, False) for r in group)
                continue
            if not _numeric(group[0][col]):
                summary[col] = group[0][col]
                continue
            values = np.asarray([r.get(col, np.nan) for r in group], dtype=float)
            finite = np.isfinite(values).any()
            summary[col] = float(np.nanmean(values)) if finite else float("nan")
            summary[f"{col}_std"] = float(np.nanstd(values)) if finite else float("nan")
        out.append(summary)
    original = next((s for s in out if s["method"] == "original"), None)
    for s in out:
        if s["method"] in ("original", "retrain") or original is None:
            continue
        unchanged = s.get("params_changed", 1.0) == 0.0
        moved = abs(s.get("acc_forget_train", math.nan) - original.get("acc_forget_train", math.nan))
        s["no_effect"] = bool(unchanged or moved < NO_EFFECT_ACCURACY)
    return out
