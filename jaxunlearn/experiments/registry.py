"""The methods the forgetting comparison runs, each configured from one :class:`MethodContext`.

A builder turns the trained model (module, variables) and the training recipe
into an :class:`jaxunlearn.methods.Unlearner` plus the data its ``init``
takes. Hyperparameters are the originals' defaults where those carry over to
any model (SSD's lambda and alpha, SCRUB's schedule, Bad Teacher's 30 %
retain fraction); learning rates and epoch counts that the originals set for
ResNet-18 on CIFAR are scaled to the small models of the embedded data and say
so in ``NOTES``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import optax

from jaxunlearn import methods, models
from jaxunlearn.data import ForgetSplit
from jaxunlearn.methods.lipschitz import train_mode_apply
from jaxunlearn.train.optim import torch_sgd


class MethodContext(NamedTuple):
    """What a builder may use: the model, its trained variables, the split and the training recipe."""

    module: Any
    variables: dict
    split: ForgetSplit
    num_classes: int
    input_shape: tuple[int, ...]
    train_epochs: int
    batch_size: int
    learning_rate: float


class MethodSpec(NamedTuple):
    """``unlearner`` and the data its ``init`` receives (``"retain"``, ``"full_train"`` or ``None``)."""

    unlearner: methods.Unlearner
    init_data: str | None


def _loss(ctx: MethodContext) -> Callable:
    return models.classifier_loss(ctx.module, ctx.variables)


def _logits(ctx: MethodContext) -> Callable:
    return models.logits_fn(ctx.module, ctx.variables)


def _init_fn(ctx: MethodContext) -> Callable:
    return lambda key: models.create(
        _model_name(ctx), num_classes=ctx.num_classes, input_shape=ctx.input_shape, key=key
    )[1]["params"]


def _model_name(ctx: MethodContext) -> str:
    return {v: k for k, v in models.MODELS.items()}.get(type(ctx.module), "mlp")


def _ssd(ctx):
    return MethodSpec(methods.ssd(_loss(ctx), alpha=10.0, lambda_=1.0), "full_train")


def _lfssd(ctx):
    return MethodSpec(methods.lfssd(_logits(ctx), alpha=10.0, lambda_=1.0), "full_train")


def _jit(ctx):
    apply_fn = train_mode_apply(ctx.module, ctx.variables)
    return MethodSpec(methods.lipschitz(apply_fn, sigma=0.5, eta=3e-4, batch_size=128), None)


def _finetune(ctx):
    opt = torch_sgd(0.02, momentum=0.9, weight_decay=5e-4)
    return MethodSpec(methods.finetune(_loss(ctx), opt, num_epochs=5, batch_size=ctx.batch_size), "retain")


def _neggrad(ctx):
    opt = torch_sgd(0.01, momentum=0.9, weight_decay=5e-4)
    return MethodSpec(methods.neggrad(_loss(ctx), opt, num_epochs=2, batch_size=ctx.batch_size), "retain")


def _neggrad_plus(ctx):
    opt = optax.sgd(0.05)
    return MethodSpec(methods.neggrad_plus(_loss(ctx), opt, beta=0.8, num_epochs=1, batch_size=ctx.batch_size), "retain")


def _amnesiac(ctx):
    opt = optax.adam(3 * ctx.learning_rate)
    spec = methods.amnesiac(_loss(ctx), opt, num_classes=ctx.num_classes, num_epochs=3, batch_size=128)
    return MethodSpec(spec, "retain")


def _bad_teacher(ctx):
    opt = optax.adam(3 * ctx.learning_rate)
    return MethodSpec(methods.bad_teacher(_logits(ctx), _init_fn(ctx), opt, num_epochs=3, batch_size=256), "retain")


def _scrub(ctx):
    opt = torch_sgd(0.05, momentum=0.9, weight_decay=5e-4, clip_norm=1.0)
    return MethodSpec(methods.scrub(_logits(ctx), opt, alpha=0.001, gamma=0.99, batch_size=ctx.batch_size), "retain")


def _influence(ctx):
    logits = _logits(ctx)
    gauss_newton = (lambda p, batch: logits(p, batch[0]),
                    lambda out, batch: models.per_example_cross_entropy(out, batch[1]).mean())
    return MethodSpec(methods.influence(_loss(ctx), solver="cg", damping=1e-2, gauss_newton=gauss_newton), "retain")


BUILDERS: dict[str, Callable[[MethodContext], MethodSpec]] = {
    "finetune": _finetune,
    "neggrad": _neggrad,
    "neggrad+": _neggrad_plus,
    "amnesiac": _amnesiac,
    "bad_teacher": _bad_teacher,
    "scrub": _scrub,
    "influence": _influence,
    "ssd": _ssd,
    "lfssd": _lfssd,
    "jit": _jit,
}

#: Every method of the comparison; "original" and "retrain" are the two reference rows.
ALL_METHODS = ("original", "retrain", *BUILDERS)

NOTES = {
    "finetune": "5 epochs SGD 0.02, momentum 0.9, wd 5e-4 (as the SSD reference)",
    "neggrad": "gradient ascent on the forget set, 2 epochs SGD 0.01, momentum 0.9 (no reference default)",
    "neggrad+": "0.8 x retain descent - 0.2 x forget ascent, 1 epoch SGD 0.05",
    "amnesiac": "random labels, 3 epochs, batch 128, Adam 3e-3 (reference 1e-4 is a few tiny steps on digits)",
    "bad_teacher": "KL to random/original teachers, 30% retain, batch 256, 3 epochs Adam 3e-3 (reference 1 epoch 1e-4)",
    "scrub": "full-class defaults (alpha 0.001, gamma 0.99, 3 epochs, msteps 2, clip 1), SGD 0.05 (reference 5e-4)",
    "influence": "one Newton step on the Gauss-Newton matrix (the Hessian is indefinite), CG, damping 1e-2",
    "ssd": "lambda 1, alpha 10, batch-squared importances over the class-sorted full-train order",
    "lfssd": "label-free SSD, lambda 1, alpha 10",
    "jit": "the reference VGG full-class setting: sigma 0.5, eta 3e-4, 25 samples, one SGD pass, accumulated grads",
}


def build_method(name: str, ctx: MethodContext) -> MethodSpec:
    if name not in BUILDERS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(ALL_METHODS)} (or 'all').")
    return BUILDERS[name](ctx)


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
