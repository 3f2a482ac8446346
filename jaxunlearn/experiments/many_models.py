"""Forgetting quality from many models in one program: the NeurIPS 2023 challenge's score for every method.

For one seed and forget split (:func:`run_many_models`):

1. ``N`` *originals* trained on the whole training set and ``N`` *references* retrained on the retain set,
   each set by one vmapped run (:func:`jaxunlearn.train.train_classifier_many_seeds`: own initialisation and
   data order per model), plus a second, independent set of ``N`` references for the ceiling;
2. every method of the comparison unlearns all ``N`` originals in one compiled program: ``jax.vmap`` over
   the stacked params of the method's ``init`` then ``update`` (one key per model, derived from the method's
   name as :func:`jaxunlearn.experiments.classification.method_key` does), jitted once;
3. the logits of all ``N`` models on the ``F`` forget examples (vmapped) give
   :func:`jaxunlearn.metrics.forgetting_quality` (per-example ``eps_i`` and the forget score) against the
   references, and :func:`jaxunlearn.metrics.final_score` adjusts it with the retain-train and retain-test
   accuracies averaged over the ``N`` models of each side.

Rows: every method, ``"original"`` (the originals against the references: clearly distinguishable) and
``"retrain"``, the **ceiling**: the second set of references against the first. With few models even two
samples of one distribution score well below 1 (about 0.2 at ``N = 32``), so a method's score is read against
that row. Every method runs for every ``N``; :data:`COST_NOTES` says which ones make a large ``N`` costly.

With a ``mesh`` (:func:`jaxunlearn.sharding.model_mesh`) the model axis of the keys, hence of every stacked
pytree derived from them, lies across the devices (:mod:`jaxunlearn.sharding`), padded to a multiple of the
device count; the padding models are dropped before any metric. On a CPU every program runs over groups of
models (:func:`jaxunlearn.sharding.map_groups`, sized by :func:`jaxunlearn.sharding.group_size`), compiled once.

Models with batch-norm statistics (``resnet18``) are not supported: the methods bind one set of statistics
to their loss, while each of the ``N`` models has its own.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import metrics, models, sharding
from jaxunlearn._validation import check_positive_int
from jaxunlearn._validation import jit as keep_errors_jit
from jaxunlearn.curvature.chunks import chunked_sum
from jaxunlearn.experiments.classification import ForgettingConfig, _load, method_key
from jaxunlearn.experiments.registry import MethodContext, build_method, resolve_methods
from jaxunlearn.experiments.scenario import parse_scenario
from jaxunlearn.train import train_classifier_many_seeds

__all__ = ["COST_NOTES", "ManyModelsResult", "check_model", "check_num_models", "notes", "run_many_models"]

#: Methods whose per-model cost grows enough to make a large ``N`` slow or memory-hungry, and why.
COST_NOTES = {
    "influence": "costly at large N: per model a CG solve over all parameters (digits: ~0.7 s/model, 10x SSD)",
}

#: The note of the two reference rows.
ROW_NOTES = {
    "original": "N originals vs N references (should be low)",
    "retrain": "ceiling: a 2nd set of N references vs the 1st",
}

_ORIGINAL, _REFERENCE, _CEILING, _METHODS = range(4)  # fold_in constants of the seed's key

#: One optax Adam per learning rate: the trainer compiles once per optimizer object, so seeds share it.
_adam = functools.cache(optax.adam)


class ManyModelsResult(NamedTuple):
    """Result of :func:`run_many_models`.

    ``rows``: one dict per method (``seed``, ``method``, ``forget_score``, ``final_score``,
    ``models_acc_retain_train``, ``models_acc_retain_test`` (means over the ``N`` models) and
    ``models_seconds``, the wall time of the method's vmapped program for all ``N`` models, compilation
    included); ``epsilons``: method -> ``[F]`` per-example ``eps_i`` (numpy float64).
    """

    rows: list[dict[str, Any]]
    epsilons: dict[str, np.ndarray]


def check_num_models(num_models: Any, name: str = "num_models") -> int:
    """``num_models`` as an int; ``ValueError`` naming ``name`` unless it is an integer ``N >= 2`` (the
    epsilon tests compare two samples of models)."""
    n = check_positive_int(num_models, name)
    if n < 2:
        raise ValueError(f"{name} must be at least 2 (the epsilon tests compare two samples of models); got {n}.")
    return n


def notes(method: str) -> str:
    """The note of ``method``'s row: :data:`ROW_NOTES` or :data:`COST_NOTES`, else ``""``."""
    return ROW_NOTES.get(method) or COST_NOTES.get(method, "")


