"""Selective Amnesia's MNIST experiment as paper settings (kind ``"amnesia"`` of :mod:`.paper`).

Heng & Soh, "Selective Amnesia: A Continual Learning Approach to Forgetting in Deep Generative Models",
NeurIPS 2023 (``clear-nus/selective-amnesia/vae``). One run, as the original's scripts:

1. train the one-hot CVAE 784-512-256-z8 on MNIST (summed BCE + KL, Adam 1e-4, batch 256, 100,000 steps;
   :func:`train_original`) and the judge classifier (conv net with BN and dropout, Adam 1e-4, batch 64,
   20 epochs = 18,760 steps, StepLR(5 epochs, 0.1); :func:`train_judge`);
2. compute the diagonal Fisher from 50,000 model samples and forget digit ``c_f`` with

       L(theta) = l_VAE(theta; x_f ~ U[0, 1]^784, c_f) + gamma l_VAE(theta; x_r = decoder_{theta*}(z, c_r), c_r)
                  + lambda sum_i F_i (theta_i - theta*_i)^2,

   lambda 100, gamma 1, Adam 1e-4, batch 256, 10,000 steps (:func:`forget_digit`,
   :func:`jaxunlearn.methods.selective_amnesia`);
3. judge ``n = 1,000`` samples ``x = decoder(z, onehot(c))``, ``z ~ N(0, I)``, of every digit, 8-bit
   quantised (the original's PNG round trip, :func:`jaxunlearn.amnesia.quantize_8bit`), before (original)
   and after (forgotten), with :func:`jaxunlearn.amnesia.forgetting_report`: for ``c_f`` the average entropy
   ``H = (1/n) sum_x -sum_y p(y|x) ln p(y|x)`` (nats, max ``ln 10 = 2.303``; higher is better) and the average
   ``p(c_f) = (1/n) sum_x p(y = c_f | x)`` (lower is better); for the nine remaining digits the judge's
   accuracy on their samples (higher is better: damage to the rest shows there).

Settings: ``sa-mnist-forget0`` (the original README's example, forget 0, lambda 100) and ``sa-mnist-forget1``
(the third-party replication's digit). Every number above is a key of ``params`` (``--set KEY=VALUE``).

The helpers :func:`train_original`, :func:`train_judge`, :func:`forget_digit` and :func:`sample_grid` are
also the first stages of ``benchmarks/selective_amnesia.py``. Compiled programs are shared between runs of
the same shapes and settings (the two settings differ only in the digit), so the second setting compiles
nothing.
"""

from __future__ import annotations

import base64
import functools
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunlearn._validation import check_number, check_positive_int
from jaxunlearn.amnesia import forgetting_report, quantize_8bit, train_cvae, train_sa_classifier
from jaxunlearn.amnesia.evaluation import LogProbsFn
from jaxunlearn.experiments.paper import PaperSetting, paper_cell, render_table
from jaxunlearn.methods.selective_amnesia import SAInfo, SAState, class_request, selective_amnesia
from jaxunlearn.models.cvae import CVAE, create_cvae, flatten_images, sample
from jaxunlearn.models.sa_classifier import SAClassifier, create_sa_classifier, sa_log_probs_fn

#: The original's settings (``mnist.yaml``, ``train_classifier.py``, ``calculate_fim.py``, ``train_forget.py``).
#: The judge's 18,760 steps are its 20 epochs of 938 batches of 64 (60,000 images, last batch partial); its
#: StepLR(5, 0.1) decays every 4,690 steps.
PARAMS = dict(
    dataset="mnist", forget=0, seed=0,
    hidden=(512, 256), z_dim=8, cvae_steps=100_000, cvae_lr=1e-4, cvae_batch=256,
    judge_steps=18_760, judge_lr=1e-4, judge_batch=64, judge_decay_every=4_690, judge_decay=0.1,
    fisher_samples=50_000, fisher_chunk=128,
    lmbda=100.0, gamma=1.0, forget_lr=1e-4, forget_batch=256, forget_steps=10_000,
    eval_samples=1_000, grid_per_class=8,
)

