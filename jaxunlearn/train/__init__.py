"""Training: optax loops with jitted steps (scanned epochs), many seeds at once, classifiers, checkpoints.

``fit`` trains any ``loss_fn(params, model_state, batch, key) -> (loss, model_state)``;
``train_classifier`` wraps it for flax classifiers (train mode: dropout and batch-norm
statistics); ``train_many_seeds`` vmaps whole runs over seeds (the retrained reference
models); ``accuracy`` evaluates in eval mode; ``save_checkpoint``/``load_checkpoint``
store any pytree atomically.
"""

from jaxunlearn.train.checkpoint import load_checkpoint, save_checkpoint
from jaxunlearn.train.classifier import (
    accuracy,
    batched_logits,
    train_classifier,
    train_classifier_many_seeds,
)
from jaxunlearn.train.losses import distill_kl, kl_to_target
from jaxunlearn.train.loop import (
    TrainState,
    batch_sizes,
    epoch_order,
    fit,
    init_train_state,
    make_epoch,
    make_step,
    params_only,
    split_train_key,
    with_key,
)
from jaxunlearn.train.optim import torch_sgd
from jaxunlearn.train.seeds import train_many_seeds

__all__ = [
    "TrainState", "accuracy", "batch_sizes", "batched_logits", "distill_kl", "epoch_order", "fit",
    "init_train_state", "kl_to_target", "load_checkpoint", "make_epoch", "make_step", "params_only",
    "save_checkpoint", "split_train_key", "torch_sgd", "train_classifier",
    "train_classifier_many_seeds", "train_many_seeds", "with_key",
]