def check_model(name: str) -> None:
    """``ValueError`` unless the classifier ``name`` (:data:`jaxunlearn.models.MODELS`) has parameters only.

    Checked on shapes alone (:func:`jaxunlearn.models.abstract_variables` for 32x32x3 inputs), before any data is
    loaded: the methods bind one set of batch-norm statistics, while each of the ``N`` models has its own.
    """
    shape = (32, 32, 3)
    _check_model(models.build(name, num_classes=10, input_shape=shape), shape)


def _check_model(module: Any, input_shape: tuple[int, ...]) -> None:
    """``ValueError`` for a model with non-parameter collections (batch norm), before any training."""
    collections = set(models.abstract_variables(module, input_shape)) - {"params"}
    if collections:
        raise ValueError(f"many-model runs need a model without batch-norm statistics ({sorted(collections)}); "
                         "choose mlp, lenet, small_cnn, vgg11 or vit.")


def _evaluator(logits_fn: Callable) -> Callable:
    """``evaluate(stacked params, forget x, retain (x, y), test (x, y))`` -> forget logits ``[M, F, C]`` and the
    retain and test accuracies ``[M]``, vmapped over the models and jitted once (call it through
    :func:`jaxunlearn.sharding.map_groups`)."""

    def accuracy(params, x, y):
        def count(chunk, _):
            return jnp.sum(jnp.argmax(logits_fn(params, chunk[0]), axis=-1) == chunk[1])

        return chunked_sum(count, (x, y), min(1024, x.shape[0])) / x.shape[0]

    def one(params, forget_x, retain, test):
        return logits_fn(params, forget_x), accuracy(params, *retain), accuracy(params, *test)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))


def _unlearn_program(unlearner: Any) -> Callable:
    """``program((stacked params, keys), data, request)`` -> unlearned stacked params: ``init`` then ``update`` per
    model (``key`` split into the two), vmapped over params and keys, jitted once (errors keep their class)."""

    def one(models, data, request):
        params, key = models
        k_init, k_update = jax.random.split(key)
        state = unlearner.init(params, data, key=k_init)
        return unlearner.update(params, request, state, key=k_update)[0]

    return keep_errors_jit(jax.vmap(one, in_axes=(0, None, None)))