#: ``--smoke``: the same shapes (784-512-256-z8 CVAE, 28x28 judge, the real loss and Fisher), a few hundred steps
#: and samples, smaller batches (compilation, not the steps, is most of a smoke run's time).
SMOKE = dict(cvae_steps=200, cvae_batch=32, judge_steps=200, judge_batch=16, judge_decay_every=100,
             fisher_samples=256, forget_steps=50, forget_batch=32, eval_samples=200, grid_per_class=4)

ROWS = ("original", "forgotten (SA)")
_NOTES = (
    "minibatches are drawn uniformly with replacement (CVAE and judge), not epochs of a shuffled DataLoader; "
    "the judge's 20 epochs are 18,760 such steps, StepLR(5 epochs) a decay every 4,690",
    "the 8-bit PNG round trip is the rounding floor(255 x + 1/2) / 255; samples, Fisher draws and minibatches "
    "come from JAX's PRNG (seed param), so numbers agree with the paper's in distribution, not draw for draw",
)

SETTINGS = (
    PaperSetting(
        name="sa-mnist-forget0", kind="amnesia",
        title="Selective Amnesia: the MNIST one-hot CVAE (784-512-256-z8) forgets digit 0 (lambda 100, gamma 1)",
        params={**PARAMS, "forget": 0}, smoke=SMOKE, smoke_sizes=(400, 200),
        paper={"forgotten (SA)": {"H": "2.1946", "p(c_f)": "0.0581"}},
        reference="the example output of clear-nus/selective-amnesia vae/README.md (forget 0, lambda 100: "
                  "'Average entropy 2.1946, average p(forgotten) 0.0581'; original-algorithms.md section 5.4); "
                  "the original row and the remaining digits are not quoted there",
        notes=_NOTES,
    ),
    PaperSetting(
        name="sa-mnist-forget1", kind="amnesia",
        title="Selective Amnesia: the MNIST one-hot CVAE (784-512-256-z8) forgets digit 1 (lambda 100, gamma 1)",
        params={**PARAMS, "forget": 1}, smoke=SMOKE, smoke_sizes=(400, 200),
        paper={"original": {"H": "0.0999", "p(c_f)": "0.9704"}, "forgotten (SA)": {"H": "2.2175", "p(c_f)": "0.2045"}},
        reference="THIRD-PARTY replication, not the paper's authors: the results table of the "
                  "Amir-rfz/vae-concept-forgetting README (seed 003; original-algorithms.md section 5.4), forgetting 1 "
                  "with its own models; the remaining digits are not quoted there",
        notes=_NOTES,
    ),
)


def data_options(params: dict) -> dict:
    """Loader keywords: ``{"preset": "vae"}``, 28x28x1 pixels in [0, 1] (the original's ToTensor only)."""
    del params
    return {"preset": "vae"}


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    """One ``optax.adam`` per rate, so the training programs (cached per optimiser) are shared between runs."""
    return optax.adam(learning_rate)


@functools.lru_cache(maxsize=None)
def _judge_program(module: SAClassifier, image_shape: tuple[int, ...]) -> Callable:
    """``log_probs(variables, x)`` in eval mode, compiled once per judge module and image shape."""
    return jax.jit(lambda variables, x: sa_log_probs_fn(module, variables, image_shape)(x))


def train_original(x: Any, y: Any, *, key: jax.Array, num_steps: int, learning_rate: float, batch_size: int = 256,
                   hidden: tuple[int, int] | None = None, z_dim: int = 8,
                   progress: bool = True) -> tuple[CVAE, Any, np.ndarray]:
    """Create and train the one-hot CVAE as the original does (Adam on the summed BCE + KL of minibatches).

    Args:
      x: training images (N, H, W, C) in [0, 1]; y: their labels (N,) in 0..9.
      key: ``fold_in(key, 0)`` initialises the weights, ``key`` draws minibatches and noise
        (:func:`jaxunlearn.amnesia.train_cvae`).
      num_steps, learning_rate, batch_size: Adam steps, rate and batch (original: 100,000, 1e-4, 256).
      hidden, z_dim: the CVAE's widths (original: (512, 256), 8; ``None``: :func:`~jaxunlearn.models.cvae.create_cvae`'s
        default for the image size).
      progress: a tqdm bar.

    Returns:
      ``(module, params, losses)``, losses per example and step.
    """
    x = np.asarray(x)
    x_dim = int(np.prod(x.shape[1:]))
    module, params = create_cvae(jax.random.fold_in(key, 0), x_dim=x_dim, num_classes=10, hidden=hidden, z_dim=z_dim)
    params, losses = train_cvae(module, params, x, y, key=key, num_steps=num_steps, batch_size=batch_size,
                                optimizer=_adam(float(learning_rate)), progress=progress)
    return module, params, losses


