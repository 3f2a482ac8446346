"""The methods the forgetting comparison runs, each configured from one :class:`MethodContext`.

The methods come from the library's one registry
(:mod:`jaxunlearn.methods.registry`), built for the trained model as a
:class:`~jaxunlearn.methods.registry.ClassifierProblem`; this module only
holds the comparison's settings. Every method's ``init`` receives the full
training set in SSD's order (``split.full_train``) and one request, the
positions of the forget examples in it (``split.full_train_request``).
Hyperparameters are the originals' defaults where those carry over to
any model (SSD's lambda and alpha, SCRUB's schedule, Bad Teacher's 30 %
retain fraction); learning rates and epoch counts that the originals set for
ResNet-18 on CIFAR are scaled to the small models of the embedded data and say
so in ``NOTES``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import optax

from jaxunlearn import models
from jaxunlearn.data import ForgetSplit
from jaxunlearn.methods.base import Unlearner
from jaxunlearn.methods.lipschitz import train_mode_apply
from jaxunlearn.methods.registry import ClassifierProblem, build
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
        return models.create(name, num_classes=ctx.num_classes, input_shape=ctx.input_shape, key=key)[1]["params"]

    return init_fn


def settings(name: str, ctx: MethodContext) -> dict:
    """The settings of method ``name`` in the comparison (tuned for the embedded data; see :data:`NOTES`)."""
    b = ctx.batch_size
    return {
        "finetune": dict(optimizer=torch_sgd(0.02, momentum=0.9, weight_decay=5e-4), num_epochs=5, batch_size=b),
        "neggrad": dict(optimizer=torch_sgd(0.01, momentum=0.9, weight_decay=5e-4), num_epochs=2, batch_size=b),
        "neggrad+": dict(optimizer=optax.sgd(0.05), beta=0.8, num_epochs=1, batch_size=b),
        "amnesiac": dict(optimizer=optax.adam(3 * ctx.learning_rate), num_epochs=3, batch_size=128),
        "bad_teacher": dict(optimizer=optax.adam(3 * ctx.learning_rate), num_epochs=3, batch_size=256),
        "scrub": dict(optimizer=torch_sgd(0.05, momentum=0.9, weight_decay=5e-4, clip_norm=1.0), alpha=0.001,
                      gamma=0.99, batch_size=b),
        "influence": dict(solver="cg", damping=1e-2),
        "ssd": dict(alpha=10.0, lambda_=1.0),
        "lfssd": dict(alpha=10.0, lambda_=1.0),
        "jit": dict(sigma=0.5, eta=3e-4, batch_size=128),
    }[name]


#: The methods of the comparison, in table order; "original" and "retrain" are the two reference rows.
COMPARED = ("finetune", "neggrad", "neggrad+", "amnesiac", "bad_teacher", "scrub", "influence", "ssd", "lfssd", "jit")
ALL_METHODS = ("original", "retrain", *COMPARED)

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


def build_method(name: str, ctx: MethodContext) -> Unlearner:
    """Method ``name`` of :data:`COMPARED`, configured for the trained model of ``ctx``."""
    if name not in COMPARED:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(ALL_METHODS)} (or 'all').")
    return build(name, problem(ctx), **settings(name, ctx))


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
