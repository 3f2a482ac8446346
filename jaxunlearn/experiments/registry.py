"""The methods the forgetting comparison runs, and their settings as plain data.

The methods come from the library's one registry
(:mod:`jaxunlearn.methods.registry`), built for the trained model as a
:class:`~jaxunlearn.methods.registry.ClassifierProblem`; this module holds the
comparison's settings. Every method's ``init`` receives the full training set
in SSD's order (``split.full_train``) and one request, the positions of the
forget examples in it (``split.full_train_request``).

Settings are plain values (numbers, strings, booleans, and an optimizer
written as a table such as ``{"name": "sgd", "lr": 0.02, "momentum": 0.9,
"weight_decay": 5e-4, "clip_norm": None}``), so they can be printed, written
to a config file, overridden from the command line (``--set ssd.alpha=5``,
:mod:`jaxunlearn.experiments.config`) and recorded with the results. The one
place that turns them into optax objects is :func:`make_optimizer`;
:func:`build_method` does it when the method is configured.

:data:`SETTINGS` has one entry per method: its settings under the
``"digits"`` profile (the embedded digits and the other small-image datasets,
MNIST and Fashion-MNIST) and, where they differ, under the ``"cifar"`` profile
(CIFAR-10/100/20, overriding the digits entry key by key). A new method is one
entry; every key of its entry can then be set from the command line. The two
side by side (digits settings chosen from ``jaxunlearn sweep`` and ``forget
--seeds 0`` runs on digits, MLP, ``class:3``; CIFAR settings those of the
reference code, ResNet-18 for SSD and the baselines, VGG for JiT):

===========  ==================================================  ==========================================
method       digits / mlp (this library's defaults)              cifar (the originals' settings)
===========  ==================================================  ==========================================
finetune     5 epochs SGD 0.02, momentum 0.9, wd 5e-4, batch 64  same (SSD reference)
neggrad      2 epochs SGD 0.014, momentum 0.9, wd 5e-4           SGD 0.01 (no reference setting)
neggrad+     beta 0.9, 1 epoch SGD 0.07                          beta 0.8, SGD 0.05 (no reference setting)
amnesiac     3 epochs Adam 3e-3, batch 128                       3 epochs Adam 1e-4, batch 128
bad_teacher  3 epochs Adam 3e-3, batch 256, 30 % retain          1 epoch Adam 1e-4, batch 256, 30 % retain
scrub        SGD 0.05 (clip 1), alpha 0.001, gamma 0.99          SGD 5e-4 (clip 1), alpha 0.001, gamma 0.99
influence    CG, damping 2e-3, Gauss-Newton                      damping 1e-2 (no reference setting)
ssd          lambda 1, alpha 10                                  lambda 1, alpha 10
lfssd        lambda 1, alpha 3                                   lambda 1, alpha 10
jit          sigma 0.4, eta 2e-4, batch 128, 25 samples          sigma 0.5, eta 3e-4, batch 128, 25 samples
===========  ==================================================  ==========================================

Why the digits settings depart from the originals (forget-train / retain-test
accuracy, mean ± std over seeds 0, 1, 2 where given, else seed 0; the original
model 1.000 / 0.965, the retrained one 0.000 / 0.965): learning rates and epoch
counts set for ResNet-18 on 50,000 CIFAR images are a few tiny steps on 1,347
digits (amnesiac, Bad Teacher, SCRUB). LFSSD's label-free importances select
fewer parameters than SSD's: alpha 10 changes 1 of 85,002 parameters of the
MLP (its row equals the original's), alpha 5 changes 0.1 % (1.000 / 0.963),
alpha 3 5.8 % (0.039 ± .021 / 0.943 ± .008), alpha 2.5 already costs 12 points
(0.000 / 0.847). JiT trades forgetting against retain accuracy smoothly on this
model, with no setting that forgets fully at a small cost: the reference
sigma 0.5, eta 3e-4 gives 0.066 / 0.854 (16 points lost in the issue's run),
sigma 0.3, eta 2e-4 0.151 ± .034 / 0.846 ± .025, sigma 0.4, eta 2e-4 (the
default) 0.382 ± .074 / 0.889 ± .017, sigma 0.3, eta 1.5e-4 0.484 ± .041 /
0.906 ± .012. NegGrad at SGD 0.01 barely moves (0.847 / 0.941); 0.014 gives
0.474 ± .315 / 0.923 ± .028 (it is unstable across seeds at any rate between
doing nothing and collapsing: 0.02 collapses). NegGrad+ at SGD 0.05, beta 0.8
collapses retain accuracy on seed 2 (0.423; 0.707 ± .204); SGD 0.07, beta 0.9
gives 0.000 / 0.894 ± .041. Influence at damping 1e-2 moves little
(0.869 / 0.965), 2e-3 forgets (0.000 / 0.946 ± .015). Fine-tuning on the
retained data stays a weak forgetter at any nearby setting (10 epochs, SGD
0.05: 0.686 / 0.968) and keeps the reference's. ``jaxunlearn sweep --grid
jit.eta=1e-4,2e-4,3e-4`` draws any of these trade-offs. :data:`NOTES` has one
line per method.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import optax

from jaxunlearn import models
from jaxunlearn.data import ForgetSplit
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.lipschitz import train_mode_apply
from jaxunlearn.methods.registry import ClassifierProblem, build
from jaxunlearn.train.optim import torch_sgd


class MethodContext(NamedTuple):
    """What a builder may use: the model, its trained variables, the split, the training recipe and, in
    ``settings``, the resolved settings of the methods (``{name: settings}``; a method missing there runs with
    its ``"digits"`` defaults, :func:`default_settings`); ``model_options``: the classifier's further
    attributes (:func:`jaxunlearn.models.create`), so a fresh model has the trained one's shapes."""

    module: Any
    variables: dict
    split: ForgetSplit
    num_classes: int
    input_shape: tuple[int, ...]
    train_epochs: int
    batch_size: int
    learning_rate: float
    settings: Mapping[str, Mapping[str, Any]] | None = None
    model_options: Mapping[str, Any] | None = None