def train_judge(x_train: Any, y_train: Any, x_test: Any, y_test: Any, *, key: jax.Array, num_steps: int,
                learning_rate: float, decay_every: int | None, decay: float = 0.1, batch_size: int = 64,
                progress: bool = True) -> tuple[LogProbsFn, float]:
    """Train the evaluation classifier (``train_classifier.py``) and measure its test accuracy.

    Args:
      x_train, y_train: images (N, H, W, 1) in [0, 1] and labels (N,); x_test, y_test: the held-out split.
      key: ``fold_in(key, 0)`` initialises, ``key`` draws minibatches and dropout
        (:func:`jaxunlearn.amnesia.train_sa_classifier`).
      num_steps, learning_rate, decay_every, decay, batch_size: Adam with the rate multiplied by ``decay``
        every ``decay_every`` steps (original: 18,760 steps, 1e-4, 4,690, 0.1, 64).
      progress: a tqdm bar.

    Returns:
      ``(log_probs_fn, test_accuracy)``: ``log_probs_fn(x)`` takes flat images (B, H*W) and returns the eval-mode
      log-probabilities (B, 10) (compiled once per judge shape).
    """
    image_shape = tuple(np.shape(x_train)[1:])
    module, variables = create_sa_classifier(jax.random.fold_in(key, 0), input_shape=image_shape)
    variables, _ = train_sa_classifier(module, variables, x_train, y_train, key=key, num_steps=num_steps,
                                       batch_size=batch_size, learning_rate=learning_rate, decay_every=decay_every,
                                       decay=decay, progress=progress)
    log_probs = functools.partial(_judge_program(module, image_shape), variables)
    accuracy = float(np.mean(np.asarray(jnp.argmax(log_probs(flatten_images(x_test)), -1)) == np.asarray(y_test)))
    return log_probs, accuracy


@functools.lru_cache(maxsize=8)
def _unlearner(module: CVAE, lmbda: float, gamma: float, learning_rate: float, batch_size: int, num_steps: int,
               num_fisher_samples: int, fisher_chunk_size: int, progress: bool):
    """The configured :func:`~jaxunlearn.methods.selective_amnesia` (cached: its compiled request step is reused)."""
    return selective_amnesia(module, lmbda=lmbda, gamma=gamma, optimizer=_adam(learning_rate), batch_size=batch_size,
                             num_steps=num_steps, num_fisher_samples=num_fisher_samples,
                             fisher_chunk_size=fisher_chunk_size, progress=progress)


def forget_digit(module: CVAE, params: Any, x: Any, y: Any, digit: int, *, key: jax.Array, lmbda: float = 100.0,
                 gamma: float = 1.0, learning_rate: float = 1e-4, batch_size: int = 256, num_steps: int = 10_000,
                 num_fisher_samples: int = 50_000, fisher_chunk_size: int = 128,
                 progress: bool = True) -> tuple[Any, SAState, SAInfo, dict[str, float]]:
    """Selective Amnesia of one digit (``calculate_fim.py``, then ``train_forget.py``), each stage timed.

    Args:
      module, params: the trained CVAE ``theta*``.
      x, y: its training data (the request is the indices of ``digit``'s examples, :func:`class_request`).
      digit: the class ``c_f`` to forget.
      key: draws the Fisher's samples (``init``) and the forgetting steps' batches (``update``).
      lmbda, gamma, learning_rate, batch_size, num_steps: the objective's weights and its Adam run
        (original: 100, 1, 1e-4, 256, 10,000).
      num_fisher_samples, fisher_chunk_size: model samples of the diagonal Fisher (original: 50,000) and how
        many share one chunk.
      progress: a tqdm bar over the forgetting steps.

    Returns:
      ``(amnesiac params, state, info, seconds)``: ``state`` holds ``theta*``, the Fisher and the forgotten
      classes; ``info`` the per-step loss terms; ``seconds`` ``{"fisher", "forget"}``, compilation included.
    """
    unlearner = _unlearner(module, float(lmbda), float(gamma), float(learning_rate), int(batch_size), int(num_steps),
                           int(num_fisher_samples), int(fisher_chunk_size), bool(progress))
    start = time.perf_counter()
    state = unlearner.init(params, (x, y), key=key)
    jax.block_until_ready(state.fisher)
    mid = time.perf_counter()
    amnesiac, state, info = unlearner.update(params, class_request(y, digit), state, key=key)
    jax.block_until_ready(amnesiac)
    return amnesiac, state, info, {"fisher": mid - start, "forget": time.perf_counter() - mid}


