"""One full SSD run and one JiT run on synthetic CIFAR-100 with ResNet-18, at paper scale, through the library API.

    python benchmarks/paper_runs.py                                   # 50,000 / 10,000 examples, 5 epochs
    python benchmarks/paper_runs.py --num-train 300 --num-test 100 --epochs 1 --width 8   # a CPU smoke run
    python benchmarks/paper_runs.py --json results/paper_runs.json

The SSD paper's full-class setting on data of CIFAR-100's shape (:func:`jaxunlearn.data.synthetic_cifar100`,
32x32x3, 100 classes; real CIFAR cannot be downloaded here): a ResNet-18 is trained (Adam 1e-3, batch 128,
``--epochs``), then the class ``rocket`` (69) is forgotten

* by SSD (``methods.ssd``: alpha 10, lambda 1, batch 64, the original's full-class ResNet-18 setting), its
  importances over all training data in the original's order (``ForgetSplit.full_train``);
* by JiT (``methods.lipschitz``: sigma 0.5, eta 3e-4, batch 128, 25 perturbations, train mode: the
  reference's full-class VGG setting, as the reference has none for ResNet-18).

Prints one table: accuracy on the retained and forgotten classes (train and test) of the original and of each
unlearned model, and the wall time of each stage (training; a method's ``init`` and ``update``), compilation
included: the time a user waits. The device name heads it.
"""

from __future__ import annotations

import argparse
import sys
import time


def run(num_train: int, num_test: int, epochs: int, seed: int = 0, sample_batch: int = 5, width: int = 64) -> dict:
    """Train, forget ``rocket`` by SSD and by JiT; returns the accuracies and the stage times."""
    import jax
    import optax

    from jaxunlearn import data, methods, metrics, models, train
    from jaxunlearn.methods.lipschitz import train_mode_apply

    device = jax.devices()[0]
    times = {}
    start = time.perf_counter()
    train_set, test_set = data.synthetic_cifar100(num_train=num_train, num_test=num_test, seed=seed)
    split = data.full_class_split(train_set, test_set, "rocket")
    times["data"] = time.perf_counter() - start

    key_init, key_train, key_ssd, key_jit = jax.random.split(jax.random.key(seed), 4)
    module, variables = models.create("resnet18", num_classes=100, input_shape=(32, 32, 3), key=key_init,
                                      stage_widths=tuple(width * m for m in (1, 2, 4, 8)))
    start = time.perf_counter()
    variables, history = train.train_classifier(module, variables, train_set, optimizer=optax.adam(1e-3),
                                                num_epochs=epochs, batch_size=128, key=key_train, progress=False)
    jax.block_until_ready(variables)
    times["train"] = time.perf_counter() - start
    logits_fn = models.logits_fn(module, variables)
    rows = {"original": metrics.split_accuracies(logits_fn, variables["params"], split)}

    full_train, request = split.full_train.arrays, split.full_train_request
    unlearners = {
        "ssd": methods.ssd(models.classifier_loss(module, variables), alpha=10.0, lambda_=1.0, batch_size=64),
        "jit": methods.lipschitz(train_mode_apply(module, variables), sigma=0.5, eta=3e-4, num_samples=25,
                                 batch_size=128, sample_batch=sample_batch),
    }
    for (name, unlearner), key in zip(unlearners.items(), (key_ssd, key_jit)):
        k_init, k_update = jax.random.split(key)
        start = time.perf_counter()
        state = unlearner.init(variables["params"], full_train, key=k_init)
        jax.block_until_ready(state)
        times[f"{name} init"] = time.perf_counter() - start
        start = time.perf_counter()
        params, _, _ = unlearner.update(variables["params"], request, state, key=k_update)
        jax.block_until_ready(params)
        times[f"{name} update"] = time.perf_counter() - start
        rows[name] = metrics.split_accuracies(logits_fn, params, split)
    return {"device": f"{device.platform}: {device.device_kind}", "width": width, "num_train": num_train,
            "num_test": num_test,
            "epochs": epochs, "train_loss": [float(v) for v in history["loss"]], "accuracy": rows, "seconds": times,
            "forget": {"class": "rocket (69)", **split.sizes}}


def table(result: dict) -> str:
    acc, sec = result["accuracy"], result["seconds"]
    lines = [
        (f"ResNet-18 (widths {result['width']}-{8 * result['width']}) on synthetic CIFAR-100 "
         f"({result['num_train']} train / {result['num_test']} test), "
         f"forget {result['forget']['class']}: {result['forget']['forget_train']} train examples, device "
         f"{result['device']}"),
        (f"training: {result['epochs']} epochs in {sec['train']:.1f} s, loss "
         + " -> ".join(f"{v:.3f}" for v in result["train_loss"])),
        "| model | Dr train | Df train | Dr test | Df test | init s | update s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in acc.items():
        init = f"{sec[name + ' init']:.1f}" if name != "original" else "–"
        update = f"{sec[name + ' update']:.1f}" if name != "original" else "–"
        lines.append(f"| {name} | {a['retain_train']:.3f} | {a['forget_train']:.3f} | {a['retain_test']:.3f} | "
                     f"{a['forget_test']:.3f} | {init} | {update} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--num-train", type=int, default=50000, help="training examples (default 50000)")
    parser.add_argument("--num-test", type=int, default=10000, help="test examples (default 10000)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of the original (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-batch", type=int, default=5,
                        help="JiT: perturbed forwards evaluated at once (memory bound; default 5)")
    parser.add_argument("--width", type=int, default=64,
                        help="ResNet-18 stage widths (W, 2W, 4W, 8W); 64 is ResNet-18, 8 a cheap smoke model")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    if min(args.num_train, args.num_test, args.epochs, args.sample_batch, args.width) < 1 or args.num_train < 100:
        parser.error("--num-train (>= 100: one example of every class), --num-test, --epochs, --sample-batch and "
                     "--width must be positive.")
    result = run(args.num_train, args.num_test, args.epochs, args.seed, args.sample_batch, args.width)
    print(table(result))
    if args.json:
        from jaxunlearn.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
