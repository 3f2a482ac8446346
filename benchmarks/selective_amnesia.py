"""Selective Amnesia benchmark: a conditional VAE forgets a digit, measured and attacked.

Heng & Soh, "Selective Amnesia: A Continual Learning Approach to Forgetting in
Deep Generative Models", NeurIPS 2023. Steps, all in one run:

1. train the one-hot CVAE and two independent evaluation classifiers (A judges,
   B only re-judges the optimisation attack's images, which A guided);
2. compute the VAE's Fisher diagonal from model samples and forget one digit;
   print p(forgotten), entropy and the remaining digits' accuracy before/after;
3. sequential forgetting of digits 0..4 one after another;
4. the two gradient-projection variants against plain SA;
5. the attacks: random latents, noisy conditions, latent walks, and the
   classifier-guided optimisation over latent and condition;
6. PNGs (sample grids before/after, latent map with centroids, attack images)
   and ``results.json`` in ``--out``.

The default digit is 0 (the original README's example). On the 8x8 digits
the surrogate's optimum, the constant 0.5 image (the mean of uniform noise),
is itself read as a 1 by the classifiers (p(1) about 0.55-0.6), so forgetting
1 cannot get p(1) below that floor there; table [1] prints the floor under
both judges for whichever digit is forgotten. A forget request is the indices
of the digit's training examples (``class_request``).

Defaults (the full run) use the original's forgetting settings: lambda 100,
gamma 1, Adam 1e-4, batch 256, 10 000 steps, 50 000 Fisher samples.
``--quick`` (about two minutes on a laptop CPU) scales them down: 2 000
Fisher samples, 400 forgetting steps (250 per sequential request) at Adam
1e-3, and shorter CVAE/classifier training and attacks; the table headers say
which settings ran. On MNIST (``--dataset mnist``, prepared tfds data in
``--data-dir``) the models have the original sizes (784-512-256-z8).

Usage: ``python benchmarks/selective_amnesia.py --quick [--out results/selective_amnesia/]``.

``--fisher-speed`` only times the Fisher: :func:`sa_fisher_diagonal` on 1,000 model samples of the
MNIST-sized CVAE (784-512-256-z8, 1.08 M parameters, chunks of 128), per-layer fast path
(``per_example="layerwise"``, the default) against ``vmap`` of ``grad`` (``per_example="vmap"``, what it
was before), warm medians of alternating runs, and prints their ratio and largest relative difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn.amnesia import (
    class_centroids, forgetting_report, latent_walk_attack, noisy_condition_attack, optimization_attack,
    random_latent_attack, score_samples,
)
from jaxunlearn.amnesia import plots
from jaxunlearn.experiments.paper_amnesia import forget_digit, sample_grid, train_judge, train_original
from jaxunlearn.io import atomic_write_json
from jaxunlearn.methods.selective_amnesia import class_request, sa_fisher_diagonal, selective_amnesia
from jaxunlearn.models.cvae import create_cvae, encode, flatten_images, one_hot

SETTINGS = {
    # name: (cvae_steps, cvae_lr, clf_steps, clf_lr, clf_decay_every, fisher_samples, forget_steps, forget_lr,
    #        seq_steps, attack_steps, attack_restarts, eval_samples)
    "digits-full": dict(cvae_steps=10_000, cvae_lr=1e-3, clf_steps=3_000, clf_lr=1e-3, clf_decay=1_500,
                        fisher=50_000, forget_steps=10_000, forget_lr=1e-4, seq_steps=10_000,
                        attack_steps=500, attack_restarts=256, eval_samples=1000),
    "digits-quick": dict(cvae_steps=1_000, cvae_lr=2e-3, clf_steps=1_500, clf_lr=2e-3, clf_decay=750,
                         fisher=2_000, forget_steps=400, forget_lr=1e-3, seq_steps=250,
                         attack_steps=200, attack_restarts=64, eval_samples=300),
    "mnist-full": dict(cvae_steps=100_000, cvae_lr=1e-4, clf_steps=18_760, clf_lr=1e-4, clf_decay=4_690,
                       fisher=50_000, forget_steps=10_000, forget_lr=1e-4, seq_steps=10_000,
                       attack_steps=500, attack_restarts=256, eval_samples=1000),
    "mnist-quick": dict(cvae_steps=5_000, cvae_lr=1e-3, clf_steps=2_000, clf_lr=1e-3, clf_decay=1_000,
                        fisher=2_000, forget_steps=1_000, forget_lr=1e-3, seq_steps=500,
                        attack_steps=200, attack_restarts=64, eval_samples=300),
}


def load(dataset: str, data_dir: str | None):
    """``(x_train, y_train, x_test, y_test)`` with images (N, H, W, 1) in [0, 1]."""
    if dataset == "digits":
        from jaxunlearn.data import load_digits

        train, test = load_digits()
    else:
        from jaxunlearn.data import load_mnist

        train = load_mnist("train", preset="vae", data_dir=data_dir)
        test = load_mnist("test", preset="vae", data_dir=data_dir)
    return np.asarray(train.x), np.asarray(train.y), np.asarray(test.x), np.asarray(test.y)


def table(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def fisher_speed(num_samples: int = 1000, repeats: int = 5) -> dict:
    """Warm median seconds of the SA Fisher on the MNIST-sized CVAE, per-layer fast path vs ``vmap`` of ``grad``."""
    module, params = create_cvae(jax.random.key(0), x_dim=784, num_classes=10)
    size = sum(a.size for a in jax.tree.leaves(params))
    runs = {path: lambda k, path=path: sa_fisher_diagonal(module, params, k, num_samples=num_samples, per_example=path)
            for path in ("layerwise", "vmap")}
    results = {path: jax.block_until_ready(run(jax.random.key(1))) for path, run in runs.items()}  # compile
    times = {path: [] for path in runs}
    for r in range(repeats):  # alternate, so both paths see the same machine load
        for path, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(jax.random.key(2 + r)))
            times[path].append(time.perf_counter() - start)
    med = {path: float(np.median(t)) for path, t in times.items()}
    diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
               for a, b in zip(jax.tree.leaves(results["layerwise"]), jax.tree.leaves(results["vmap"])))
    print(f"SA Fisher, CVAE 784-512-256-z8 ({size:,} parameters), {num_samples} samples, chunks of 128, "
          f"warm median of {repeats}: per-layer {med['layerwise']:.3f} s, vmap(grad) {med['vmap']:.3f} s; "
          f"ratio vmap / per-layer = {med['vmap'] / med['layerwise']:.1f}x; max rel. diff {diff:.1e}")
    return {"seconds": med, "ratio": med["vmap"] / med["layerwise"], "max_rel_diff": diff}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scaled-down settings (about two minutes on a CPU)")
    ap.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    ap.add_argument("--data-dir", default=None, help="tfds data_dir holding prepared MNIST")
    ap.add_argument("--forget", type=int, default=0,
                    help="the digit to forget (0 as the original README; on 8x8 digits the surrogate's optimum, "
                         "a constant 0.5 image, already reads as a 1, so forgetting 1 has a floor there)")
    ap.add_argument("--sequence", default="0,1,2,3,4", help="digits forgotten one after another")
    ap.add_argument("--lmbda", type=float, default=100.0)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/selective_amnesia/")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--fisher-speed", action="store_true",
                    help="only time the Fisher (per-layer fast path vs vmap of grad) on the MNIST-sized CVAE")
    args = ap.parse_args(argv)
    if args.fisher_speed:
        return fisher_speed()
    cfg = SETTINGS[f"{args.dataset}-{'quick' if args.quick else 'full'}"]
    progress = not args.no_progress
    t_start = time.time()
    key = jax.random.key(args.seed)
    keys = dict(zip(("cvae", "clfa", "clfb", "sa", "seq", "proj", "eval", "attack", "grid"),
                    jax.random.split(key, 9)))

    x_tr, y_tr, x_te, y_te = load(args.dataset, args.data_dir)
    image_shape = x_tr.shape[1:]
    x_dim = int(np.prod(image_shape))
    f = args.forget
    sequence = [int(c) for c in args.sequence.split(",") if c != ""]
    print(f"Selective Amnesia on {args.dataset}: {x_tr.shape[0]} train / {x_te.shape[0]} test images, "
          f"forget digit {f}; settings {'quick' if args.quick else 'full'}: {cfg}")

    # 1. models
    module, original, vae_losses = train_original(x_tr, y_tr, key=keys["cvae"], num_steps=cfg["cvae_steps"],
                                                  learning_rate=cfg["cvae_lr"], progress=progress)
    judges = {name: train_judge(x_tr, y_tr, x_te, y_te, key=keys["clf" + name.lower()], num_steps=cfg["clf_steps"],
                                learning_rate=cfg["clf_lr"], decay_every=cfg["clf_decay"], progress=progress)
              for name in ("A", "B")}
    judge, judge_b = judges["A"][0], judges["B"][0]
    print(f"CVAE loss/example {vae_losses[-100:].mean():.2f}; classifier test accuracy A {judges['A'][1]:.4f}, "
          f"B {judges['B'][1]:.4f}")

    # 2. forget one digit
    amnesiac, state, info_f, seconds = forget_digit(
        module, original, x_tr, y_tr, f, key=keys["sa"], lmbda=args.lmbda, gamma=args.gamma,
        learning_rate=cfg["forget_lr"], num_steps=cfg["forget_steps"], num_fisher_samples=cfg["fisher"],
        progress=progress)
    t_fisher, t_forget = seconds["fisher"], seconds["forget"]
    train_data = (x_tr, y_tr)
    n_eval = cfg["eval_samples"]
    before = forgetting_report(module, original, judge, keys["eval"], [f], num_samples=n_eval)
    after = forgetting_report(module, amnesiac, judge, keys["eval"], [f], num_samples=n_eval)
    before_b = forgetting_report(module, original, judge_b, keys["eval"], [f], num_samples=n_eval)
    after_b = forgetting_report(module, amnesiac, judge_b, keys["eval"], [f], num_samples=n_eval)
    gray = {name: score_samples(lp, jnp.full((1, x_dim), 0.5), f) for name, (lp, _) in judges.items()}
    checks = {
        "p_forgotten <= 0.2": after["forget_prob"] <= 0.2,
        "entropy rise >= 1 nat": after["forget_entropy"] - before["forget_entropy"] >= 1.0,
        "remaining accuracy within 5 points": abs(after["remaining_accuracy"] - before["remaining_accuracy"]) <= 0.05,
    }
    rows = [[name, f"{r['forget_prob']:.4f}", f"{r['forget_entropy']:.4f}", f"{100 * r['remaining_accuracy']:.1f}",
             f"{rb['forget_prob']:.4f}", f"{rb['forget_entropy']:.4f}"]
            for name, r, rb in (("original", before, before_b), ("amnesiac (SA)", after, after_b))]
    rows.append(["(constant 0.5 image)", f"{gray['A']['prob']:.4f}", f"{gray['A']['entropy']:.4f}", "-",
                 f"{gray['B']['prob']:.4f}", f"{gray['B']['entropy']:.4f}"])
    print(f"\n[1] Forget digit {f} (lambda {args.lmbda}, gamma {args.gamma}, {cfg['forget_steps']} steps, Adam "
          f"{cfg['forget_lr']}, {cfg['fisher']} Fisher samples; {n_eval} samples per class; max entropy ln 10 = 2.3026)")
    print(table(rows, ["model", f"avg p({f})", "avg entropy (nats)", "remaining acc (%)", f"judge B: p({f})",
                       "judge B: entropy"]))
    print("(the surrogate's optimum is the constant 0.5 image, the mean of uniform noise: its row is the floor "
          "that forgetting can reach under each judge)")
    print("checks: " + ", ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    print(f"time: Fisher {t_fisher:.1f} s, forgetting {t_forget:.1f} s")

    # 3. sequential forgetting
    seq_unlearner = selective_amnesia(module, lmbda=args.lmbda, gamma=args.gamma,
                                      optimizer=optax.adam(cfg["forget_lr"]), num_steps=cfg["seq_steps"],
                                      progress=progress)
    seq_state = seq_unlearner.init(original, train_data, key=keys["seq"], fisher=state.fisher)
    seq_params, seq_rows, seq_results = original, [], []
    for i, c in enumerate(sequence):
        seq_params, seq_state, _ = seq_unlearner.update(seq_params, class_request(y_tr, c), seq_state,
                                                         key=jax.random.fold_in(keys["seq"], i))
        r = forgetting_report(module, seq_params, judge, keys["eval"], sequence[: i + 1], num_samples=n_eval)
        seq_results.append(r)
        seq_rows.append([f"{i + 1}: forget {c}", ",".join(map(str, sequence[: i + 1])), f"{r['forget_prob']:.4f}",
                         f"{r['forget_entropy']:.4f}", f"{100 * r['remaining_accuracy']:.1f}",
                         f"{r['per_class_prob'][sequence[0]]:.3f}"])
    print(f"\n[2] Sequential forgetting ({cfg['seq_steps']} steps per request; Fisher and theta* of the original; "
          f"surrogate over all forgotten digits so far)")
    print(table(seq_rows, ["request", "forgotten", "avg p(forgotten)", "avg entropy", "remaining acc (%)",
                           f"p({sequence[0]}) of first"]))

    # 4. projection variants
    proj_rows = [["sa (lambda %g)" % args.lmbda, f"{after['forget_prob']:.4f}", f"{after['forget_entropy']:.4f}",
                  f"{100 * after['remaining_accuracy']:.1f}", f"{np.mean(info_f.grad_norm):.1f}", "-"]]
    proj_results = {"sa": after}
    for variant in ("symmetric_projection", "alternating_projection"):
        un = selective_amnesia(module, lmbda=0.0, gamma=args.gamma, optimizer=optax.adam(cfg["forget_lr"]),
                               num_steps=cfg["forget_steps"], variant=variant, progress=progress)
        st = un.init(original, train_data, key=keys["proj"], fisher=state.fisher)
        p_v, _, info_v = un.update(original, class_request(y_tr, f), st, key=keys["proj"])
        r = forgetting_report(module, p_v, judge, keys["eval"], [f], num_samples=n_eval)
        r["mean_grad_norm"], r["mean_cosine"] = float(np.mean(info_v.grad_norm)), float(np.nanmean(info_v.cosine))
        proj_results[variant] = r
        proj_rows.append([f"{variant} (lambda 0)", f"{r['forget_prob']:.4f}", f"{r['forget_entropy']:.4f}",
                          f"{100 * r['remaining_accuracy']:.1f}", f"{r['mean_grad_norm']:.1f}",
                          f"{r['mean_cosine']:.3f}"])
    print(f"\n[3] Gradient-projection variants (forget {f}; projections replace EWC: lambda 0)")
    print(table(proj_rows, ["variant", f"avg p({f})", "avg entropy", "remaining acc (%)", "mean |update grad|",
                            "mean cos(g_f, g_r)"]))

    # 5. attacks
    known, known2 = [c for c in (7, 4, 2, 9) if c != f][:2]
    x_f_real = x_te[y_te == f]
    centroids = class_centroids(module, original, x_tr, y_tr)
    attack = {}
    for name, p in (("original", original), ("amnesiac", amnesiac)):
        ka = jax.random.fold_in(keys["attack"], 0)
        rl = random_latent_attack(module, p, judge, ka, f, num_samples=n_eval)
        nc = noisy_condition_attack(module, p, original, judge, ka, x_f_real, f)
        lw = latent_walk_attack(module, p, centroids, judge, f, known, known2)
        opt_kw = dict(num_restarts=cfg["attack_restarts"], num_steps=cfg["attack_steps"], judge_log_probs_fn=judge_b)
        oa = optimization_attack(module, p, judge, ka, f, **opt_kw)
        oa_masked = optimization_attack(module, p, judge, ka, f, mask_forgotten=True, **opt_kw)
        attack[name] = {"random": rl, "noisy": nc, "walk": lw, "optimisation": oa, "optimisation_masked": oa_masked}
    rows = []
    for label, get in (
        ("random latents, onehot(c_f)", lambda a: (a["random"]["prob"], a["random"]["accuracy"])),
        *[(f"noisy condition sigma={s}", (lambda s: lambda a: (a["noisy"][s]["prob"], a["noisy"][s]["accuracy"]))(s))
          for s in attack["original"]["noisy"]],
        *[(f"latent walk {w} ({known}->{f}{'->' + str(known2) if w == 'triangular' else ''})",
           (lambda w: lambda a: (a["walk"][w]["max_prob"], a["walk"][w]["hit_rate"]))(w))
          for w in ("deceptive", "double", "triangular")],
        ("optimisation z, softmax(c)  [judge A]", lambda a: (a["optimisation"]["prob"], a["optimisation"]["accuracy"])),
        ("  same images [independent judge B]",
         lambda a: (a["optimisation"]["judge_prob"], a["optimisation"]["judge_accuracy"])),
        ("optimisation, c_f masked out [judge A]",
         lambda a: (a["optimisation_masked"]["prob"], a["optimisation_masked"]["accuracy"])),
        ("  same images [independent judge B]",
         lambda a: (a["optimisation_masked"]["judge_prob"], a["optimisation_masked"]["judge_accuracy"])),
    ):
        o, a_ = get(attack["original"]), get(attack["amnesiac"])
        rows.append([label, f"{o[0]:.3f}", f"{100 * o[1]:.1f}", f"{a_[0]:.3f}", f"{100 * a_[1]:.1f}"])
    print(f"\n[4] Attacks recovering digit {f} (p = mean p({f}), walks: max along the path; hit = % classified as {f}; "
          f"optimisation: {cfg['attack_restarts']} starts x {cfg['attack_steps']} Adam steps, condition mass on {f} "
          f"{attack['amnesiac']['optimisation']['condition_mass']:.3f})")
    print(table(rows, ["attack", "original p", "original hit %", "amnesiac p", "amnesiac hit %"]))

    # 6. pictures
    out = args.out
    os.makedirs(out, exist_ok=True)
    h, w = image_shape[:2]

    def grid(p):
        return sample_grid(module, p, keys["grid"], 8)

    pngs = [plots.sample_grids([grid(original), grid(amnesiac), grid(seq_params)],
                               ["original", f"after forgetting {f}", "after forgetting " + ",".join(map(str, sequence))],
                               (h, w), os.path.join(out, "samples_before_after.png"))]
    xt = flatten_images(x_te)
    cond = one_hot(y_te, 10)
    latents = {name: np.asarray(encode(module, p, xt, cond)[0]) for name, p in (("original", original),
                                                                               ("amnesiac", amnesiac))}
    pngs.append(plots.latent_map(latents, y_te, os.path.join(out, "latent_centroids.png"), highlight=[f]))
    pngs.append(plots.sample_grids(
        [attack[m]["walk"]["double"]["images"][None] for m in ("original", "amnesiac")]
        + [attack[m]["optimisation"]["images"][:11][None] for m in ("original", "amnesiac")],
        [f"double walk {known}->{f}: original", "double walk: amnesiac", "optimisation attack: original",
         "optimisation attack: amnesiac"], (h, w), os.path.join(out, "attacks.png")))
    shift = {name: float(np.linalg.norm(lat[y_te == f].mean(0) - lat[y_te != f].mean(0)))
             for name, lat in latents.items()}

    def strip(a):
        return {k: (strip(v) if isinstance(v, dict) else v) for k, v in a.items() if k not in ("images", "z", "condition")}

    results = {
        "settings": {**cfg, "dataset": args.dataset, "forget": f, "sequence": sequence, "lmbda": args.lmbda,
                     "gamma": args.gamma, "seed": args.seed, "quick": args.quick},
        "classifier_test_accuracy": {k: v[1] for k, v in judges.items()},
        "before": before, "after": after, "before_judge_b": before_b, "after_judge_b": after_b,
        "constant_gray_image": gray, "checks": checks, "sequential": seq_results,
        "variants": proj_results, "attacks": strip({k: {**v, "noisy": {str(s): r for s, r in v["noisy"].items()}}
                                                    for k, v in attack.items()}),
        "forgotten_centroid_distance_to_others": shift,
        "time_s": {"fisher": t_fisher, "forget": t_forget, "total": time.time() - t_start},
        "pngs": pngs,
    }
    atomic_write_json(os.path.join(out, "results.json"), results)
    print(f"\ndistance of digit {f}'s encoder centroid from the others' (original -> amnesiac): "
          f"{shift['original']:.2f} -> {shift['amnesiac']:.2f}")
    print(f"wrote {', '.join(pngs)} and {os.path.join(out, 'results.json')}; total {time.time() - t_start:.0f} s")
    return results


if __name__ == "__main__":
    res = main()
    sys.exit(0 if all(res.get("checks", {}).values()) else 1)
