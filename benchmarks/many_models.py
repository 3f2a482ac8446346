"""Many models in one program: training and unlearning N digits MLPs vmapped against a Python loop over them.

    python benchmarks/many_models.py                 # N = 1, 8, 32, 128
    python benchmarks/many_models.py --quick         # N = 1, 8, 32, 3 epochs
    python benchmarks/many_models.py --group 8       # models per vmapped program (default: sharding.group_size)

Per model: the digits MLP of ``jaxunlearn forget`` (hidden 256, 256) trained with Adam on the whole training
set, then SSD forgets class 3 (``init`` on the full training set, one ``update``), as
:mod:`jaxunlearn.experiments.many_models` does for every method.

* **vmapped**: :func:`jaxunlearn.train.train_many_seeds` for all ``N`` models (the whole run of a group of
  models in one compiled program, compiled once: the timed call compiles nothing), then SSD's ``init`` +
  ``update`` in one jitted ``jax.vmap`` over the stacked params and one key per model, both over groups of
  models (:func:`jaxunlearn.sharding.map_groups`; group size from :func:`jaxunlearn.sharding.group_size`
  unless ``--group``), the model axis sharded over every device (one device on this CPU);
* **loop, compiled once**: for each model, the same per-model programs without ``vmap`` (the whole training
  run, initialisation and every epoch of :func:`jaxunlearn.train.loop.make_epoch` in one ``lax.scan``, and the
  same ``init`` + ``update``), each jitted once and reused: the ratio to this loop is what ``vmap`` itself gains;
* **loop of library calls**: for each model, :func:`jaxunlearn.train.train_classifier` (the same recipe) and the
  same jitted ``init`` + ``update``; ``fit`` traces its epoch anew at each call, so this is what a user's
  Python loop over the library costs.

Every side runs once untimed first (the loops for ``N = 1``), then is timed, on the device printed first. Models per second count the
``N`` models asked for (on several devices ``N`` is padded to a multiple of the device count, and the padding
models are in the time). Ratios: loop time / vmapped time, the same per model, measured in one run. The CPU
columns are the process's CPU seconds per model (all threads): the work each side does, whatever else the
machine runs; the wall-clock ratio adds how well a side spreads over the cores.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from jaxunlearn import models, sharding
from jaxunlearn.data import load_digits
from jaxunlearn.experiments.registry import MethodContext, build_method
from jaxunlearn.experiments.scenario import parse_scenario
from jaxunlearn.train import train_classifier, train_many_seeds
from jaxunlearn.train.loop import (
    _tree_nbytes,
    epoch_order,
    init_train_state,
    make_epoch,
    split_train_key,
)

BATCH_SIZE = 64
LEARNING_RATE = 1e-3


def setup(epochs: int):
    """The training data, the module, ``init_params(key)`` and ``unlearn(params, key)``: SSD's ``init`` +
    ``update`` for one model."""
    train, test = load_digits()
    split = parse_scenario("class:3", train, test, seed=0)
    input_shape = tuple(train.x.shape[1:])
    module, template = models.create("mlp", num_classes=train.num_classes, input_shape=input_shape,
                                     key=jax.random.key(0))
    ctx = MethodContext(module, template, split, train.num_classes, input_shape, epochs, BATCH_SIZE, LEARNING_RATE)
    ssd = build_method("ssd", ctx)
    data, request = split.full_train.arrays, split.full_train_request
    x1 = jnp.asarray(train.x[:1])

    def init_params(key):
        return module.init(key, x1, train=False)["params"]

    def unlearn(params, key):
        k_init, k_update = jax.random.split(key)
        state = ssd.init(params, data, key=k_init)
        return ssd.update(params, request, state, key=k_update)[0]

    return train, module, init_params, unlearn


def vmapped(epochs, train, module, init_params, unlearn, mesh, group):
    """``run(n)``: train ``n`` models vmapped (sharded over ``mesh``), then unlearn them all, group by group."""
    loss_fn, optimizer = models.training_loss(module), optax.adam(LEARNING_RATE)
    program = jax.jit(jax.vmap(lambda models: unlearn(*models)))

    def run(n):
        keys = sharding.model_keys(jax.random.key(1), sharding.padded_count(n, mesh), mesh)
        state, _ = train_many_seeds(loss_fn, optimizer, init_params, (train.x, train.y), keys, batch_size=BATCH_SIZE,
                                    num_epochs=epochs, progress=False, seeds_per_group=group)
        return jax.block_until_ready(sharding.map_groups(program, (state.params, keys), group_size=group))

    return run


def compiled_loop(epochs, train, init_params, module, unlearn_one):
    """``run(n)``: train and unlearn ``n`` models one after the other with per-model programs jitted once (the
    run of :func:`train_many_seeds` for one seed, without ``vmap``; model ``i`` keyed as in :func:`vmapped`)."""
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    optimizer = optax.adam(LEARNING_RATE)
    epoch = make_epoch(models.training_loss(module), optimizer, batch_size=BATCH_SIZE)

    @jax.jit
    def train_one(key):
        init_key, train_key = jax.random.split(key)
        shuffle_key, step_key = split_train_key(train_key)
        state = init_train_state(init_params(init_key), optimizer)
        state, _ = jax.lax.scan(lambda s, e: epoch(s, (x, y), epoch_order(shuffle_key, e, x.shape[0]), step_key),
                                state, jnp.arange(epochs))
        return state.params

    def run(n):
        keys = sharding.model_keys(jax.random.key(1), n)
        return jax.block_until_ready([unlearn_one(train_one(keys[i]), keys[i]) for i in range(n)])

    return run


def library_loop(epochs, train, init_params, module, unlearn_one):
    """``run(n)``: train and unlearn ``n`` models one after the other through :func:`train_classifier`."""

    def run(n):
        out = []
        keys = sharding.model_keys(jax.random.key(1), n)
        for i in range(n):
            k_init, k_train = jax.random.split(keys[i])
            variables, _ = train_classifier(module, {"params": init_params(k_init)}, train,
                                            optimizer=optax.adam(LEARNING_RATE), num_epochs=epochs,
                                            batch_size=BATCH_SIZE, key=k_train, progress=False)
            out.append(unlearn_one(variables["params"], keys[i]))
        return jax.block_until_ready(out)

    return run


def timed(fn):
    """``(wall seconds, process CPU seconds)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 8, 32 and 3 epochs")
    parser.add_argument("--group", type=int, default=None,
                        help="models per device in one vmapped program (default: sharding.group_size)")
    parser.add_argument("--no-library-loop", action="store_true", help="skip the loop of library calls (slow)")
    args = parser.parse_args(argv)
    counts, epochs = ((1, 8, 32), 3) if args.quick else ((1, 8, 32, 128), 10)
    mesh = sharding.model_mesh()
    train, module, init_params, unlearn = setup(epochs)
    one = jax.eval_shape(lambda k: init_train_state(init_params(k), optax.adam(LEARNING_RATE)), jax.random.key(0))
    group = args.group or sharding.group_size(_tree_nbytes((one.params, one.opt_state)))
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()} ({jax.default_backend()}); "
          f"digits MLP 256x256, {epochs} epochs Adam batch {BATCH_SIZE}, then SSD forgets class 3; "
          f"{group or 'all'} models per device per vmapped program")
    unlearn_one = jax.jit(unlearn)
    sides = {"vmapped": vmapped(epochs, train, module, init_params, unlearn, mesh, group),
             "loop": compiled_loop(epochs, train, init_params, module, unlearn_one)}
    if not args.no_library_loop:
        sides["calls"] = library_loop(epochs, train, init_params, module, unlearn_one)
    for name, run in sides.items():
        if name != "vmapped":
            run(1)  # compiles the loops' programs, the same for every N
    print("| N | vmapped, models/s | loop compiled once, models/s | ratio | loop of library calls, models/s | ratio "
          "| CPU s/model: vmapped | loop compiled once |")
    print("|---|---|---|---|---|---|---|---|")
    for n in counts:
        sides["vmapped"](n)  # compiles this N's programs
        t = {name: timed(lambda run=run, n=n: run(n)) for name, run in sides.items()}
        wall = {name: w for name, (w, _) in t.items()}
        calls = (f"{n / wall['calls']:.2f} | {wall['calls'] / wall['vmapped']:.1f}x" if "calls" in wall else "- | -")
        print(f"| {n} | {n / wall['vmapped']:.2f} | {n / wall['loop']:.2f} | {wall['loop'] / wall['vmapped']:.2f}x | "
              f"{calls} | {t['vmapped'][1] / n:.3f} | {t['loop'][1] / n:.3f} |", flush=True)


if __name__ == "__main__":
    main()
