"""Classifier architectures (flax linen) and PyTorch weight import.

Every model is ``module(x, train=False) -> logits [B, C]`` with NHWC images;
batch norm keeps running statistics in the ``"batch_stats"`` collection and
dropout draws from the ``"dropout"`` rng stream, both only in train mode.
:func:`create` builds and initialises one by name; :func:`logits_fn`,
:func:`classifier_loss` and :func:`apply_model` turn it into the pure
functions the methods take.
"""

from jaxunlearn.models import conv_forms, torch_import
from jaxunlearn.models.classifier import (
    MODELS,
    abstract_variables,
    apply_model,
    build,
    classifier_loss,
    create,
    logits_fn,
    per_example_cross_entropy,
    split_variables,
    training_loss,
)
from jaxunlearn.models.lenet import LeNet
from jaxunlearn.models.mlp import MLP
from jaxunlearn.models.resnet import BasicBlock, ResNet18
from jaxunlearn.models.small_cnn import SmallCNN
from jaxunlearn.models.torch_import import export_torch_state_dict, load_torch_state_dict, read_npz, torch_names
from jaxunlearn.models.vgg import VGG, VGG11_CFG
from jaxunlearn.models.vit import ViT

__all__ = [
    "MODELS", "MLP", "LeNet", "SmallCNN", "BasicBlock", "ResNet18", "VGG", "VGG11_CFG", "ViT",
    "abstract_variables", "apply_model", "build", "classifier_loss", "conv_forms", "create", "export_torch_state_dict",
    "load_torch_state_dict",
    "logits_fn", "per_example_cross_entropy", "read_npz", "split_variables", "torch_import", "torch_names",
    "training_loss",
]
