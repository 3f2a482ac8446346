"""Bayesian forgetting on the papers' synthetic 2-D Gaussian mixture: VI, SGLD and SGHMC.

Fu et al. 2021 (BIF) and Fu et al. ICLR 2022 (their GMM experiment): 2000 points from 4 clusters, 800 removed (the right edge of cluster 0
and the bottom of cluster 2) in chunks of ``rm_bs`` points. For each method
and seed we train the *origin* on all data, the *target* on the remaining
data (same initialisation), and process the origin with the forgetting
method; for the samplers also the importance-sampling baseline (the same
number of further sampler steps per chunk as forgetting takes, with no
influence correction: what continued sampling alone achieves).

VI training: the originals' plain SGD (``--vi-optimizer sgd``: lr 2/2000, batch
64, 2000 steps) stops short of the optimum (minibatch noise on the
``n``-scaled gradient); an influence step assumes an optimum, and from those
fits the processed centres move only about 40 % of the way to the target.
The default trains to convergence (Adam, cosine decay to zero, batch 512,
3000 steps), where VI forgetting lands on the target.

The "target" row compares a second, independently seeded retraining with the
first: the run-to-run floor of each metric. Metrics against the target: cluster-centre distance (mean Euclidean distance
after matching clusters), KL to the target (exact Gaussian KL between the
variational posteriors for VI; the 1-NN estimator of
:func:`jaxunlearn.metrics.knn_kl_divergence` on ``--samples`` consecutive
chain states for SGLD/SGHMC, as the ICLR'22 evaluation does), mean
log-likelihood on the remaining (D_r) and removed (D_f) points, and the wall
time of forgetting against retraining (both after compilation).

    python benchmarks/bayes_gmm.py --quick          # about a minute per method on a laptop CPU
    python benchmarks/bayes_gmm.py                  # the originals' settings, 5 seeds

Prints one table per method and writes ``gmm_<method>.png`` (seed 0's centres)
and ``bayes_gmm.json`` into ``--out`` (atomically).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn import bayes, metrics
from jaxunlearn.data import gmm2d_removal_indices, make_gmm2d
from jaxunlearn.io import atomic_write_json, save_figure
from jaxunlearn.methods.mcmc_forgetting import importance_sampling, mcmc_forgetting
from jaxunlearn.methods.vi_forgetting import vi_forgetting
from jaxunlearn.models import gmm

K = 4
# the originals' settings (the BIF GMM experiment)
FULL = {
    "vi": dict(lr=2 / 2000, steps=2000, batch=64, scaling0=1.0, iter_T=32, rm_bs=4, optimizer="adam"),
    "sgld": dict(lr=4 / 2000, decay=-0.15, steps=2000, batch=64, scaling0=1.0, iter_T=32, samp_T=5, rm_bs=4),
    "sghmc": dict(lr=2 / 2000, decay=-0.15, alpha=0.4, steps=2000, batch=64, scaling0=1.0, iter_T=32, samp_T=5,
                  rm_bs=4),
}
QUICK = {  # VI's recursion is cheap, so it keeps smaller chunks; the samplers' steps dominate their cost
    "vi": {"rm_bs": 8},
    "sgld": {"rm_bs": 40, "iter_T": 16, "samp_T": 2},
    "sghmc": {"rm_bs": 40, "iter_T": 16, "samp_T": 2},
}


def _match(centres: np.ndarray, reference: np.ndarray) -> tuple[tuple[int, ...], float]:
    """Cluster permutation minimising the mean distance to ``reference``, and that distance."""
    best = min(itertools.permutations(range(K)),
               key=lambda p: np.linalg.norm(centres[list(p)] - reference, axis=1).mean())
    return best, float(np.linalg.norm(centres[list(best)] - reference, axis=1).mean())


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def _forget_all(update, params, state, chunks, key):
    for i, c in enumerate(chunks):
        params, state, _ = update(params, c, state, key=jax.random.fold_in(key, i))
    return params, state


def _gauss_kl(p, q) -> float:
    """KL(q_p || q_q) between the diagonal-Gaussian variational posteriors."""
    sp, sq = gmm.vgmm_std(p), gmm.vgmm_std(q)
    return float(jnp.sum(jnp.log(sq / sp) + (sp**2 + (p["m"] - q["m"]) ** 2) / (2 * sq**2) - 0.5))


def make_vi(x, cfg):
    """Jitted training and forgetting functions, built once per method (compiled once for all seeds)."""
    energy = bayes.vgmm_energy(prior_std=1.0)
    if cfg["optimizer"] == "sgd":  # the originals: plain SGD, lr 2/2000, batch 64, 2000 steps
        optimizer, steps, batch = optax.sgd(cfg["lr"]), cfg["steps"], cfg["batch"]
    else:  # converged fits: Adam with a cosine decay to zero, larger batches
        optimizer, steps, batch = optax.adam(optax.cosine_decay_schedule(1e-2, 3000)), 3000, 512
    train = jax.jit(lambda p, k, alive: bayes.fit_vi(energy, p, x, optimizer=optimizer, num_steps=steps,
                                                      batch_size=batch, key=k, alive=alive).params)
    forgetter = vi_forgetting(energy, scaling0=cfg["scaling0"], iter_T=cfg["iter_T"], batch_size=cfg["batch"],
                              bbp_T=1)
    return train, forgetter


def run_vi(x, rm, alive_r, cfg, seed, fns):
    train, forgetter = fns
    update = forgetter.update  # jitted once, when the forgetter was built
    key = jax.random.key(seed)
    k_init, k_o, k_t, k_f = jax.random.split(key, 4)
    init_idx = np.random.default_rng(seed).choice(np.flatnonzero(np.asarray(alive_r)), K, replace=False)
    init = {"m": x[init_idx], "rho": jnp.full((K, 2), np.log(np.expm1(0.05)), jnp.float32)}
    origin = train(init, k_o, jnp.ones(x.shape[0], bool))
    train(init, k_f, alive_r)  # compile
    target, t_retrain = _timed(train, init, k_t, alive_r)
    target_again = train(init, k_init, alive_r)  # a second retraining: the run-to-run floor
    chunks = [jnp.asarray(c, jnp.int32) for c in np.asarray(rm).reshape(-1, cfg["rm_bs"])]
    state = forgetter.init(origin, x, key=k_f)
    update(origin, chunks[0], state, key=k_f)  # compile
    (processed, _), t_forget = _timed(_forget_all, update, origin, state, chunks, k_f)
    alive_f = ~alive_r
    out = {}
    for name, p in (("origin", origin), ("processed", processed), ("target", target_again)):
        perm, dist = _match(np.asarray(p["m"]), np.asarray(target["m"]))
        aligned = jax.tree.map(lambda a: a[jnp.asarray(perm)], p)
        out[name] = {
            "centres": np.asarray(aligned["m"]), "centre_dist": dist, "kl": _gauss_kl(aligned, target),
            "ll_r": -float(jnp.mean(gmm.vgmm_data_term(p, x[alive_r]))),
            "ll_f": -float(jnp.mean(gmm.vgmm_data_term(p, x[alive_f]))),
        }
    out["time"] = {"forget": t_forget, "retrain": t_retrain}
    return out


def make_mcmc(kind, x, cfg, num_samples, is_steps):
    """Jitted chain, draw and forgetting functions, built once per method (compiled once for all seeds)."""
    energy = bayes.gmm_energy(prior_std=1.0)
    sampler = bayes.sgld(energy.energy) if kind == "sgld" else bayes.sghmc(energy.energy, alpha=cfg["alpha"])
    schedule = bayes.power_decay(cfg["decay"])
    decay = float(schedule(cfg["steps"]))  # the sampler continues at its final step size (count = steps)
    train = jax.jit(lambda st, k, alive: bayes.run_chain(sampler, k, st, x, lr=cfg["lr"], num_steps=cfg["steps"],
                                                          batch_size=cfg["batch"], schedule=schedule,
                                                          alive=alive)[0])

    @jax.jit
    def draw(st, k, alive):  # consecutive chain states for the KL estimate and the centre estimate
        return bayes.run_chain(sampler, k, st, x, lr=cfg["lr"] * decay, num_steps=num_samples,
                               batch_size=cfg["batch"], alive=alive, record=True)[1].positions

    methods = {
        "processed": mcmc_forgetting(energy, sampler, lr=cfg["lr"], decay=decay, scaling0=cfg["scaling0"],
                                     iter_T=cfg["iter_T"], samp_T=cfg["samp_T"], batch_size=cfg["batch"],
                                     rescale_step_size=False),
        "importance": importance_sampling(sampler, lr=cfg["lr"], decay=decay, num_steps=is_steps,
                                          batch_size=cfg["batch"], rescale_step_size=False),
    }
    return sampler, train, draw, methods


def run_mcmc(x, rm, alive_r, cfg, seed, num_samples, fns):
    sampler, train, draw, runs = fns
    key = jax.random.key(seed)
    k_o, k_t, k_f, k_s, k_w = jax.random.split(key, 5)
    init_idx = np.random.default_rng(seed).choice(np.flatnonzero(np.asarray(alive_r)), K, replace=False)
    init = sampler.init(x[init_idx])
    origin = train(init, k_o, jnp.ones(x.shape[0], bool))
    train(init, k_w, alive_r)  # compile
    target, t_retrain = _timed(train, init, k_t, alive_r)

    chunks = [jnp.asarray(c, jnp.int32) for c in np.asarray(rm).reshape(-1, cfg["rm_bs"])]
    results, times = {}, {"retrain": t_retrain}
    final = {}
    for name, method in runs.items():
        state = method.init(origin.position, x, key=k_f, sampler_state=origin)
        method.update(origin.position, chunks[0], state, key=k_f)  # compile (once per method, reused by seeds)
        (_, state), t = _timed(_forget_all, method.update, origin.position, state, chunks, k_f)
        final[name], times["forget" if name == "processed" else name] = state.sampler, t
    target_samples = draw(target, k_s, alive_r)
    target_again = draw(target, k_w, alive_r)  # an independent stretch: the estimator's floor
    target_centres = np.asarray(target_samples.mean(0))
    chains = {"origin": (origin, jnp.ones(x.shape[0], bool)), "processed": (final["processed"], alive_r),
              "importance": (final["importance"], alive_r), "target": (target, alive_r)}
    for name, (st, alive) in chains.items():
        samples = target_again if name == "target" else draw(st, k_s, alive)
        perm, dist = _match(np.asarray(samples.mean(0)), target_centres)
        aligned = samples[:, jnp.asarray(perm)]
        loglik = jax.vmap(lambda m, pts: -jnp.mean(gmm.gmm_neg_log_likelihood(m, pts)), in_axes=(0, None))
        results[name] = {
            "centres": np.asarray(aligned.mean(0)), "centre_dist": dist,
            "kl": float(metrics.knn_kl_divergence(aligned.reshape(num_samples, -1),
                                                  target_samples.reshape(num_samples, -1))),
            "ll_r": float(loglik(samples, x[alive_r]).mean()), "ll_f": float(loglik(samples, x[~alive_r]).mean()),
        }
    results["time"] = times
    return results


def _plot(method, x, alive_r, res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    x = np.asarray(x)
    ax.scatter(*x[np.asarray(alive_r)].T, s=3, c="0.75", label="remaining")
    ax.scatter(*x[~np.asarray(alive_r)].T, s=3, c="#f4a3a3", label="removed")
    style = {"origin": ("x", "tab:blue"), "target": ("o", "tab:green"), "processed": ("+", "tab:red"),
             "importance": ("^", "tab:purple")}
    for name, (marker, colour) in style.items():
        if name in res:
            colours = {"facecolors": "none", "edgecolors": colour} if marker in "o^" else {"c": colour}
            ax.scatter(*res[name]["centres"].T, marker=marker, s=90, label=name, **colours)
    ax.set_title(f"GMM forgetting, {method.upper()}: cluster centres")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/")
    parser.add_argument("--quick", action="store_true", help="larger chunks, shorter recursions, 2 seeds")
    parser.add_argument("--methods", nargs="+", default=["vi", "sgld", "sghmc"], choices=["vi", "sgld", "sghmc"])
    parser.add_argument("--vi-optimizer", choices=["adam", "sgd"], default="adam",
                        help="VI training: 'sgd' = the originals' (stops short of the optimum), 'adam' = converged")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, quick 2)")
    parser.add_argument("--samples", type=int, default=None, help="chain states per KL estimate (100)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    seeds = args.seeds or (2 if args.quick else 5)
    num_samples = args.samples or 100
    data = make_gmm2d()
    x = jnp.asarray(data.dataset.x)
    summary: dict[str, Any] = {}
    for method in args.methods:
        cfg = dict(FULL[method], **(QUICK[method] if args.quick else {}))
        if method == "vi":
            cfg["optimizer"] = args.vi_optimizer
        steps_per_chunk = cfg.get("samp_T", 1) * (1 + cfg["iter_T"])
        rows = []
        fns = make_vi(x, cfg) if method == "vi" else make_mcmc(method, x, cfg, num_samples, steps_per_chunk)
        for seed in range(seeds):
            rm = gmm2d_removal_indices(data.dataset, seed=seed)
            alive_r = jnp.ones(x.shape[0], bool).at[jnp.asarray(rm)].set(False)
            if method == "vi":
                res = run_vi(x, rm, alive_r, cfg, seed, fns)
            else:
                res = run_mcmc(x, rm, alive_r, cfg, seed, num_samples, fns)
            rows.append(res)
            if seed == 0:
                _plot(method, x, alive_r, res, os.path.join(args.out, f"gmm_{method}.png"))
        names = [n for n in ("origin", "processed", "importance", "target") if n in rows[0]]
        print(f"\n== {method.upper()}  ({seeds} seeds, rm_bs={cfg['rm_bs']}, iter_T={cfg['iter_T']}"
              + (f", samp_T={cfg['samp_T']}" if "samp_T" in cfg else "") + ")")
        kl_name = "KL(.||target) exact" if method == "vi" else "KL(.||target) 1-NN"
        print(f"{'model':<11} {'centre dist':>15} {kl_name:>22} {'loglik D_r':>14} {'loglik D_f':>14}")
        summary[method] = {}
        for name in names:
            cols = {c: np.array([r[name][c] for r in rows]) for c in ("centre_dist", "kl", "ll_r", "ll_f")}
            print(f"{name:<11} " + " ".join(f"{cols[c].mean():>{w}.3f}±{cols[c].std():<5.3f}"[:w + 6].rjust(w + 6)
                                            for c, w in (("centre_dist", 9), ("kl", 16), ("ll_r", 8), ("ll_f", 8))))
            summary[method][name] = {c: [float(v) for v in cols[c]] for c in cols}
        t_keys = rows[0]["time"].keys()
        times = {k: np.array([r["time"][k] for r in rows]) for k in t_keys}
        print("wall time (s, after compilation): " + ", ".join(f"{k} {v.mean():.2f}" for k, v in times.items())
              + f";  retrain / forget = {times['retrain'].mean() / times['forget'].mean():.2f}x")
        summary[method]["time"] = {k: [float(t) for t in v] for k, v in times.items()}
    atomic_write_json(os.path.join(args.out, "bayes_gmm.json"), summary)


if __name__ == "__main__":
    main()