def problem(ctx: MethodContext) -> ClassifierProblem:
    """The trained classifier of ``ctx`` as the pure functions the methods take (JiT in train mode)."""
    return ClassifierProblem(
        loss_fn=models.classifier_loss(ctx.module, ctx.variables),
        logits_fn=models.logits_fn(ctx.module, ctx.variables),
        init_fn=_init_fn(ctx),
        num_classes=ctx.num_classes,
        train_apply=train_mode_apply(ctx.module, ctx.variables),
    )


def _init_fn(ctx: MethodContext) -> Callable:
    name = {v: k for k, v in models.MODELS.items()}.get(type(ctx.module), "mlp")

    def init_fn(key):
        return models.create(name, num_classes=ctx.num_classes, input_shape=ctx.input_shape, key=key,
                             **(ctx.model_options or {}))[1]["params"]

    return init_fn


# ---- optimizers as data ---------------------------------------------------------------------------------

#: The optimizers a setting may name, with the defaults of their other keys (PyTorch's, see
#: :mod:`jaxunlearn.train.optim`); ``lr`` has no default.
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "weight_decay": 0.0, "clip_norm": None},
    "adam": {"b1": 0.9, "b2": 0.999, "weight_decay": 0.0, "clip_norm": None},
}


def sgd(lr: float, *, momentum: float = 0.0, weight_decay: float = 0.0, clip_norm: float | None = None) -> dict:
    """The plain-data form of PyTorch SGD (coupled weight decay, clipping first): see :func:`make_optimizer`."""
    return {"name": "sgd", "lr": lr, "momentum": momentum, "weight_decay": weight_decay, "clip_norm": clip_norm}


def adam(lr: float, *, b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0,
         clip_norm: float | None = None) -> dict:
    """The plain-data form of PyTorch Adam (coupled weight decay, clipping first): see :func:`make_optimizer`."""
    return {"name": "adam", "lr": lr, "b1": b1, "b2": b2, "weight_decay": weight_decay, "clip_norm": clip_norm}