def run_many_models(
    config: ForgettingConfig,
    seed: int,
    num_models: int,
    *,
    mesh: Any = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ManyModelsResult:
    """The forgetting quality of every method of ``config`` from ``num_models`` models per side (module docstring).

    Args:
      config: the comparison (dataset, model, scenario, methods, training recipe); its ``seeds`` are ignored.
      seed: the seed of the split and of every key.
      num_models: ``N >= 2`` models per side.
      mesh: optional :func:`jaxunlearn.sharding.model_mesh`: the model axis sharded over its devices.
      progress: tqdm bars over the training epochs.
      log: receives one progress line per step.

    Returns:
      :class:`ManyModelsResult` with rows ``"original"``, ``"retrain"`` (the ceiling) and one per method.

    Raises:
      ValueError: ``num_models < 2``, or a model with batch-norm statistics.
    """
    n = check_num_models(num_models)
    train, test = _load(config)
    split = parse_scenario(config.scenario, train, test, seed=seed)
    input_shape = tuple(train.x.shape[1:])
    key = jax.random.key(seed)
    module, template = models.create(config.model_name, num_classes=train.num_classes, input_shape=input_shape,
                                     key=key)
    _check_model(module, input_shape)
    total = n if mesh is None else sharding.padded_count(n, mesh)
    log(f"[seed {seed}] {n} models per side" + (f" on {mesh.devices.size} device(s), {total - n} padding" if mesh
                                                 is not None else "") + f", forget set {split.sizes}")

    def keys(*which: int) -> jax.Array:  # the keys of one or more sets of models, on one model axis
        stacked = jnp.concatenate([sharding.model_keys(jax.random.fold_in(key, w), total) for w in which])
        return stacked if mesh is None else sharding.shard_models(stacked, mesh)

    def train_sets(data, which: tuple[int, ...], desc: str) -> list[Any]:
        """Every set of ``which`` trained in one vmapped run (one compilation), returned set by set."""
        start = time.perf_counter()
        variables, _ = train_classifier_many_seeds(
            module, data, keys(*which), optimizer=_adam(config.learning_rate), num_epochs=config.epochs,
            batch_size=config.batch_size, progress=progress)
        params = jax.block_until_ready(variables["params"])
        log(f"[seed {seed}] trained {len(which)} x {total} {desc} in {time.perf_counter() - start:.1f}s")
        sets = [jax.tree.map(lambda a, i=i: a[i * total:(i + 1) * total], params) for i in range(len(which))]
        return sets if mesh is None else [sharding.shard_models(p, mesh) for p in sets]

    (originals,) = train_sets(train, (_ORIGINAL,), "originals")
    references, ceiling = train_sets(split.retain_train, (_REFERENCE, _CEILING), "references (2 sets)")

    evaluate = _evaluator(models.logits_fn(module, template))
    forget, retain, held_out = split.forget_train, split.retain_train, split.retain_test
    labels = np.asarray(forget.y)
    # models per program on a CPU, sized as the trainer's groups: parameters and two moments (Adam) per model
    group = sharding.group_size(3 * sum(np.asarray(a).nbytes for a in jax.tree.leaves(template["params"])))

    def measure(params) -> tuple[np.ndarray, float, float]:
        logits, retain_acc, test_acc = sharding.to_host(sharding.map_groups(
            evaluate, params, jnp.asarray(forget.x), (jnp.asarray(retain.x), jnp.asarray(retain.y)),
            (jnp.asarray(held_out.x), jnp.asarray(held_out.y)), group_size=group))
        return logits[:n], float(retain_acc[:n].mean()), float(test_acc[:n].mean())

    ref_logits, ref_retain, ref_test = measure(references)
    # the originals (IN) and the second reference set (held-out OUT) of U-LiRA, measured once
    measured = {"original": measure(originals), "retrain": measure(ceiling)}
    orig_logits, ceil_logits = measured["original"][0], measured["retrain"][0]
    ctx = MethodContext(module, template, split, train.num_classes, input_shape, config.epochs,
                        config.batch_size, config.learning_rate, config.method_settings())
    data, request = split.full_train.arrays, jnp.asarray(split.full_train_request)
    rows, epsilons = [], {}
    k_methods = jax.random.fold_in(key, _METHODS)
    for name in resolve_methods(config.methods):
        start = time.perf_counter()
        if name == "original":
            params = originals
        elif name == "retrain":
            params = ceiling
        else:
            program = _unlearn_program(build_method(name, ctx))
            method_keys = sharding.model_keys(method_key(k_methods, name), total, mesh)
            params = jax.block_until_ready(
                sharding.map_groups(program, (originals, method_keys), data, request, group_size=group))
        seconds = time.perf_counter() - start
        logits, retain_acc, test_acc = measured[name] if name in measured else measure(params)
        quality = metrics.forgetting_quality(logits, ref_logits, labels)
        score = float(quality.forget_score)
        rows.append({
            "seed": seed, "method": name, "forget_score": score,
            "final_score": float(metrics.final_score(score, retain_acc, ref_retain, test_acc, ref_test)),
            "models_acc_retain_train": retain_acc, "models_acc_retain_test": test_acc,
            "models_seconds": seconds if name not in ("original", "retrain") else 0.0,
        })
        # U-LiRA (Hayes et al. 2024): the retrain row tells half of the second reference set from the other half
        h = n // 2
        rows[-1].update(metrics.ulira_columns(orig_logits, ref_logits, ceil_logits[:h], ceil_logits[h:], labels)
                        if name == "retrain" else
                        metrics.ulira_columns(orig_logits, ref_logits, logits, ceil_logits, labels))
        epsilons[name] = np.asarray(quality.epsilons, np.float64)
        log(f"[seed {seed}] {name:12s} forget score {score:.3f}  final score {rows[-1]['final_score']:.3f}  "
            f"({seconds:.1f}s for {total} models)")
    return ManyModelsResult(rows, epsilons)