def sample_grid(module: CVAE, params: Any, key: jax.Array, per_class: int) -> np.ndarray:
    """``per_class`` mean images of every class, ``(C, per_class, x_dim)``; the same ``key`` gives the same ``z``
    for every model, so grids of the original and the forgotten model compare sample for sample."""
    labels = jnp.repeat(jnp.arange(module.num_classes), per_class)
    return np.asarray(sample(module, params, key, labels)).reshape(module.num_classes, per_class, -1)


def _checked(params: dict) -> dict:
    """The params this kind reads, validated (``ValueError`` naming the param)."""
    out = dict(params)
    for name in ("cvae_steps", "cvae_batch", "judge_steps", "judge_batch", "judge_decay_every", "fisher_samples",
                 "fisher_chunk", "forget_steps", "forget_batch", "eval_samples", "grid_per_class", "z_dim"):
        out[name] = check_positive_int(params[name], name)
    out["seed"] = check_positive_int(params["seed"], "seed", allow_zero=True)
    for name in ("cvae_lr", "judge_lr", "forget_lr"):
        out[name] = check_number(params[name], name, low=0.0, low_inclusive=False)
    for name in ("lmbda", "gamma"):
        out[name] = check_number(params[name], name)
    out["judge_decay"] = check_number(params["judge_decay"], "judge_decay", low=0.0, low_inclusive=False, high=1.0)
    forget = params["forget"]
    if isinstance(forget, bool) or not isinstance(forget, (int, np.integer)) or not 0 <= forget <= 9:
        raise ValueError(f"forget must be the digit to forget, an int in 0..9; got {forget!r}.")
    out["forget"] = int(forget)
    hidden = tuple(np.atleast_1d(params["hidden"]).tolist())
    if len(hidden) != 2:
        raise ValueError(f"hidden must be the CVAE's two widths (h1, h2), e.g. (512, 256); got {params['hidden']!r}.")
    out["hidden"] = tuple(check_positive_int(h, "hidden") for h in hidden)
    return out


def _encode_grid(grid: np.ndarray) -> str:
    """8-bit pixels ``round(255 q(x))`` of a grid, base64 of their bytes (compact in the JSON result)."""
    pixels = np.rint(255.0 * np.asarray(quantize_8bit(jnp.asarray(grid)))).astype(np.uint8)
    return base64.b64encode(pixels.tobytes()).decode("ascii")


def decode_grid(result: dict, model: str) -> np.ndarray:
    """The sample grid of ``model`` (``"original"`` or ``"forgotten"``) stored in ``result``: pixels in [0, 1],
    ``(10, grid_per_class, H*W)``."""
    grids = result["sample_grids"]
    pixels = np.frombuffer(base64.b64decode(grids[model]), np.uint8)
    return pixels.reshape(grids["shape"]).astype(np.float32) / 255.0


class AmnesiaModels(NamedTuple):
    """What one run trained, for checks beyond its JSON result.

    Attributes:
      module: the CVAE; original, amnesiac: its parameters before and after forgetting.
      judge: ``log_probs(x)`` of the judge, flat images (B, H*W) -> (B, 10), eval mode.
      state: the Selective Amnesia state after the request (``theta*``, Fisher, ``forgotten`` classes).
      keys: the run's keys by stage: ``"cvae"``, ``"judge"``, ``"sa"``, ``"eval"`` (of
        :func:`~jaxunlearn.amnesia.forgetting_report`, the same for both models) and ``"grid"``
        (of :func:`sample_grid`).
    """

    module: CVAE
    original: Any
    amnesiac: Any
    judge: LogProbsFn
    state: SAState
    keys: dict[str, jax.Array]


