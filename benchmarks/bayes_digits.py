"""Bayesian forgetting of a growing number of one class's samples: a Bayesian network on digits.

The BIF paper's Fashion-MNIST figure (Fu et al. 2021, arXiv 2101.06417), on scikit-learn's 8x8 digits so it runs on a CPU: remove ``k``
samples of class 0 (a fixed random order, in chunks of ``rm_bs``) from a
variational network (VI forgetting) and from SGLD / SGHMC chains (MCMC
forgetting), for growing ``k``; compare the *processed* model with the
*target* (retrained without those ``k`` samples) and the *origin* (``k = 0``).

Reported per method and ``k``: error on the forgotten samples (S_f), the
remaining training samples (S_r) and the test set; the confidence-threshold
membership attack of the ICLR'22 paper (fraction of S_f judged non-member,
:func:`jaxunlearn.metrics.confidence_mia`); the L1 prediction difference to
the target on the test set (:func:`jaxunlearn.metrics.prediction_l1`); and the
wall time of forgetting against retraining (both after compilation). As in the
ICLR'22 evaluation, the chains take one sampler step on the remaining data
before being evaluated; the variational network is evaluated with one
stochastic pass, as the originals do.

The originals' settings (Fashion-MNIST, 60000 points) are kept where they
scale (``lr / N``, decay schedules, prior std, ``scaling0``, ``iter_T``,
``samp_T``, ``bbp_T``, batch 128); ``rm_bs`` is 16 instead of 64 since digits
has ~140 training samples per class.

    python benchmarks/bayes_digits.py --quick      # MLP, 2000-step chains, samp_T 2, bbp_T 2, k in 48/96/128
    python benchmarks/bayes_digits.py              # LeNet, the originals' step counts

Writes ``digits_errors.png`` (errors against the number removed, one panel per
method) and ``bayes_digits.json`` into ``--out`` (atomically).
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import bayes, metrics
from jaxunlearn.data import load_dataset, load_digits
from jaxunlearn.io import atomic_write_json, save_figure
from jaxunlearn.methods.mcmc_forgetting import mcmc_forgetting
from jaxunlearn.methods.vi_forgetting import vi_forgetting
from jaxunlearn.models import bayesian

# the BIF Fashion-MNIST settings; lr is divided by N below
FULL = {
    "vi": dict(lr=0.5, steps=10000, decay_every=4000, prior=0.15, scaling0=0.1, iter_T=64, bbp_T=5),
    "sgld": dict(lr=0.5, steps=10000, decay=-0.5, prior=0.15, scaling0=0.005, iter_T=64, samp_T=5),
    "sghmc": dict(lr=0.5, steps=10000, decay=-0.5, alpha=0.4, prior=0.15, scaling0=0.05, iter_T=64, samp_T=5),
}
QUICK = {"steps": 2000, "decay_every": 800, "samp_T": 2, "bbp_T": 2}
BATCH, RM_BS = 128, 16


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


class Setup:
    """Jitted training, forgetting and prediction functions of one method (compiled once)."""

    def __init__(self, method, cfg, data, model_name):
        self.method, self.cfg, self.data = method, cfg, data
        n = data[0].shape[0]
        variational = method == "vi"
        if model_name == "lenet":
            self.module = bayesian.BayesLeNet(10, variational=variational, padding="SAME")
        else:
            self.module = bayesian.BayesMLP(10, hidden=(100,), variational=variational)
        self.logits = bayesian.stochastic_logits_fn(self.module)
        lr = cfg["lr"] / n
        if variational:
            self.energy = bayes.vbnn_energy(self.logits, cfg["prior"])
            sched = optax.exponential_decay(lr, cfg["decay_every"], 0.1, staircase=True)
            self.train = jax.jit(lambda p, k, alive: bayes.fit_vi(
                self.energy, p, data, optimizer=optax.sgd(sched), num_steps=cfg["steps"], batch_size=BATCH,
                key=k, alive=alive).params)
            self.forgetter = vi_forgetting(self.energy, scaling0=cfg["scaling0"], iter_T=cfg["iter_T"],
                                           batch_size=BATCH, bbp_T=cfg["bbp_T"])
        else:
            self.energy = bayes.bnn_energy(lambda p, x: self.module.apply({"params": p}, x), cfg["prior"])
            self.sampler = (bayes.sgld(self.energy.energy) if method == "sgld"
                            else bayes.sghmc(self.energy.energy, alpha=cfg["alpha"]))
            self.schedule = bayes.power_decay(cfg["decay"])
            self.decay = float(self.schedule(cfg["steps"]))  # the chain continues at its final step size
            self.train = jax.jit(lambda st, k, alive: bayes.run_chain(
                self.sampler, k, st, data, lr=lr, num_steps=cfg["steps"], batch_size=BATCH,
                schedule=self.schedule, alive=alive)[0])
            self.forgetter = mcmc_forgetting(self.energy, self.sampler, lr=lr, decay=self.decay,
                                             scaling0=cfg["scaling0"], iter_T=cfg["iter_T"], samp_T=cfg["samp_T"],
                                             batch_size=BATCH)
            self.one_step = jax.jit(lambda st, k, alive, eta: bayes.run_chain(
                self.sampler, k, st, data, lr=eta, num_steps=1, batch_size=BATCH, alive=alive)[0].position)
        self.lr = lr
        self.update = self.forgetter.update  # jitted once, when the forgetter was built
        self.probs = jax.jit(lambda p, x, k: jax.nn.softmax(self.logits(p, x, k)))

    def init_params(self, key):
        x0 = self.data[0][:1]
        params = jax.jit(lambda k: self.module.init({"params": k, "bbp": k}, x0)["params"])(key)
        return params if self.method == "vi" else self.sampler.init(params)

    def params_of(self, trained):
        return trained if self.method == "vi" else trained.position


def _evaluate(setup, params, key, splits, target_probs=None):
    """Errors (%), MIA and L1 difference; ``params`` already one sampler step ahead for the chains."""
    fixed_key = key

    def logits_fn(p, x):
        return setup.logits(p, x, fixed_key)

    out = {}
    for name, (x, y) in splits.items():
        pr = setup.probs(params, x, key)
        out[f"err_{name}"] = 100.0 * float(jnp.mean(jnp.argmax(pr, 1) != y))
        if name == "test":
            test_probs = pr
    mia = metrics.confidence_mia(logits_fn, params, splits["remain"], splits["test"], splits["forget"])
    out["mia"] = 100.0 * mia["forget_nonmember_fraction"]
    out["l1_test"] = float(metrics.prediction_l1(test_probs, target_probs)) if target_probs is not None else 0.0
    return out, test_probs


def run(method, cfg, train, test, sizes, model_name, seed):
    data = (jnp.asarray(train.x), jnp.asarray(train.y))
    setup = Setup(method, cfg, data, model_name)
    n = data[0].shape[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.flatnonzero(train.y == 0))
    key = jax.random.key(seed)
    k_init, k_o, k_f, k_e = jax.random.split(key, 4)
    init = setup.init_params(k_init)
    everyone = jnp.ones(n, bool)
    origin, _ = _timed(setup.train, init, k_o, everyone)
    if method == "vi":
        state = setup.forgetter.init(origin, data, key=k_f)
    else:
        state = setup.forgetter.init(origin.position, data, key=k_f, sampler_state=origin)
    params = setup.params_of(origin)
    setup.update(params, jnp.asarray(order[:RM_BS], jnp.int32), state, key=k_f)  # compile
    setup.train(init, k_e, everyone)  # compile the retraining too (same shapes)
    rows, removed, t_forget_total = [], 0, 0.0
    for k_removed in sizes:
        for start in range(removed, k_removed, RM_BS):
            chunk = jnp.asarray(order[start:start + RM_BS], jnp.int32)
            (params, state, _), t = _timed(functools.partial(setup.update, key=jax.random.fold_in(k_f, start)),
                                           params, chunk, state)
            t_forget_total += t
        removed = k_removed
        alive = np.ones(n, bool)
        alive[order[:k_removed]] = False
        target, t_retrain = _timed(setup.train, init, jax.random.fold_in(k_o, k_removed), jnp.asarray(alive))
        splits = {"forget": (data[0][order[:k_removed]], data[1][order[:k_removed]]),
                  "remain": (data[0][alive], data[1][alive]), "test": (jnp.asarray(test.x), jnp.asarray(test.y))}
        k_eval = jax.random.fold_in(k_e, k_removed)
        models = {"origin": setup.params_of(origin), "processed": params, "target": setup.params_of(target)}
        if method != "vi":  # one sampler step on the remaining data before evaluating (ICLR'22)
            chains = {"origin": (origin, everyone), "processed": (state.sampler, jnp.asarray(alive)),
                      "target": (target, jnp.asarray(alive))}
            eta = state.lr * setup.decay
            models = {name: setup.one_step(st, k_eval, al, eta) for name, (st, al) in chains.items()}
        target_eval, target_probs = _evaluate(setup, models["target"], k_eval, splits)
        row = {"k": k_removed, "time_forget_cum": t_forget_total, "time_retrain": t_retrain, "target": target_eval}
        for name in ("origin", "processed"):
            row[name] = _evaluate(setup, models[name], k_eval, splits, target_probs)[0]
        rows.append(row)
    return rows


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    fig, axes = plt.subplots(1, len(methods), figsize=(4.6 * len(methods), 3.8), squeeze=False)
    for ax, method in zip(axes[0], methods):
        rows = results[method]
        ks = [r["k"] for r in rows]
        for split, colour in (("forget", "tab:red"), ("remain", "tab:blue"), ("test", "tab:green")):
            for model, style in (("processed", "-o"), ("target", "--s"), ("origin", ":x")):
                ax.plot(ks, [r[model][f"err_{split}"] for r in rows], style, color=colour, ms=4,
                        label=f"{model} S_{split[0] if split != 'test' else 'test'}")
        ax.set_title(method.upper())
        ax.set_xlabel("number of class-0 samples removed")
        ax.set_ylabel("error (%)")
    axes[0][0].legend(fontsize=6, ncol=3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/")
    parser.add_argument("--quick", action="store_true", help="MLP, 2000-step chains, samp_T 2, bbp_T 2")
    parser.add_argument("--methods", nargs="+", default=["vi", "sgld", "sghmc"], choices=["vi", "sgld", "sghmc"])
    parser.add_argument("--model", choices=["lenet", "mlp"], default=None, help="default lenet (quick: mlp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=["digits", "fashion_mnist"], default="digits",
                        help="fashion_mnist reads prepared tensorflow-datasets data from --data-dir (LeNet at 32x32)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets folder for --dataset fashion_mnist")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    model_name = args.model or ("mlp" if args.quick else "lenet")
    if args.dataset == "digits":
        train, test = load_digits()
        sizes = (48, 96, 128) if args.quick else (16, 32, 64, 96, 128)
    else:  # the BIF experiment: 1k..6k T-shirts (class 0; 6,000 is the whole class)
        train, test = load_dataset("fashion_mnist", data_dir=args.data_dir)
        sizes = (1000, 3000, 6000) if args.quick else (1000, 2000, 3000, 4000, 5000, 6000)
    results = {}
    for method in args.methods:
        cfg = dict(FULL[method], **(QUICK if args.quick else {}))
        rows = run(method, cfg, train, test, sizes, model_name, args.seed)
        results[method] = rows
        print(f"\n== {method.upper()} ({model_name}, seed {args.seed}; errors in %, MIA = % of S_f judged non-member)")
        print(f"{'k':>4} {'model':<10} {'err S_f':>8} {'err S_r':>8} {'err test':>9} {'MIA':>6} {'L1 test':>8}")
        for r in rows:
            for name in ("origin", "processed", "target"):
                e = r[name]
                print(f"{r['k']:>4} {name:<10} {e['err_forget']:>8.1f} {e['err_remain']:>8.1f} {e['err_test']:>9.1f} "
                      f"{e['mia']:>6.1f} {e['l1_test']:>8.3f}")
            print(f"{'':>4} time (s): forget so far {r['time_forget_cum']:.2f}, retrain {r['time_retrain']:.2f}")
    _plot(results, os.path.join(args.out, "digits_errors.png"))
    atomic_write_json(os.path.join(args.out, "bayes_digits.json"), results)


if __name__ == "__main__":
    main()
