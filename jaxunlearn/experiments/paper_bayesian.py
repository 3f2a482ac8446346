"""The Bayesian seeds' experiments as paper settings: VI and MCMC forgetting of Bayesian LeNets (kind ``"bayesian"``).

Two seed papers, one protocol. Train a Bayesian LeNet-5 on Fashion-MNIST (32x32, ``x/255 - 0.5``: the
``"lenet"`` loader preset), then remove ``k`` training samples of class 0 (T-shirt) in a fixed random order,
in chunks of ``rm_bs``, and compare three models at every ``k``:

* **origin**: trained on everything (``k = 0``);
* **processed**: the origin after forgetting the first ``k`` samples of the order;
* **target**: retrained from the same initialisation without them.

Settings (:data:`SETTINGS`):

* ``bif-vi-fashion_mnist``, ``bif-sgld-fashion_mnist``, ``bif-sghmc-fashion_mnist``: Fu, He, Xu & Tao,
  "Bayesian Inference Forgetting" (arXiv 2101.06417), Figure 1 (Bayesian LeNet on Fashion-MNIST), the
  repository's ``scripts/fashion`` settings: a variational network (Bayes by Backprop, SGD ``lr / n``
  decayed 10x every 4000 steps, gradients averaged over ``bbp_T`` noise draws, VI forgetting
  :func:`jaxunlearn.methods.vi_forgetting`) and SGLD / SGHMC chains (``eta_t = (lr / n)(t + 1)^-0.5``, MCMC
  forgetting :func:`jaxunlearn.methods.mcmc_forgetting` at the chain's final step size), ``k = 1000..6000``.
* ``mcmc-sgld-fashion_mnist``: Fu, He & Tao, "Knowledge Removal in Sampling-based Bayesian Inference"
  (ICLR 2022): ``explore_steps`` of SGD with momentum 0.9 at ``explore_lr / n``, then SGLD at
  ``eta_j = (lr / n) j^-0.5005``, ``j = 1, 2, ...``, for the rest of ``steps``; MCMC forgetting with the
  step size rescaled ``lr <- lr * n_old / n_new`` after every removed chunk; ``k = 4000, 6000``; one SGLD step
  on the remaining data before the errors and the attack are measured, as its ``calc_err_and_mia.py``.

Every training run divides its step size by its own training-set size ``n`` (``n = N - k`` for a target),
as the originals' ``lr /= len(train_sampler)``. Each ``k`` is its own forgetting run from the origin (the
originals run ``forget.sh`` once per ``kill_num``), removing ``order[:k]`` in consecutive chunks of ``rm_bs``
(:func:`removal_chunks`); ``order`` is a seeded permutation of the class's training indices
(:func:`removal_order`), so a larger ``k`` removes a superset.

Metrics per model and ``k`` (:func:`run_seed`): errors (%) on the forgotten samples ``S_f``, the remaining
ones ``S_r`` and the test set; the ICLR'22 confidence attack (% of ``S_f`` whose true-class probability falls
below the threshold fitted on ``S_r`` against test, :func:`jaxunlearn.metrics.fit_confidence_threshold`;
higher = more forgotten); the L1 prediction difference to the target
(:func:`jaxunlearn.metrics.prediction_l1`, on the models as stored, without the evaluation step, as
``calc_pred_diff.py``); and the seconds of training, forgetting and retraining, compilation excluded
(every timed program is compiled ahead of time). A variational network is evaluated with one stochastic pass.

The module follows the kind contract of :mod:`jaxunlearn.experiments.paper`: :func:`run`, :func:`table`,
:func:`figures`, :func:`data_options`. :func:`run_seed` is the experiment of one seed, shared with
``benchmarks/bayes_digits.py`` (the same protocol on scikit-learn's 8x8 digits).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from jaxunlearn import bayes, metrics
from jaxunlearn._validation import keep_errors, wait_for_errors
from jaxunlearn.experiments.paper import NOT_QUOTED, PaperSetting, paper_cell, render_table
from jaxunlearn.methods.mcmc_forgetting import mcmc_forgetting
from jaxunlearn.methods.vi_forgetting import vi_forgetting
from jaxunlearn.models import bayesian

__all__ = ["METRICS", "MODELS", "SETTINGS", "Setup", "data_options", "figures", "plot_errors", "removal_chunks",
           "removal_order", "run", "run_seed", "setup", "summarize", "table"]

#: The three models compared at every ``k``.
MODELS = ("origin", "processed", "target")
#: Per-model metrics of :func:`run_seed` (errors and attack in %, L1 in ``[0, 2]``, seconds).
METRICS = ("err_forget", "err_remain", "err_test", "mia", "l1_forget", "l1_test", "seconds")

_BIF_REFERENCE = (
    "Fu et al. 2021, BIF (arXiv 2101.06417), Figure 1 'Bayesian LeNet on Fashion-MNIST': figure, read off the "
    "repository's figure (fshp971/BIF figures/bnn-fashion.png), approximate (+-2 points); only the S_f errors at "
    "5000 and 6000 removed are quoted (the S_r and test curves are not attributed to a model there)"
)
_BIF_NOTES = (
    "one seed by default; the paper averages 5 seeds (--set seeds=0,1,2,3,4).",
    "the fixed random order is a seeded permutation of class 0 shared by every k (the original draws one per run); "
    "each k is its own forgetting run from the origin, as the original's one forget.sh run per kill_num.",
    "the target starts from the origin's initialisation with a fresh chain key.",
)


def _quotes(rows: Mapping[int, tuple[str, str]]) -> dict[str, dict[str, str]]:
    """``{"5000 processed": {"err S_f": "~54"}, "5000 target": {...}, ...}`` from ``{5000: ("~54", "~60")}``
    (the processed and the target model's S_f error at ``k`` removed)."""
    return {f"{k} {model}": {"err S_f": quote} for k, pair in rows.items() for model, quote in zip(MODELS[1:], pair)}


_BIF_COMMON = dict(dataset="fashion_mnist", model="lenet", sizes=(1000, 2000, 3000, 4000, 5000, 6000), seeds=(0,),
                   lr=0.5, steps=10000, prior=0.15, iter_T=64, rm_bs=64, batch_size=128, eval_step=False)
_MCMC_BIF = dict(_BIF_COMMON, decay_exp=-0.5, samp_T=5, rescale_lr=False)
_SMOKE = dict(steps=40, iter_T=4, samp_T=1, bbp_T=1, sizes=(16, 32), rm_bs=16, batch_size=16)


def _smoke(params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The smoke overrides (:data:`_SMOKE` and ``extra``) of the keys ``params`` has."""
    return {k: v for k, v in {**_SMOKE, **extra}.items() if k in params}


_VI = dict(_BIF_COMMON, decay_rate=0.1, decay_every=4000, scaling0=0.1, bbp_T=5)
_SGLD = dict(_MCMC_BIF, scaling0=0.005)
_SGHMC = dict(_MCMC_BIF, alpha=0.4, scaling0=0.05)
_ICLR = dict(dataset="fashion_mnist", model="lenet", sizes=(4000, 6000), seeds=(0,), explore_lr=0.01, momentum=0.9,
             explore_steps=1000, lr=0.01, decay_exp=-0.5005, steps=10000, prior=0.1, scaling0=0.05, iter_T=64,
             samp_T=1, rm_bs=64, batch_size=128, rescale_lr=True, eval_step=True)
_SMOKE_SIZES = (400, 100)  # 40 training examples of class 0

SETTINGS: tuple[PaperSetting, ...] = (
    PaperSetting(
        name="bif-vi-fashion_mnist", kind="bayesian",
        title="BIF Figure 1: VI forgetting of a variational LeNet-5, 1000-6000 T-shirts removed",
        params=_VI, smoke=_smoke(_VI, decay_every=16), smoke_sizes=_SMOKE_SIZES,
        paper=_quotes({5000: ("~54", "~60"), 6000: ("~97", "~100")}), reference=_BIF_REFERENCE, notes=_BIF_NOTES,
    ),
    PaperSetting(
        name="bif-sgld-fashion_mnist", kind="bayesian",
        title="BIF Figure 1: MCMC forgetting of an SGLD LeNet-5, 1000-6000 T-shirts removed",
        params=_SGLD, smoke=_smoke(_SGLD), smoke_sizes=_SMOKE_SIZES,
        paper=_quotes({5000: ("~41", "~50"), 6000: ("~92", "~100")}), reference=_BIF_REFERENCE, notes=_BIF_NOTES,
    ),
    PaperSetting(
        name="bif-sghmc-fashion_mnist", kind="bayesian",
        title="BIF Figure 1: MCMC forgetting of an SGHMC LeNet-5, 1000-6000 T-shirts removed",
        params=_SGHMC, smoke=_smoke(_SGHMC), smoke_sizes=_SMOKE_SIZES,
        paper=_quotes({5000: ("~39", "~41"), 6000: ("~90", "~100")}), reference=_BIF_REFERENCE, notes=_BIF_NOTES,
    ),
    PaperSetting(
        name="mcmc-sgld-fashion_mnist", kind="bayesian",
        title="ICLR'22 MCMC unlearning: an SGLD LeNet-5 forgets 4000 and 6000 T-shirts",
        params=_ICLR, smoke=_smoke(_ICLR, explore_steps=10), smoke_sizes=_SMOKE_SIZES,
        paper={},
        reference=("Fu, He & Tao, ICLR 2022 (openreview dTqOcTUOQO), the BNN Fashion-MNIST tables (4k and 6k "
                   "removed): none of their numbers is quoted here"),
        notes=("one seed by default; the paper averages 5 seeds (--set seeds=0,1,2,3,4).",
               "no MNIST pretraining: the original starts every LeNet from one pretrained on MNIST (SGD lr 0.1, "
               "2000 steps); ours start from the PyTorch-default initialisation.",
               "the removal order is a seeded permutation of class 0 (the original ships five index files).",
               "no KL-to-target estimate and no importance-sampling baseline row."),
    ),
)


def data_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Loader options of every setting: the ``"lenet"`` preset (32x32, ``x/255 - 0.5``) for MNIST and Fashion-MNIST."""
    del params
    return {"preset": "lenet"}


# ---- the removal schedule -----------------------------------------------------------------------------------

def removal_order(labels: Any, seed: int, forget_class: int = 0) -> np.ndarray:
    """The fixed random order in which the training samples of ``forget_class`` are removed.

    Args:
      labels: int ``[N]`` training labels.
      seed: the run's seed (``numpy.random.default_rng(seed)`` permutes the class's indices).
      forget_class: the class whose samples are removed (0: T-shirt / the digit 0).

    Returns:
      int64 ``[N_c]``: every index of the class exactly once; the first ``k`` are the ``k`` removed.
    """
    labels = np.asarray(labels)
    members = np.flatnonzero(labels == forget_class)
    if members.size == 0:
        raise ValueError(f"forget_class={forget_class} has no training samples; labels hold {np.unique(labels)}.")
    return np.random.default_rng(seed).permutation(members)


def removal_chunks(order: np.ndarray, k: int, rm_bs: int) -> list[np.ndarray]:
    """``order[:k]`` cut into consecutive removal requests of ``rm_bs`` (the last one shorter when ``rm_bs`` does
    not divide ``k``), as the originals' loader over the forget indices with batch size ``rm_bs``.

    Raises:
      ValueError: ``k`` outside ``1..len(order)`` or ``rm_bs < 1``, naming the setting to change.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(order):
        raise ValueError(f"sizes: k={k!r} must be an integer in 1..{len(order)} (the training samples of the "
                         "removed class); lower the sizes.")
    if isinstance(rm_bs, bool) or not isinstance(rm_bs, (int, np.integer)) or rm_bs < 1:
        raise ValueError(f"rm_bs must be a positive integer, got {rm_bs!r}.")
    return [np.asarray(order[start:min(start + rm_bs, k)]) for start in range(0, k, rm_bs)]


# ---- compiled pieces of one method ----------------------------------------------------------------------------

class _AheadOfTime:
    """A jitted function called through executables compiled ahead of time, one per argument shapes: ``compile``
    before a timed call keeps compilation off the clock. Errors staged by ``raise_if`` keep their class."""

    def __init__(self, jitted: Callable):
        self._jitted = jitted
        self._executables: dict[Any, Any] = {}

    def compile(self, *args: Any) -> Any:
        """The executable for ``args``' shapes and dtypes (compiled on first use)."""
        leaves, tree = jax.tree.flatten(args)
        signature = (tree, tuple(jax.typeof(a) for a in leaves))
        if signature not in self._executables:
            self._executables[signature] = self._jitted.lower(*args).compile()
        return self._executables[signature]

    def __call__(self, *args: Any) -> Any:
        with keep_errors():
            return wait_for_errors(self.compile(*args)(*args))


def _mean_over_draws(energy: bayes.Energy, draws: int) -> bayes.Energy:
    """``energy`` whose per-example loss is averaged over ``draws`` noise draws (``jax.random.split(key, draws)``):
    BIF's variational training step averages its gradient over ``bbp_T`` forward passes."""
    if draws == 1:
        return energy

    def per_example(params, batch, key):
        return jnp.mean(jax.vmap(lambda k: energy.per_example(params, batch, k))(jax.random.split(key, draws)), 0)

    return bayes.Energy(energy.prior, per_example, stochastic=True)


def _sgd(schedule: Callable | None = None, momentum: float = 0.0) -> optax.GradientTransformation:
    """SGD (PyTorch's momentum ``v <- m v + g``) whose step size ``step_size = -lr / n`` is an entry of the optimizer
    state (set it with ``optax.tree_utils.tree_set``), so one compiled loop trains on any number ``n`` of points;
    ``schedule(t)`` multiplies it (the step decay of BIF's variational run)."""
    parts = [optax.trace(decay=momentum)] if momentum else []
    if schedule is not None:
        parts.append(optax.scale_by_schedule(schedule))
    parts.append(optax.inject_hyperparams(optax.scale)(step_size=-1.0))
    return optax.chain(*parts)


#: The hyperparameters each method reads (:class:`Setup`); ``padding`` (LeNet), ``explore_*`` and ``momentum`` are
#: optional.
_KEYS = {
    "vi": ("model", "lr", "steps", "prior", "scaling0", "iter_T", "batch_size", "decay_rate", "decay_every", "bbp_T"),
    "sgld": ("model", "lr", "steps", "prior", "scaling0", "iter_T", "batch_size", "decay_exp", "samp_T",
             "rescale_lr"),
}
_KEYS["sghmc"] = _KEYS["sgld"] + ("alpha",)
_OPTIONAL = {"padding": "VALID", "explore_steps": 0, "explore_lr": 0.0, "momentum": 0.0}


class Setup:
    """The model, energy, training, forgetting and evaluation programs of one method and configuration.

    Built once per configuration (:func:`setup`) and compiled once per shape: the data are arguments of every
    program, never constants in it.

    Attributes:
      method: ``"vi"``, ``"sgld"`` or ``"sghmc"``.
      hyper: the hyperparameters read (:data:`_KEYS`, plus the optional ones).
      num_train: ``N``, the origin's training-set size (the forgetting's step size is ``lr / N``).
      module: the flax LeNet / MLP (variational for ``"vi"``, point weights for the chains).
      energy: the :class:`jaxunlearn.bayes.Energy` the forgetting uses.
      forgetter: the :class:`jaxunlearn.methods.base.Unlearner`.
      decay: the chains' final step-size factor ``schedule(T - 1)`` (``T`` chain steps), at which the forgetting
        continues (1 for the variational network).
      update: the forgetter's request, compiled ahead of time per chunk size (timed calls exclude compilation).
    """

    def __init__(self, method: str, hyper: Mapping[str, Any], num_train: int, num_classes: int):
        self.method, self.hyper, self.num_train = method, dict(hyper), num_train
        h = self.hyper
        variational = method == "vi"
        if h["model"] == "lenet":
            self.module = bayesian.BayesLeNet(num_classes, variational=variational, padding=h["padding"])
        elif h["model"] == "mlp":
            self.module = bayesian.BayesMLP(num_classes, hidden=(100,), variational=variational)
        else:
            raise ValueError(f"model must be 'lenet' or 'mlp', got {h['model']!r}.")
        self.logits = bayesian.stochastic_logits_fn(self.module)
        self.eval_logits = lambda pk, x: self.logits(pk[0], x, pk[1])  # params = (weights, noise key)
        batch = h["batch_size"]
        if variational:
            self.energy = bayes.vbnn_energy(self.logits, h["prior"])
            self._train_energy = _mean_over_draws(self.energy, h["bbp_T"])
            self._optimizer = _sgd(optax.exponential_decay(1.0, h["decay_every"], h["decay_rate"], staircase=True))
            self.forgetter = vi_forgetting(self.energy, scaling0=h["scaling0"], iter_T=h["iter_T"], batch_size=batch,
                                           bbp_T=h["bbp_T"])
            self.decay = 1.0
        else:
            if not 0 <= h["explore_steps"] < h["steps"]:
                raise ValueError(f"explore_steps must lie in 0..steps-1 = 0..{h['steps'] - 1}, got "
                                 f"{h['explore_steps']}.")
            self.energy = bayes.bnn_energy(lambda p, x: self.module.apply({"params": p}, x), h["prior"])
            self.sampler = (bayes.sgld(self.energy.energy) if method == "sgld"
                            else bayes.sghmc(self.energy.energy, alpha=h["alpha"]))
            self._schedule = bayes.power_decay(h["decay_exp"])
            self.decay = float(self._schedule(h["steps"] - h["explore_steps"] - 1))
            self._optimizer = _sgd(momentum=h["momentum"])
            self.forgetter = mcmc_forgetting(self.energy, self.sampler, lr=h["lr"] / num_train, decay=self.decay,
                                             scaling0=h["scaling0"], iter_T=h["iter_T"], samp_T=h["samp_T"],
                                             batch_size=batch, rescale_step_size=h["rescale_lr"])
            self.one_step = jax.jit(self._one_step)
        self.update = _AheadOfTime(self.forgetter.update.core)
        self._trainers: dict[bool, _AheadOfTime] = {}

    def trainer(self, progress: bool = False) -> _AheadOfTime:
        """``train(init_key, key, alive, data) -> trained``: the network initialised from ``init_key`` (PyTorch's
        default initialisation), then ``steps`` steps on the ``alive`` points of ``data``, every step size divided
        by their count ``n``; returns the variational parameters or the chain's
        :class:`~jaxunlearn.bayes.SamplerState`. One compiled program per ``progress`` (tqdm bars or none)."""
        if progress not in self._trainers:
            self._trainers[progress] = _AheadOfTime(jax.jit(functools.partial(self._train, progress=progress)))
        return self._trainers[progress]

    def _train(self, init_key, key, alive, data, *, progress):
        h = self.hyper
        n = jnp.sum(alive)
        init = self.module.init({"params": init_key, bayesian.RNG_STREAM: init_key}, data[0][:1])["params"]

        def sgd(energy, params, lr, num_steps, k):  # fit_vi: optax steps on any Energy (a chain's is deterministic)
            opt_state = otu.tree_set(self._optimizer.init(params), step_size=-lr / n)
            return bayes.fit_vi(energy, params, data, optimizer=self._optimizer, num_steps=num_steps,
                                batch_size=h["batch_size"], key=k, alive=alive, opt_state=opt_state,
                                progress=progress).params

        if self.method == "vi":
            return sgd(self._train_energy, init, h["lr"], h["steps"], key)
        k_explore, k_chain = jax.random.split(key)
        params = init
        if h["explore_steps"]:
            params = sgd(self.energy, init, h["explore_lr"], h["explore_steps"], k_explore)
        state, _ = bayes.run_chain(self.sampler, k_chain, self.sampler.init(params), data, lr=h["lr"] / n,
                                   num_steps=h["steps"] - h["explore_steps"], batch_size=h["batch_size"],
                                   schedule=self._schedule, alive=alive, progress=progress)
        return state

    def _one_step(self, state, key, alive, lr, data):
        """One sampler step on a minibatch of the ``alive`` points, ``eta = lr * decay`` (the final factor)."""
        k_batch, k_step = jax.random.split(key)
        idx = bayes.draw_batches(k_batch, alive, 1, self.hyper["batch_size"])[0]
        return self.sampler.step(k_step, state, bayes.take(data, idx), jnp.sum(alive), lr, jnp.float32(self.decay))

    def params_of(self, trained: Any) -> Any:
        """The network weights of a trained model (a chain's position)."""
        return trained if self.method == "vi" else trained.position

    def init_forgetter(self, trained: Any, data: Any, key: jax.Array) -> Any:
        """The forgetter's state on ``data`` for the trained model (a chain continues from its sampler state)."""
        if self.method == "vi":
            return self.forgetter.init(trained, data, key=key)
        return self.forgetter.init(trained.position, data, key=key, sampler_state=trained)

    def probs(self, params: Any, key: jax.Array, x: jax.Array, split: int) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of one pass over ``x`` (one noise draw ``key`` for a variational network), as
        ``(probs[:split], probs[split:])``: the training and the test examples."""
        p = np.asarray(metrics.predict_probs(self.eval_logits, (params, key), x))
        return p[:split], p[split:]


@functools.lru_cache(maxsize=8)
def _cached_setup(method: str, hyper: tuple, num_train: int, num_classes: int) -> Setup:
    return Setup(method, dict(hyper), num_train, num_classes)


def setup(method: str, params: Mapping[str, Any], num_train: int, num_classes: int) -> Setup:
    """The :class:`Setup` of ``method`` with the hyperparameters of ``params``, shared by every run with the same
    ones (so a second dataset or seed of the same shapes compiles nothing).

    Raises:
      ValueError: an unknown ``method`` or a missing hyperparameter.
    """
    if method not in _KEYS:
        raise ValueError(f"method must be one of {', '.join(_KEYS)}, got {method!r}.")
    missing = [k for k in _KEYS[method] if k not in params]
    if missing:
        raise ValueError(f"the {method} run needs the hyperparameters {', '.join(missing)}; add them to params.")
    hyper = {k: params[k] for k in _KEYS[method]}
    hyper.update({k: params.get(k, default) for k, default in _OPTIONAL.items()})
    return _cached_setup(method, tuple(sorted(hyper.items())), int(num_train), int(num_classes))


# ---- one seed ------------------------------------------------------------------------------------------------

@jax.jit
def _model_metrics(probs, raw, target_raw, labels, test_labels, forget, remain):
    """One model's metrics: errors (%) on ``S_f``, ``S_r`` and test and the confidence attack (% of ``S_f`` below the
    threshold fitted on ``S_r`` against test) from the evaluated ``probs`` (train, test); the L1 difference of the
    stored model's ``raw`` probabilities to the target's on ``S_f`` and test. ``forget`` and ``remain`` index the
    training set. One compiled program per ``k`` (the shapes of ``forget`` and ``remain``)."""
    (train_probs, test_probs), split = probs, {"forget": forget, "remain": remain}
    out = {f"err_{name}": 100.0 * jnp.mean(jnp.argmax(train_probs[idx], 1) != labels[idx])
           for name, idx in split.items()}
    out["err_test"] = 100.0 * jnp.mean(jnp.argmax(test_probs, 1) != test_labels)
    attack = metrics.fit_confidence_threshold(metrics.true_class_confidence(train_probs[remain], labels[remain]),
                                              metrics.true_class_confidence(test_probs, test_labels))
    out["mia"] = 100.0 * jnp.mean(metrics.true_class_confidence(train_probs[forget], labels[forget]) < attack.threshold)
    out["l1_forget"] = metrics.prediction_l1(raw[0][forget], target_raw[0][forget])
    out["l1_test"] = metrics.prediction_l1(raw[1], target_raw[1])
    return out


def run_seed(method: str, params: Mapping[str, Any], train: Any, test: Any, seed: int, *, progress: bool = False,
             log: Callable[[str], None] = print, keep_predictions: bool = False) -> dict[str, Any]:
    """One seed of the experiment (module docstring): train the origin, then for each ``k`` in ``params["sizes"]``
    forget ``order[:k]`` from it chunk by chunk, retrain the target, and evaluate the three models.

    Randomness: ``k_init, k_train, k_forget, k_eval = jax.random.split(jax.random.key(seed), 4)``; the target of
    ``k`` trains with ``fold_in(k_train, k)``, chunk ``i`` of ``k`` forgets with ``fold_in(fold_in(k_forget, k), i)``,
    and ``fold_in(k_eval, k)`` draws the evaluation noise and step; the order is :func:`removal_order` of ``seed``.

    Args:
      method: ``"vi"``, ``"sgld"`` or ``"sghmc"``.
      params: the hyperparameters (a setting's ``params``), with ``sizes`` (the ``k``), ``rm_bs`` and ``eval_step``
        (one sampler step on ``S_r`` before the errors and the attack: the ICLR'22 evaluation).
      train, test: :class:`jaxunlearn.data.Dataset` objects (NHWC ``x``, int ``y``); class 0 is removed.
      seed: the run's seed.
      progress: tqdm bars inside the training loops.
      log: called with one line per stage.
      keep_predictions: also return each model's evaluated probabilities (numpy, not JSON-able), for checks.

    Returns:
      ``{"seed", "num_train", "order": the first max(sizes) indices of the order, "train_seconds", "rows"}``,
      ``rows`` one dict per ``k``: ``{"k", "origin": {...}, "processed": {...}, "target": {...}}``, each model's
      dict holding :data:`METRICS` (``seconds``: training for the origin, forgetting all ``k`` for the processed
      model, retraining for the target) and, with ``keep_predictions``, ``probs_train`` and ``probs_test``.
    """
    if params["eval_step"] and method == "vi":
        raise ValueError("eval_step=True takes one sampler step before evaluating: it applies to the chains (sgld, "
                         "sghmc), not to a variational network; set eval_step=False.")
    n = int(train.x.shape[0])
    run = setup(method, params, n, train.num_classes)
    data = (jnp.asarray(train.x), jnp.asarray(train.y, jnp.int32))
    labels, test_labels = np.asarray(train.y), np.asarray(test.y)
    x_all = jnp.concatenate([data[0], jnp.asarray(test.x)])  # one evaluation program for both sets
    order = removal_order(labels, seed)
    schedule = {k: removal_chunks(order, k, params["rm_bs"]) for k in params["sizes"]}  # validates every k first
    tag = f"[{method} seed {seed}]"

    k_init, k_train, k_forget, k_eval = jax.random.split(jax.random.key(seed), 4)
    everyone = jnp.ones(n, bool)
    trainer = run.trainer(progress)
    trainer.compile(k_init, k_train, everyone, data)
    origin, train_seconds = metrics.timed(trainer, k_init, k_train, everyone, data)
    log(f"{tag} origin: trained on {n} examples in {train_seconds:.1f} s")
    start = run.init_forgetter(origin, data, k_forget)  # every k starts from this state
    base_lr = params["lr"]

    rows = []
    for k, chunks in schedule.items():
        k_run = jax.random.fold_in(k_forget, k)
        state, weights, watch = start, run.params_of(origin), metrics.Stopwatch()
        for i, chunk in enumerate(chunks):
            args = (weights, jnp.asarray(chunk, jnp.int32), state, jax.random.fold_in(k_run, i))
            run.update.compile(*args)
            weights, state, _ = watch(run.update, *args)
            if (i + 1) % max(1, len(chunks) // 4) == 0 or i + 1 == len(chunks):
                log(f"{tag} k={k}: removed {min((i + 1) * params['rm_bs'], k)}/{k} ({watch.total:.1f} s)")
        remain = np.ones(n, bool)
        remain[order[:k]] = False
        alive = jnp.asarray(remain)
        target, retrain_seconds = metrics.timed(trainer, k_init, jax.random.fold_in(k_train, k), alive, data)
        log(f"{tag} k={k}: forgot in {watch.total:.1f} s ({len(chunks)} requests), retrained in "
            f"{retrain_seconds:.1f} s")

        key = jax.random.fold_in(k_eval, k)
        stored = {"origin": run.params_of(origin), "processed": weights, "target": run.params_of(target)}
        evaluated = stored
        if params["eval_step"]:  # one sampler step on S_r, each chain at its own step size (ICLR'22)
            lrs = {"origin": base_lr / n, "processed": state.lr, "target": base_lr / (n - k)}
            chains = {"origin": origin, "processed": state.sampler, "target": target}
            evaluated = {m: run.one_step(chains[m], key, alive, jnp.float32(lrs[m]), data).position for m in MODELS}
        raw = {m: run.probs(stored[m], key, x_all, n) for m in MODELS}
        probs = raw if evaluated is stored else {m: run.probs(evaluated[m], key, x_all, n) for m in MODELS}
        seconds = {"origin": train_seconds, "processed": watch.total, "target": retrain_seconds}
        row: dict[str, Any] = {"k": int(k)}
        for m in MODELS:
            values = _model_metrics(probs[m], raw[m], raw["target"], labels, test_labels, order[:k],
                                    np.flatnonzero(remain))
            row[m] = {name: float(v) for name, v in values.items()}
            row[m]["seconds"] = seconds[m]
            if keep_predictions:
                row[m]["probs_train"], row[m]["probs_test"] = probs[m]
        rows.append(row)
    return {"seed": int(seed), "num_train": n, "order": order[:max(params["sizes"])].tolist(),
            "train_seconds": train_seconds, "rows": rows}


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of every metric, one row per ``(k, model)``.

    Args:
      runs: :func:`run_seed` results with the same sizes.

    Returns:
      ``[{"k", "model", metric: mean, metric + "_std": std over seeds (0 for one seed), ...}]``, ``k`` ascending in
      the order of the runs' rows, models in :data:`MODELS` order.
    """
    out = []
    for i, first in enumerate(runs[0]["rows"]):
        for m in MODELS:
            entry: dict[str, Any] = {"k": first["k"], "model": m}
            for name in METRICS:
                values = np.array([r["rows"][i][m][name] for r in runs], float)
                entry[name], entry[f"{name}_std"] = float(values.mean()), float(values.std())
            out.append(entry)
    return out


def _method(setting: PaperSetting) -> str:
    """``"vi"``, ``"sgld"`` or ``"sghmc"``: the second word of the setting's name (``bif-vi-...``)."""
    return setting.name.split("-")[1]


def run(setting: PaperSetting, params: Mapping[str, Any], train: Any, test: Any, *, progress: bool,
        log: Callable[[str], None]) -> dict[str, Any]:
    """The setting's experiment for every seed of ``params["seeds"]`` (kind contract of
    :mod:`jaxunlearn.experiments.paper`).

    Returns:
      JSON-able ``{"setting", "method", "dataset", "num_train", "num_test", "seeds", "runs": [run_seed results],
      "summary": summarize(runs)}``.
    """
    seeds = tuple(params["seeds"]) if isinstance(params["seeds"], (tuple, list)) else (params["seeds"],)
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed.")
    method = _method(setting)
    runs = [run_seed(method, params, train, test, int(s), progress=progress, log=log) for s in seeds]
    return {"setting": setting.name, "method": method, "dataset": params["dataset"],
            "num_train": int(train.x.shape[0]), "num_test": int(test.x.shape[0]), "seeds": list(seeds),
            "runs": runs, "summary": summarize(runs)}


# ---- table and figure ----------------------------------------------------------------------------------------

#: table column -> (summary metric, format); errors first (the paper columns go beside them).
_COLUMNS = {
    "err S_f (≈target)": ("err_forget", "{:.1f}"),
    "err S_r ↓": ("err_remain", "{:.1f}"),
    "err test ↓": ("err_test", "{:.1f}"),
    "MIA ↑": ("mia", "{:.1f}"),
    "L1 test ↓": ("l1_test", "{:.3f}"),
    "seconds": ("seconds", "{:.1f}"),
}
#: the paper's name of our error columns (keys of ``setting.paper``).
_PAPER_NAMES = {"err S_f (≈target)": "err S_f", "err S_r ↓": "err S_r", "err test ↓": "err test"}


def _cell(entry: Mapping[str, Any], metric: str, fmt: str, several: bool) -> str:
    text = fmt.format(entry[metric])
    return f"{text}±{fmt.format(entry[metric + '_std'])}" if several else text


def _row_order(label: str) -> tuple[int, int]:
    k, model = label.split(" ", 1)
    return int(k), MODELS.index(model) if model in MODELS else len(MODELS)


def table(setting: PaperSetting, params: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """The seed's figure as a table: one row per ``(k, model)``, our columns and the paper's beside the errors.

    Rows the paper quotes but this run did not make (another ``sizes``, a smoke run) are listed with ``not run``
    in our columns, so the quoted numbers always show.
    """
    del params
    quoted = {col for row in setting.paper.values() for col in row}
    columns = ["k", "model"]
    for name in _COLUMNS:
        columns.append(name)
        if _PAPER_NAMES.get(name) in quoted:
            columns.append(f"paper {_PAPER_NAMES[name]}")
    several = len(result["seeds"]) > 1
    ours = {f"{e['k']} {e['model']}": e for e in result["summary"]}
    rows = []
    for label in sorted(set(ours) | set(setting.paper), key=_row_order):
        k, model = label.split(" ", 1)
        cells = [k, model]
        for name, (metric, fmt) in _COLUMNS.items():
            cells.append(_cell(ours[label], metric, fmt, several) if label in ours else "not run")
            if _PAPER_NAMES.get(name) in quoted:
                cells.append(paper_cell(setting, label, _PAPER_NAMES[name]))
        rows.append(cells)
    title = (f"{setting.title}: {result['dataset']}, {result['num_train']} training / {result['num_test']} test "
             f"examples, {result['method']}, seeds {', '.join(map(str, result['seeds']))}")
    legend = [
        "errors in % (mean over seeds, ± std with several); err S_f (≈target): a processed model should match its "
        "target's error on the forgotten samples; S_r: the remaining training samples.",
        "MIA ↑: % of S_f judged non-member by the confidence threshold fitted on S_r against test (ICLR'22); "
        "L1 test ↓: mean sum_c |p - p_target| on the test set, models as stored.",
        "seconds (compilation excluded): origin = training, processed = forgetting the k samples, target = retraining.",
        f"{NOT_QUOTED}: not quoted; not run: a row the paper quotes that this run did not make.",
    ]
    return render_table(setting, columns, rows, title=title, legend=legend)


def plot_errors(ax: Any, summary: Sequence[Mapping[str, Any]], title: str,
                paper: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Errors against the number removed on a matplotlib axis: S_f, S_r and test for processed (solid), target
    (dashed) and origin (dotted) models; the paper's quoted S_f errors as stars where their ``k`` was run.

    Args:
      ax: the axis. summary: :func:`summarize` rows. title: the panel's title.
      paper: a setting's ``paper`` quotes (``"~54"`` strings), or ``None``.
    """
    ks = sorted({e["k"] for e in summary})
    by = {(e["k"], e["model"]): e for e in summary}
    for split, colour, name in (("forget", "tab:red", "S_f"), ("remain", "tab:blue", "S_r"),
                                ("test", "tab:green", "test")):
        for model, style in (("processed", "-o"), ("target", "--s"), ("origin", ":x")):
            ax.plot(ks, [by[k, model][f"err_{split}"] for k in ks], style, color=colour, ms=4, label=f"{model} {name}")
    for label, cells in (paper or {}).items():
        k, model = label.split(" ", 1)
        if int(k) in ks and "err S_f" in cells:
            ax.plot(int(k), float(cells["err S_f"].lstrip("~")), "*", color="black" if model == "target" else "grey",
                    ms=9, label=f"paper {model} S_f")
    ax.set_title(title)
    ax.set_xlabel("number of class-0 samples removed")
    ax.set_ylabel("error (%)")
    ax.legend(fontsize=6, ncol=3)


def figures(setting: PaperSetting, params: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, bytes]:
    """``{"errors.png": PNG}``: :func:`plot_errors` of the run, one panel."""
    del params
    from matplotlib.figure import Figure  # no pyplot: no backend switch, no global figure state

    from jaxunlearn.io import figure_bytes

    fig = Figure(figsize=(6.0, 4.2))
    plot_errors(fig.subplots(), result["summary"], f"{setting.name} ({result['dataset']})", setting.paper)
    fig.tight_layout()
    return {"errors.png": figure_bytes(fig, dpi=110)}