def run(setting: PaperSetting, params: dict, train: Any, test: Any, *, progress: bool,
        log: Callable[[str], None]) -> dict:
    """Train the CVAE and the judge, forget ``params["forget"]``, judge both models (module doc); the result of
    :func:`run_with_models`."""
    return run_with_models(setting, params, train, test, progress=progress, log=log)[0]


def run_with_models(setting: PaperSetting, params: dict, train: Any, test: Any, *, progress: bool,
                    log: Callable[[str], None]) -> tuple[dict, AmnesiaModels]:
    """:func:`run`, also returning the trained models.

    Args:
      setting: the paper setting (its name goes into the log).
      params: :data:`PARAMS` with the user's overrides.
      train, test: :class:`~jaxunlearn.data.Dataset` splits, 28x28x1 images in [0, 1] (:func:`data_options`).
      progress: tqdm bars allowed.
      log: prints one progress line.

    Returns:
      ``(result, models)``. ``result`` is JSON-able: ``{"forget", "cvae", "forgotten_classes",
      "judge_test_accuracy", "cvae_loss", "before", "after", "forget_loss", "seconds", "sample_grids"}``;
      ``before``/``after`` are the :func:`~jaxunlearn.amnesia.forgetting_report` of the original and the
      forgotten model (``forget_entropy`` is H, ``forget_prob`` p(c_f), ``remaining_accuracy`` the remaining
      digits' accuracy, and per-class lists); ``forgotten_classes`` the classes the method's state holds
      forgotten; ``seconds`` per stage (compilation included); ``sample_grids`` the 8-bit before/after grids
      (:func:`decode_grid`). ``models``: :class:`AmnesiaModels`.
    """
    p = _checked(params)
    f = p["forget"]
    x_tr, y_tr = np.asarray(train.x), np.asarray(train.y)
    x_te, y_te = np.asarray(test.x), np.asarray(test.y)
    if float(x_tr.min()) < 0.0 or float(x_tr.max()) > 1.0:
        raise ValueError("train.x must be pixels in [0, 1] (the CVAE's Bernoulli likelihood); load it with "
                         "data_options(params), the 'vae' preset.")
    if not np.any(y_tr == f):
        raise ValueError(f"forget={f}: the training data holds no example of that digit.")
    keys = dict(zip(("cvae", "judge", "sa", "eval", "grid"), jax.random.split(jax.random.key(p["seed"]), 5)))
    seconds = {}

    log(f"[{setting.name}] training the CVAE ({p['cvae_steps']} steps) on {len(y_tr)} images")
    start = time.perf_counter()
    module, original, cvae_losses = train_original(x_tr, y_tr, key=keys["cvae"], num_steps=p["cvae_steps"],
                                                   learning_rate=p["cvae_lr"], batch_size=p["cvae_batch"],
                                                   hidden=p["hidden"], z_dim=p["z_dim"], progress=progress)
    seconds["cvae"] = time.perf_counter() - start

    log(f"[{setting.name}] training the judge ({p['judge_steps']} steps)")
    start = time.perf_counter()
    judge, judge_accuracy = train_judge(x_tr, y_tr, x_te, y_te, key=keys["judge"], num_steps=p["judge_steps"],
                                        learning_rate=p["judge_lr"], decay_every=p["judge_decay_every"],
                                        decay=p["judge_decay"], batch_size=p["judge_batch"], progress=progress)
    seconds["judge"] = time.perf_counter() - start
    log(f"[{setting.name}] judge test accuracy {judge_accuracy:.4f}")

    log(f"[{setting.name}] Fisher ({p['fisher_samples']} samples), then forgetting digit {f} "
        f"({p['forget_steps']} steps)")
    amnesiac, state, info, forget_seconds = forget_digit(
        module, original, x_tr, y_tr, f, key=keys["sa"], lmbda=p["lmbda"], gamma=p["gamma"],
        learning_rate=p["forget_lr"], batch_size=p["forget_batch"], num_steps=p["forget_steps"],
        num_fisher_samples=p["fisher_samples"], fisher_chunk_size=p["fisher_chunk"], progress=progress)
    seconds.update(forget_seconds)

    log(f"[{setting.name}] judging {p['eval_samples']} samples of each digit, before and after")
    start = time.perf_counter()
    before, after = (forgetting_report(module, m, judge, keys["eval"], [f], num_samples=p["eval_samples"])
                     for m in (original, amnesiac))
    grids = {name: sample_grid(module, m, keys["grid"], p["grid_per_class"])
             for name, m in (("original", original), ("forgotten", amnesiac))}
    seconds["evaluate"] = time.perf_counter() - start
    tail = max(1, min(100, len(cvae_losses)))
    result = {
        "forget": f,
        "cvae": "-".join(map(str, (module.x_dim, *module.hidden))) + f"-z{module.z_dim}",
        "forgotten_classes": np.flatnonzero(np.asarray(state.forgotten)).tolist(),
        "judge_test_accuracy": judge_accuracy,
        "cvae_loss": float(np.mean(cvae_losses[-tail:])),
        "before": before,
        "after": after,
        "forget_loss": {k: float(np.mean(np.asarray(getattr(info, k))[-tail:])) for k in ("forget", "replay", "ewc")},
        "seconds": seconds,
        "sample_grids": {"shape": [10, p["grid_per_class"], int(np.prod(x_tr.shape[1:]))],
                         "image_shape": list(x_tr.shape[1:3]), **{k: _encode_grid(g) for k, g in grids.items()}},
    }
    return result, AmnesiaModels(module, original, amnesiac, judge, state, keys)


