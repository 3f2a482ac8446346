"""Many models in one program: training and unlearning N digits MLPs vmapped against a Python loop over them.

    python benchmarks/many_models.py            # N = 1, 8, 32, 128
    python benchmarks/many_models.py --quick    # N = 1, 8, 32, fewer epochs

Per model: the digits MLP of ``jaxunlearn forget`` (hidden 256, 256) trained with Adam on the whole training
set, then SSD forgets class 3 (``init`` on the full training set, one ``update``), as
:mod:`jaxunlearn.experiments.many_models` does for every method.

* **vmapped**: :func:`jaxunlearn.train.train_classifier_many_seeds` for all ``N`` models, then one jitted
  ``jax.vmap`` of SSD's ``init`` + ``update`` over the stacked params and one key per model, the model axis
  sharded over every device (:mod:`jaxunlearn.sharding`; one device on this CPU);
* **loop, compiled once**: for each model, the same per-model programs without ``vmap`` (the initialisation,
  the epoch of :func:`jaxunlearn.train.loop.make_epoch` that ``train_many_seeds`` vmaps, and the same
  ``init`` + ``update``), each jitted once and reused: the ratio to this loop is what ``vmap`` itself gains;
* **loop of library calls**: for each model, :func:`jaxunlearn.train.train_classifier` (the same recipe) and the
  same jitted ``init`` + ``update``; ``fit`` traces its epoch anew at each call, so this is what a user's
  Python loop over the library costs.

Every side runs once untimed first, then is timed, on the device printed first. The vmapped side still
compiles its training epoch in the timed call (``train_many_seeds`` jits a fresh epoch function per call, about
1.5 s on this CPU), so its times include that and its ratios are conservative. Models per second count the
``N`` models asked for (on several devices ``N`` is padded to a multiple of the device count, and the padding
models are in the time). Ratios: loop time / vmapped time, the same per model, measured in one run.
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
from jaxunlearn.train import train_classifier, train_classifier_many_seeds
from jaxunlearn.train.loop import (
    epoch_order,
    init_train_state,
    make_epoch,
    split_train_key,
)

BATCH_SIZE = 64
LEARNING_RATE = 1e-3


def setup(epochs: int):
    """The training data, the module and ``unlearn(params, key)``: SSD's ``init`` + ``update`` for one model."""
    train, test = load_digits()
    split = parse_scenario("class:3", train, test, seed=0)
    input_shape = tuple(train.x.shape[1:])
    module, template = models.create("mlp", num_classes=train.num_classes, input_shape=input_shape,
                                     key=jax.random.key(0))
    ctx = MethodContext(module, template, split, train.num_classes, input_shape, epochs, BATCH_SIZE, LEARNING_RATE)
    ssd = build_method("ssd", ctx)
    data, request = split.full_train.arrays, split.full_train_request

    def unlearn(params, key):
        k_init, k_update = jax.random.split(key)
        state = ssd.init(params, data, key=k_init)
        return ssd.update(params, request, state, key=k_update)[0]

    return train, module, unlearn


def run_vmapped(n, epochs, train, module, program, mesh):
    """Train ``n`` models vmapped (sharded over ``mesh``), then unlearn them all with ``program``."""
    keys = sharding.model_keys(jax.random.key(1), sharding.padded_count(n, mesh), mesh)
    variables, _ = train_classifier_many_seeds(module, train, keys, optimizer=optax.adam(LEARNING_RATE),
                                               num_epochs=epochs, batch_size=BATCH_SIZE, progress=False)
    return jax.block_until_ready(program(variables["params"], keys))


def run_loop(n, epochs, train, module, unlearn_one):
    """Train and unlearn ``n`` models one after the other (model ``i`` keyed as in :func:`run_vmapped`)."""
    out = []
    for i in range(n):
        key = jax.random.fold_in(jax.random.key(1), i)
        k_init, k_train = jax.random.split(key)
        _, variables = models.create("mlp", num_classes=train.num_classes, input_shape=tuple(train.x.shape[1:]),
                                     key=k_init)
        variables, _ = train_classifier(module, variables, train, optimizer=optax.adam(LEARNING_RATE),
                                        num_epochs=epochs, batch_size=BATCH_SIZE, key=k_train, progress=False)
        out.append(unlearn_one(variables["params"], key))
    return jax.block_until_ready(out)


def compiled_loop(epochs, train, module, unlearn_one):
    """``run(n)``: train and unlearn ``n`` models one after the other with per-model programs jitted once
    (the steps of ``train_many_seeds`` for one seed, without ``vmap``; model ``i`` keyed as in :func:`run_vmapped`)."""
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    optimizer = optax.adam(LEARNING_RATE)

    @jax.jit
    def init_one(key):
        init_key, train_key = jax.random.split(key)
        params = module.init(init_key, x[:1], train=False)["params"]
        return init_train_state(params, optimizer), *split_train_key(train_key)

    epoch = jax.jit(make_epoch(models.training_loss(module), optimizer, batch_size=BATCH_SIZE))
    order = jax.jit(lambda key, e: epoch_order(key, e, x.shape[0]))

    def run(n):
        out = []
        for i in range(n):
            key = jax.random.fold_in(jax.random.key(1), i)
            state, shuffle_key, step_key = init_one(key)
            for e in range(epochs):
                state, _ = epoch(state, (x, y), order(shuffle_key, e), step_key)
            out.append(unlearn_one(state.params, key))
        return jax.block_until_ready(out)

    return run


def timed(fn):
    """Wall seconds of ``fn()``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 8, 32 and 3 epochs")
    args = parser.parse_args(argv)
    counts, epochs = ((1, 8, 32), 3) if args.quick else ((1, 8, 32, 128), 10)
    mesh = sharding.model_mesh()
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()} ({jax.default_backend()}); "
          f"digits MLP 256x256, {epochs} epochs Adam batch {BATCH_SIZE}, then SSD forgets class 3")
    train, module, unlearn = setup(epochs)
    program = jax.jit(jax.vmap(unlearn))
    unlearn_one = jax.jit(unlearn)
    loop = compiled_loop(epochs, train, module, unlearn_one)
    loop(1)  # compiles the loops' programs once
    run_loop(1, epochs, train, module, unlearn_one)
    print("| N | vmapped, models/s | loop compiled once, models/s | ratio | loop of library calls, models/s | ratio |")
    print("|---|---|---|---|---|---|")
    for n in counts:
        run_vmapped(n, epochs, train, module, program, mesh)  # compiles this N's programs
        t_vmap = timed(lambda n=n: run_vmapped(n, epochs, train, module, program, mesh))
        t_loop = timed(lambda n=n: loop(n))
        t_calls = timed(lambda n=n: run_loop(n, epochs, train, module, unlearn_one))
        print(f"| {n} | {n / t_vmap:.2f} | {n / t_loop:.2f} | {t_loop / t_vmap:.1f}x | {n / t_calls:.2f} | "
              f"{t_calls / t_vmap:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
