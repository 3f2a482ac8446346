"""Building classifiers and the pure functions every method consumes.

A model is a ``flax.linen`` module ``module(x, train=False) -> logits [B, C]``
and its ``variables``: ``{"params": ..., "batch_stats": ...}`` (the second
only for models with batch norm). Unlearning methods act on ``params``; the
other collections are held fixed and bound here:

- :func:`logits_fn` -> ``f(params, x) -> logits`` in eval mode;
- :func:`classifier_loss` -> ``loss(params, (x, y))`` = mean cross-entropy in
  eval mode, a :class:`jaxunlearn.curvature.LayerwiseLoss` (per-layer Fisher fast path);
- :func:`apply_model` -> ``(logits, new_model_state)`` in train or eval mode,
  with batch-norm statistics returned explicitly (nothing is mutated);
- :func:`training_loss` -> ``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``,
  train mode (dropout on, batch statistics), the signature of ``jaxunlearn.train.fit``.

Cross-entropy per example: ``l_i = logsumexp(z_i) - z_{i, y_i}``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxunlearn.curvature import LayerwiseLoss
from jaxunlearn.models.lenet import LeNet
from jaxunlearn.models.mlp import MLP
from jaxunlearn.models.resnet import ResNet18
from jaxunlearn.models.small_cnn import SmallCNN
from jaxunlearn.models.vgg import VGG
from jaxunlearn.models.vit import ViT

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP, "lenet": LeNet, "small_cnn": SmallCNN, "resnet18": ResNet18, "vgg11": VGG, "vit": ViT,
}

# Below this spatial size the unpadded 5x5 convs + pools of LeNet / SmallCNN leave nothing (16 -> 6 -> 1 -> 0).
_MIN_UNPADDED = 16


def per_example_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``l_i = logsumexp_c z_ic - z_{i y_i}``: logits ``[B, C]``, integer labels ``[B]`` -> ``[B]``."""
    if jnp.ndim(logits) != 2:
        raise ValueError(f"logits must have shape [B, C]; got {jnp.shape(logits)}.")
    if jnp.shape(labels) != jnp.shape(logits)[:1]:
        raise ValueError(
            f"labels must have shape [B] = {jnp.shape(logits)[:1]} matching logits {jnp.shape(logits)}; "
            f"got {jnp.shape(labels)}. Pass integer class indices, not one-hot vectors."
        )
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(
            f"labels must be integer class indices; got dtype {jnp.result_type(labels)}. Use labels.astype(int)."
        )
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def split_variables(variables: Any) -> tuple[Any, dict]:
    """``variables -> (params, model_state)`` where ``model_state`` holds every other collection (``batch_stats``)."""
    if "params" not in variables:
        raise ValueError(
            f"variables must hold a 'params' collection (as returned by create or module.init); got {list(variables)}."
        )
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def build(name: str, *, num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    """The module :func:`create` initialises, without initialising it (see :func:`create` for the arguments).

    With :func:`abstract_variables` it gives an import template for
    :func:`jaxunlearn.models.load_torch_state_dict` at no cost.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; choose one of {sorted(MODELS)}.")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")
    input_shape = _check_input_shape(name, input_shape)
    if name in ("lenet", "small_cnn") and "padding" not in kwargs and min(input_shape[:2]) < _MIN_UNPADDED:
        kwargs["padding"] = 2
    return MODELS[name](num_classes=num_classes, **kwargs)


def _check_input_shape(name: str, input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError as err:
        raise TypeError(f"input_shape must be a sequence of ints (one example's shape); got {input_shape!r}.") from err
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be one example's shape with positive sizes, e.g. (32, 32, 3); got {shape}.")
    if name != "mlp" and len(shape) != 3:
        raise ValueError(
            f"{name} takes images: input_shape must be (H, W, C) for one example; got {shape}. "
            "Add the channel axis for grey-scale images, e.g. (28, 28, 1)."
        )
    return shape


def create(
    name: str, *, num_classes: int, input_shape: Sequence[int], key: jax.Array, **kwargs: Any
) -> tuple[nn.Module, dict]:
    """Build the classifier ``name`` and initialise it: returns ``(module, variables)``.

    Args:
      name: one of ``"mlp"``, ``"lenet"``, ``"small_cnn"``, ``"resnet18"``, ``"vgg11"``, ``"vit"``.
      num_classes: number of output logits.
      input_shape: shape of **one** example, e.g. ``(32, 32, 3)`` (NHWC images) or ``(64,)``.
      key: PRNG key for the initial parameters.
      **kwargs: further attributes of the module (``hidden=(512, 512)``, ``stage_widths=...``, ``patch_size=...``).
        For ``"lenet"`` and ``"small_cnn"`` on inputs smaller than 16x16 (8x8 digits) ``padding`` defaults to 2,
        because the unpadded original leaves an empty feature map there.

    Returns:
      ``module`` (``module.apply(variables, x, train=...)``) and ``variables``, a dict with ``"params"``
      and, for ResNet-18, ``"batch_stats"``. Initialisation is one compiled program, cached per
      architecture, input shape and key type, and compiled without XLA's backend optimisations
      (:data:`INIT_COMPILER_OPTIONS`): it runs once, and optimising its random-number kernels (one per
      parameter array) cost ~20 s of CPU for ResNet-18, against ~2 s now. The random bits are the same
      (integer arithmetic); the values equal an optimised program's up to float32 rounding of the
      normal-distribution transforms (bit-equal for the MLP, LeNet and ResNet-18, within 6e-8 for the ViT).
      Called inside a trace (a key that is a tracer), it is traced into the caller's program (under
      ``jax.disable_jit()``, run op by op).
    """
    module = build(name, num_classes=num_classes, input_shape=input_shape, **kwargs)
    shape = _check_input_shape(name, input_shape)
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a PRNG key such as jax.random.key(0); got {type(key).__name__}.")
    try:
        hash(module)
    except TypeError:  # an unhashable attribute (a list): no compile cache
        program = _init_program.__wrapped__(module, shape, jax.typeof(key))
    else:
        traced = isinstance(key, jax.core.Tracer) or jax.config.jax_disable_jit
        program = None if traced else _init_program(module, shape, jax.typeof(key))
    variables = _init(module, key, shape) if program is None else program(key)
    return module, flax.core.unfreeze(variables)


def _init(module: nn.Module, key: jax.Array, input_shape: tuple[int, ...]) -> Any:
    return module.init({"params": key}, jnp.zeros((1,) + input_shape, jnp.float32), train=False)


#: XLA options of the initialisation program (:func:`create`): it runs once, so it is compiled fast.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.lru_cache(maxsize=None)
def _init_program(module: nn.Module, input_shape: tuple[int, ...], key_type: Any) -> Callable:
    """``key -> module.init(...)`` compiled once per (module, input shape, key type), with
    :data:`INIT_COMPILER_OPTIONS` where the backend takes them."""
    lowered = jax.jit(lambda k: _init(module, k, input_shape)).lower(key_type)
    try:
        return lowered.compile(compiler_options=INIT_COMPILER_OPTIONS)
    except Exception:  # noqa: BLE001 - a backend without the option compiles as usual
        return lowered.compile()


def abstract_variables(module: nn.Module, input_shape: Sequence[int]) -> dict:
    """The shapes and dtypes of ``module``'s variables for one example of ``input_shape``, without computing them.

    ``jax.eval_shape`` of ``module.init``: a pytree of ``jax.ShapeDtypeStruct``, free even for
    VGG-11's 133 M parameters. A template for :func:`jaxunlearn.models.load_torch_state_dict`
    when the weights come from a checkpoint anyway.
    """
    x = jax.ShapeDtypeStruct((1,) + tuple(int(d) for d in input_shape), jnp.float32)
    shapes = jax.eval_shape(lambda k, xx: module.init({"params": k}, xx, train=False), jax.random.key(0), x)
    return flax.core.unfreeze(shapes)


def apply_model(
    module: nn.Module,
    params: Any,
    model_state: dict,
    x: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """Pure forward pass: ``(logits [B, C], new_model_state)``.

    ``train=False``: eval mode (running batch-norm statistics, no dropout);
    ``model_state`` comes back unchanged. ``train=True``: batch norm normalises
    with the batch's statistics and the updated running statistics are
    returned; dropout draws its masks from ``key`` (required when the model has
    dropout).
    """
    variables = {"params": params, **model_state}
    if not train:
        return module.apply(variables, x, train=False), model_state
    rngs = {"dropout": key} if key is not None else {}
    mutable = [c for c in model_state if c == "batch_stats"]
    try:
        out = module.apply(variables, x, train=True, rngs=rngs, mutable=mutable)
    except flax.errors.InvalidRngError as err:
        raise ValueError(
            f"{type(module).__name__} uses dropout in train mode: pass key=jax.random.key(...) to apply_model."
        ) from err
    logits, updates = out
    return logits, {**model_state, **flax.core.unfreeze(updates)}


@dataclasses.dataclass(frozen=True)
class EvalForward:
    """``forward(model_state, params, x) -> logits`` of ``module`` in eval mode; equal for equal modules."""

    module: nn.Module

    def __call__(self, model_state: dict, params: Any, x: jax.Array) -> jax.Array:
        return self.module.apply({"params": params, **model_state}, x, train=False)


def logits_fn(module: nn.Module, variables: Any) -> Callable[[Any, jax.Array], jax.Array]:
    """``f(params, x) -> logits [B, C]`` in eval mode, with the non-``params`` collections of ``variables`` bound.

    ``f`` is a ``jax.tree_util.Partial`` of :class:`EvalForward` over the model state: a pytree whose leaves are
    the batch-norm statistics, so the library's jitted evaluations take it as an argument and compile once for
    every model of the same module and shapes (the original and the retrained model of a comparison, every seed),
    not once per function object.
    """
    _, model_state = split_variables(variables)
    return jax.tree_util.Partial(EvalForward(module), model_state)


def classifier_loss(module: nn.Module, variables: Any) -> LayerwiseLoss:
    """Mean cross-entropy in eval mode, ``loss(params, (x, y)) = mean_i l_i`` (:func:`per_example_cross_entropy`).

    A :class:`jaxunlearn.curvature.LayerwiseLoss`: ``loss.per_example_losses(params, batch)`` gives ``[B]``
    and ``loss.squared_grad_sum(params, batch)`` the per-layer fast path for Fisher diagonals. Batch-norm
    statistics of ``variables`` are held fixed.
    """
    _, model_state = split_variables(variables)
    return LayerwiseLoss(module, per_example_cross_entropy, variables=model_state, apply_kwargs={"train": False})


@dataclasses.dataclass(frozen=True)
class TrainingLoss:
    """``loss_fn(params, model_state, (x, y), key) -> (mean cross-entropy, new_model_state)`` in train mode.

    A frozen dataclass rather than a closure: two losses of equal modules compare
    equal, so :func:`jaxunlearn.train.loop.fit` reuses its compiled epoch across calls.
    """

    module: nn.Module

    def __call__(self, params: Any, model_state: dict, batch: Any, key: jax.Array) -> tuple[jax.Array, dict]:
        logits, new_state = apply_model(self.module, params, model_state, batch[0], train=True, key=key)
        return jnp.mean(per_example_cross_entropy(logits, batch[1])), new_state


def training_loss(module: nn.Module) -> TrainingLoss:
    """The train-mode loss of ``module`` (:class:`TrainingLoss`)."""
    return TrainingLoss(module)