def make_optimizer(spec: Mapping[str, Any]) -> optax.GradientTransformation:
    """The optax optimizer an optimizer setting describes.

    ``{"name": "sgd", "lr", "momentum", "weight_decay", "clip_norm"}`` is PyTorch's
    ``SGD(lr, momentum, weight_decay)`` after ``clip_grad_norm_(clip_norm)``:
    :func:`jaxunlearn.train.optim.torch_sgd`. ``{"name": "adam", "lr", "b1", "b2", "weight_decay",
    "clip_norm"}`` is PyTorch's ``Adam(lr, betas=(b1, b2), weight_decay)``: the gradient clipped to global
    norm ``clip_norm`` (when given), plus ``weight_decay * theta`` (coupled L2), then ``optax.adam``.
    Missing keys take :data:`OPTIMIZERS`' defaults.

    Args:
      spec: the setting (a mapping with ``name`` and ``lr``).

    Returns:
      An ``optax.GradientTransformation``.

    Raises:
      ValueError: an unknown optimizer name or key, or a missing ``lr``.
    """
    name = spec.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name {name!r} is not one of {', '.join(OPTIMIZERS)}.")
    unknown = sorted(set(spec) - {"name", "lr", *OPTIMIZERS[name]})
    if unknown or "lr" not in spec:
        raise ValueError(f"a {name} optimizer takes lr (required), {', '.join(OPTIMIZERS[name])}; "
                         f"got {sorted(spec)}.")
    s = {**OPTIMIZERS[name], **spec}
    if name == "sgd":
        return torch_sgd(s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"], clip_norm=s["clip_norm"])
    parts = []
    if s["clip_norm"] is not None:
        if s["clip_norm"] <= 0:
            raise ValueError(f"clip_norm must be positive; got {s['clip_norm']}.")
        parts.append(optax.clip_by_global_norm(s["clip_norm"]))
    if s["weight_decay"]:
        parts.append(optax.add_decayed_weights(s["weight_decay"]))
    parts.append(optax.adam(s["lr"], b1=s["b1"], b2=s["b2"]))
    return optax.chain(*parts)


#: The keys a training optimizer table takes beyond :func:`make_optimizer`'s: step decay and warm-up, in epochs.
SCHEDULE_KEYS = {"milestones": (), "gamma": 0.1, "warmup_epochs": 0}


def make_training_optimizer(spec: Mapping[str, Any], *, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer of a training recipe: :func:`make_optimizer`'s table plus a PyTorch-style schedule.

    ``milestones`` (epochs), ``gamma`` and ``warmup_epochs`` describe the originals' pretraining schedule
    (``WarmUpLR`` then ``MultiStepLR``): over the first ``warmup_epochs`` epochs the rate rises linearly,
    ``lr * (t + 1) / warmup_steps`` at step ``t``; after them it is ``lr * gamma ** k`` in epoch ``e``, with
    ``k`` the number of milestones ``<= e``. Without those keys it is :func:`make_optimizer`'s optimizer.

    Args:
      spec: the table, e.g. ``{"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
        "milestones": (60, 120, 160), "gamma": 0.2, "warmup_epochs": 1}``.
      steps_per_epoch: optimizer steps in one epoch (``ceil(examples / batch size)``).

    Returns:
      An ``optax.GradientTransformation``.

    Raises:
      ValueError: an unknown key or optimizer, a milestone that is not a positive integer, or a ``gamma``
        outside ``(0, 1]``.
    """
    schedule = {**SCHEDULE_KEYS, **{k: spec[k] for k in SCHEDULE_KEYS if k in spec}}
    table = {k: v for k, v in spec.items() if k not in SCHEDULE_KEYS}
    milestones = tuple(schedule["milestones"])
    if any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in milestones):
        raise ValueError(f"milestones must be positive integers (epochs); got {milestones}.")
    if not 0 < schedule["gamma"] <= 1:
        raise ValueError(f"gamma must be in (0, 1]; got {schedule['gamma']}.")
    warm = int(schedule["warmup_epochs"]) * steps_per_epoch
    if not milestones and not warm:
        return make_optimizer(table)
    lr, gamma = float(table.get("lr", 0.0)), float(schedule["gamma"])
    bounds = jnp.asarray(milestones, jnp.int32) * steps_per_epoch

    def rate(step):
        decayed = lr * gamma ** jnp.sum(step >= bounds)
        return jnp.where(step < warm, lr * (step + 1) / max(warm, 1), decayed) if warm else decayed

    return make_optimizer({**table, "lr": rate})


# ---- the settings -----------------------------------------------------------------------------------------

#: The profiles of :data:`SETTINGS` and the datasets each one serves.
PROFILES: dict[str, tuple[str, ...]] = {
    "digits": ("digits", "mnist", "fashion_mnist", "synthetic_mnist", "synthetic_fashion_mnist"),
    "cifar": ("cifar10", "cifar100", "cifar20", "synthetic_cifar10", "synthetic_cifar100", "synthetic_cifar20"),
}

#: Per method, its settings under the ``"digits"`` profile and (overriding those key by key) under ``"cifar"``
#: (module docstring). Every key listed is settable (``--set METHOD.KEY=VALUE``); no other key is.
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "finetune": {"digits": dict(optimizer=sgd(0.02, momentum=0.9, weight_decay=5e-4), num_epochs=5, batch_size=64)},
    "neggrad": {"digits": dict(optimizer=sgd(0.014, momentum=0.9, weight_decay=5e-4), num_epochs=2, batch_size=64),
                "cifar": dict(optimizer=sgd(0.01, momentum=0.9, weight_decay=5e-4))},
    "neggrad+": {"digits": dict(optimizer=sgd(0.07), beta=0.9, num_epochs=1, batch_size=64),
                 "cifar": dict(optimizer=sgd(0.05), beta=0.8)},
    "amnesiac": {"digits": dict(optimizer=adam(3e-3), num_epochs=3, batch_size=128),
                 "cifar": dict(optimizer=adam(1e-4))},
    "bad_teacher": {"digits": dict(optimizer=adam(3e-3), num_epochs=3, batch_size=256, retain_fraction=0.3,
                                   temperature=1.0),
                    "cifar": dict(optimizer=adam(1e-4), num_epochs=1)},
    "scrub": {"digits": dict(optimizer=sgd(0.05, momentum=0.9, weight_decay=5e-4, clip_norm=1.0), alpha=0.001,
                             gamma=0.99, temperature=4.0, num_epochs=3, msteps=2, batch_size=64),
              "cifar": dict(optimizer=sgd(5e-4, momentum=0.9, weight_decay=5e-4, clip_norm=1.0))},
    "influence": {"digits": dict(solver="cg", damping=2e-3), "cifar": dict(damping=1e-2)},
    "ssd": {"digits": dict(alpha=10.0, lambda_=1.0, batch_size=64)},
    "lfssd": {"digits": dict(alpha=3.0, lambda_=1.0, batch_size=64),
              "cifar": dict(alpha=10.0)},
    "jit": {"digits": dict(sigma=0.4, eta=2e-4, num_samples=25, batch_size=128, num_epochs=1, accumulate_grads=True),
            "cifar": dict(sigma=0.5, eta=3e-4)},
    "random_labels": {"digits": dict(optimizer=sgd(0.013, momentum=0.9, weight_decay=5e-4), num_epochs=10,
                                     batch_size=256)},
    "salun": {"digits": dict(optimizer=sgd(0.013, momentum=0.9, weight_decay=5e-4), fraction=0.5, num_epochs=10,
                             batch_size=256)},
    "l1_sparse": {"digits": dict(optimizer=sgd(0.05, momentum=0.9, weight_decay=5e-4), gamma=1e-3, num_epochs=10,
                                 batch_size=64),
                  "cifar": dict(optimizer=sgd(0.01, momentum=0.9, weight_decay=5e-4), gamma=1e-4, batch_size=256)},
    "unsir": {"digits": dict(impair_optimizer=adam(3e-3), repair_optimizer=adam(3e-3), noise_optimizer=adam(0.1),
                             lam=1.0, noise_batch_size=256, noise_steps=40, noise_copies=5, samples_per_class=1000,
                             batch_size=256),
              "cifar": dict(impair_optimizer=adam(0.02), repair_optimizer=adam(0.01), lam=0.1, noise_copies=20)},
    "boundary_shrink": {"digits": dict(optimizer=sgd(2e-4, momentum=0.9), epsilon=0.25, num_epochs=10,
                                       batch_size=64),
                        "cifar": dict(optimizer=sgd(1e-5, momentum=0.9), epsilon=0.1)},
    "boundary_expand": {"digits": dict(optimizer=sgd(1e-3, momentum=0.9), num_epochs=10, batch_size=64),
                        "cifar": dict(optimizer=sgd(1e-5, momentum=0.9))},
}

#: The comparison's reading of each method's settings (digits profile; module docstring for CIFAR).
NOTES = {
    "finetune": "5 epochs SGD 0.02, momentum 0.9, wd 5e-4 (as the SSD reference)",
    "neggrad": "gradient ascent on the forget set, 2 epochs SGD 0.014, momentum 0.9 (0.01 barely moves on digits, "
               "0.02 collapses; no reference default)",
    "neggrad+": "0.9 x retain descent - 0.1 x forget ascent, 1 epoch SGD 0.07 (0.8 and 0.05 collapse one seed)",
    "amnesiac": "random labels, 3 epochs, batch 128, Adam 3e-3 (reference 1e-4 is a few tiny steps on digits)",
    "bad_teacher": "KL to random/original teachers, 30% retain, batch 256, 3 epochs Adam 3e-3 (reference 1 epoch 1e-4)",
    "scrub": "full-class defaults (alpha 0.001, gamma 0.99, 3 epochs, msteps 2, clip 1), SGD 0.05 (reference 5e-4)",
    "influence": "one Newton step on the Gauss-Newton matrix (the Hessian is indefinite), CG, damping 2e-3 "
                 "(1e-2 barely moves on digits)",
    "ssd": "lambda 1, alpha 10 (the reference), batch-squared importances over the class-sorted full-train order",
    "lfssd": "label-free SSD, lambda 1, alpha 3 (the reference's 10 changes 1 of 85,002 MLP parameters: no effect)",
    "jit": "sigma 0.4, eta 2e-4, 25 samples, one SGD pass, accumulated grads (the reference VGG sigma 0.5, "
           "eta 3e-4 costs 11-16 points of retain accuracy on the MLP)",
    "random_labels": "forget labels uniform over all classes, then retain, 10 epochs SGD 0.013 (as SalUn's CIFAR-10)",
    "salun": "random labels on the top 50% of weights by forget-gradient saliency, 10 epochs SGD 0.013 (as SalUn)",
    "l1_sparse": "retain fine-tuning + gamma_t |theta|_1, gamma 1e-3 decaying linearly, SGD 0.05, batch 64 "
                 "(reference gamma 1e-4, lr 0.01, batch 256: ~5 steps an epoch on digits)",
    "unsir": "noise learned 40 Adam steps, lambda 1 (reference 0.1 blows up on 8x8 inputs), impair + repair one "
             "epoch each, Adam 3e-3 (reference 0.02 / 0.01), 5 noise copies (reference 20)",
    "boundary_shrink": "FGSM eps 0.25 (reference 0.1 relabels only 80%), 10 epochs SGD 2e-4 (reference 1e-5)",
    "boundary_expand": "shadow class, 10 epochs SGD 1e-3 (reference 1e-5; 1e-2 collapses retain accuracy)",
}

#: The methods of the comparison, in table order; "original" and "retrain" are the two reference rows.
COMPARED = tuple(SETTINGS)
ALL_METHODS = ("original", "retrain", *COMPARED)


def profile_of(dataset: str) -> str:
    """The profile of :data:`SETTINGS` that serves ``dataset`` (:data:`PROFILES`; ``"digits"`` for any other)."""
    return next((p for p, names in PROFILES.items() if dataset in names), "digits")


def merge_settings(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """``base`` with ``override`` applied key by key, nested tables (the optimizer) merged rather than replaced;
    an optimizer whose ``name`` changes starts from the new optimizer's defaults (:data:`OPTIMIZERS`), keeping
    only ``lr``."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            if "name" in value and value["name"] != old.get("name") and value["name"] in OPTIMIZERS:
                old = {"name": old.get("name"), "lr": old.get("lr"), **OPTIMIZERS[value["name"]]}
            out[key] = merge_settings(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def default_settings(name: str, profile: str = "digits") -> dict:
    """The settings of method ``name`` under ``profile`` (a deep copy; :data:`SETTINGS`)."""
    if name not in SETTINGS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(COMPARED)}.")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}.")
    entry = SETTINGS[name]
    return merge_settings(entry["digits"], entry.get(profile, {}))


def method_kwargs(settings: Mapping[str, Any]) -> dict:
    """The keyword arguments of the library's builder: plain settings with every optimizer built
    (:func:`make_optimizer`; an optimizer is a table whose ``name`` is one of :data:`OPTIMIZERS`, such as
    ``optimizer`` or UNSIR's ``impair_optimizer``)."""
    def is_optimizer(v):
        return isinstance(v, Mapping) and v.get("name") in OPTIMIZERS

    return {k: make_optimizer(v) if is_optimizer(v) else v for k, v in settings.items()}


def build_method(name: str, ctx: MethodContext, settings: Mapping[str, Any] | None = None) -> Unlearner:
    """Method ``name`` of :data:`COMPARED`, configured for the trained model of ``ctx``.

    Args:
      name: the method.
      ctx: the trained model and split.
      settings: the method's plain settings; default ``ctx.settings[name]``, else :func:`default_settings`.

    Returns:
      The configured :class:`~jaxunlearn.methods.base.Unlearner`.
    """
    if name not in COMPARED:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(ALL_METHODS)} (or 'all').")
    if settings is None:
        settings = (ctx.settings or {}).get(name) or default_settings(name)
    return build(name, problem(ctx), **method_kwargs(settings))


def resolve_methods(names: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"all"`` or a comma-separated list -> method names, validated; "original" and "retrain" always run."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names or "all" in names:
        return ALL_METHODS
    unknown = [n for n in names if n not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(ALL_METHODS)} or 'all'.")
    return tuple(dict.fromkeys(["original", "retrain", *names]))