def _fmt(value: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{digits}f}"


def table(setting: PaperSetting, params: dict, result: dict) -> str:
    """The seed's table: rows original and forgotten (SA); our H, p(c_f) and remaining accuracy beside the paper's
    H and p(c_f); under it the settings that ran and the seconds per stage."""
    f = result["forget"]
    rows = []
    for row, rep in zip(ROWS, (result["before"], result["after"])):
        rows.append([row, _fmt(rep["forget_entropy"]), paper_cell(setting, row, "H"), _fmt(rep["forget_prob"]),
                     paper_cell(setting, row, "p(c_f)"), f"{100 * rep['remaining_accuracy']:.1f}"])
    columns = ["model", "H ↑", "paper H", f"p(c_f={f}) ↓", f"paper p(c_f={f})", "remaining acc % ↑"]
    q = params
    n = q["eval_samples"]
    legend = [
        f"H: the judge's average predictive entropy (nats; max ln 10 = {math.log(10):.3f}) over {n} 8-bit samples "
        f"of digit {f}; p(c_f): its average probability of {f}; remaining acc: how often it reads the samples "
        f"({n} per digit) of the other nine digits as the digit asked for",
        f"judge test accuracy {100 * result['judge_test_accuracy']:.2f} %; CVAE loss per example "
        f"{result['cvae_loss']:.1f} (last steps)",
        f"ran: CVAE {result['cvae']}, {q['cvae_steps']} steps, Adam {q['cvae_lr']:g}, batch {q['cvae_batch']}; judge "
        f"{q['judge_steps']} steps, Adam {q['judge_lr']:g} (x{q['judge_decay']:g} every {q['judge_decay_every']}), "
        f"batch {q['judge_batch']}; Fisher {q['fisher_samples']} samples; forgetting lambda {q['lmbda']:g}, "
        f"gamma {q['gamma']:g}, Adam {q['forget_lr']:g}, batch {q['forget_batch']}, {q['forget_steps']} steps; "
        f"seed {q['seed']}",
        "seconds (compilation included): " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()),
    ]
    return render_table(setting, columns, rows, title=f"{setting.title} [{setting.name}]", legend=legend)


def figures(setting: PaperSetting, params: dict, result: dict) -> dict[str, bytes]:
    """``{"samples_before_after.png": PNG bytes}``: ``grid_per_class`` samples of every digit (rows), the original
    model beside the forgotten one, drawn from the same latents."""
    from jaxunlearn.amnesia import plots

    f = result["forget"]
    shape = tuple(result["sample_grids"]["image_shape"])
    return {"samples_before_after.png": plots.sample_grids_png(
        [decode_grid(result, "original"), decode_grid(result, "forgotten")],
        ["original", f"after forgetting {f} (SA)"], shape)}
