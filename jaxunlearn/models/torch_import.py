"""Import (and export) PyTorch ``state_dict`` s as flax variables, without PyTorch.

The papers' published checkpoints are PyTorch ``state_dict`` s. Convert one
to numpy arrays on the PyTorch side, e.g.::

    np.savez("resnet18.npz", **{k: v.detach().cpu().numpy() for k, v in torch.load(path).items()})

and load it here with :func:`read_npz` and :func:`load_torch_state_dict`.
Conversions (flax keeps NHWC images and ``y = x W``):

- ``nn.Linear``: ``weight`` ``[out, in]`` -> ``kernel = weight.T`` ``[in, out]``; ``bias`` as is.
- ``nn.Conv2d``: ``weight`` ``[O, I, kh, kw]`` (OIHW) -> ``kernel`` ``[kh, kw, I, O]`` (HWIO).
- ``nn.BatchNorm2d``: ``weight`` -> ``scale``, ``bias`` -> ``bias`` (``params``);
  ``running_mean`` -> ``mean``, ``running_var`` -> ``var`` (``batch_stats``);
  ``num_batches_tracked`` is ignored.
- Flatten order: PyTorch flattens NCHW feature maps as ``(C, H, W)`` before the
  first linear layer of LeNet / SmallCNN / VGG (and the MLP on images). Our
  models flatten NHWC maps in that same ``(C, H, W)`` order
  (:func:`jaxunlearn.models._common.flatten_chw`), so that weight needs no
  permutation and any input size works.

Expected key names (those of the original repositories):

- :class:`~jaxunlearn.models.MLP`: ``linear1.weight``, ``linear1.bias``, ... ``linear{L}.*``
  (``mcmcMLP`` of ``fshp971/mcmc-unlearning``).
- :class:`~jaxunlearn.models.LeNet`: ``conv1.*, conv2.*, fc1.*, fc2.*, fc3.*``
  (``LeNet`` of ``fshp971/mcmc-unlearning`` / ``fshp971/BIF``).
- :class:`~jaxunlearn.models.SmallCNN`: ``conv1.*, conv2.*, fc1.*, fc2.*``.
- :class:`~jaxunlearn.models.ResNet18` (weiaicunzai/pytorch-cifar100, as in the SSD repo):
  ``conv1.0.weight``, ``conv1.1.{weight,bias,running_mean,running_var}``,
  ``conv{2..5}_x.{0,1}.residual_function.{0,3}.weight``,
  ``conv{2..5}_x.{0,1}.residual_function.{1,4}.{weight,bias,running_mean,running_var}``,
  ``conv{3,4,5}_x.0.shortcut.0.weight``, ``conv{3,4,5}_x.0.shortcut.1.{...}``, ``fc.weight``, ``fc.bias``.
- :class:`~jaxunlearn.models.VGG` (the JiT "VGG16"): ``model.features.{0,3,6,8,11,13,16,18}.{weight,bias}``,
  ``model.classifier.{0,3,6}.{weight,bias}``, ``fc.{weight,bias}``.

The rule behind them: a flax submodule path ``("conv2_x_0", "residual_function_3")``
is the PyTorch name ``conv2_x.0.residual_function.3`` (a trailing ``_<digits>``
becomes ``.<digits>``), after the architecture's prefix (``model.`` for the
VGG backbone, nothing otherwise; the VGG head ``fc`` has no prefix).
:func:`torch_names` lists the exact keys a given model expects. Keys saved from
an ``nn.DataParallel`` model (``module.`` in front) are accepted as well.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, NamedTuple

import flax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxunlearn.models.lenet import LeNet
from jaxunlearn.models.mlp import MLP
from jaxunlearn.models.resnet import ResNet18
from jaxunlearn.models.small_cnn import SmallCNN
from jaxunlearn.models.vgg import VGG

SUPPORTED = (MLP, LeNet, SmallCNN, ResNet18, VGG)
_IGNORED_SUFFIXES = (".num_batches_tracked",)


class TorchParam(NamedTuple):
    """Where one PyTorch tensor goes: ``variables[collection][*path]``, converted by ``kind``.

    ``kind`` is ``"linear_weight"`` (transpose), ``"conv_weight"`` (OIHW -> HWIO) or ``"copy"``;
    ``torch_shape`` is the shape the PyTorch tensor must have.
    """

    collection: str
    path: tuple
    kind: str
    torch_shape: tuple


def _torch_module_name(path: tuple, prefix: str) -> str:
    name = ".".join(re.sub(r"_(\d+)$", r".\1", part) for part in path)
    return prefix + name


def _default_prefix(module: nn.Module, path: tuple) -> str:
    if isinstance(module, VGG) and path[0] != "fc":
        return "model."
    return ""


def _check_supported(module: nn.Module) -> None:
    if not isinstance(module, SUPPORTED):
        raise TypeError(
            f"PyTorch import supports {[c.__name__ for c in SUPPORTED]}; got {type(module).__name__}. "
            "For other models convert the state_dict by hand (see the conversions in this module's docstring)."
        )


def torch_names(module: nn.Module, variables: Any) -> dict[str, TorchParam]:
    """The PyTorch ``state_dict`` keys ``module`` expects, each with its destination in ``variables``.

    ``variables`` is a template (from :func:`jaxunlearn.models.create`) that fixes the shapes.
    """
    _check_supported(module)
    params = traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
    stats = traverse_util.flatten_dict(flax.core.unfreeze(variables.get("batch_stats", {})))
    layers: dict[tuple, dict[str, Any]] = {}
    for key, value in params.items():
        layers.setdefault(key[:-1], {})[key[-1]] = value
    names: dict[str, TorchParam] = {}
    for path, leaves in layers.items():
        base = _torch_module_name(path, _default_prefix(module, path))
        if "kernel" in leaves:
            k = leaves["kernel"]
            if len(k.shape) == 2:
                names[base + ".weight"] = TorchParam(
                    "params", path + ("kernel",), "linear_weight", (k.shape[1], k.shape[0])
                )
            elif len(k.shape) == 4:
                names[base + ".weight"] = TorchParam(
                    "params", path + ("kernel",), "conv_weight", (k.shape[3], k.shape[2], k.shape[0], k.shape[1])
                )
            else:
                raise TypeError(f"cannot map the {len(k.shape)}-d kernel of {'/'.join(path)} to a PyTorch layer.")
            if "bias" in leaves:
                names[base + ".bias"] = TorchParam("params", path + ("bias",), "copy", tuple(leaves["bias"].shape))
        elif "scale" in leaves:
            names[base + ".weight"] = TorchParam("params", path + ("scale",), "copy", tuple(leaves["scale"].shape))
            names[base + ".bias"] = TorchParam("params", path + ("bias",), "copy", tuple(leaves["bias"].shape))
            for torch_key, ours in (("running_mean", "mean"), ("running_var", "var")):
                if path + (ours,) not in stats:
                    raise ValueError(
                        f"variables lack batch_stats for {'/'.join(path)}; pass the variables from create()."
                    )
                names[f"{base}.{torch_key}"] = TorchParam(
                    "batch_stats", path + (ours,), "copy", tuple(stats[path + (ours,)].shape)
                )
        else:
            raise TypeError(f"cannot map the parameters {sorted(leaves)} of {'/'.join(path)} to a PyTorch layer.")
    return names


def _as_numpy(key: str, value: Any) -> np.ndarray:
    """A private numpy copy of ``value``: JAX may wrap host buffers without copying, so the returned
    params must never share memory with the caller's arrays (a later in-place update would rewrite them)."""
    try:
        return np.array(value, copy=True)
    except Exception as err:  # a torch tensor that requires grad or lives on a GPU
        raise TypeError(
            f"state_dict[{key!r}] is not convertible to a numpy array ({type(value).__name__}); "
            "pass {k: v.detach().cpu().numpy() for k, v in state_dict.items()}."
        ) from err


def _to_flax(kind: str, value: np.ndarray) -> np.ndarray:
    if kind == "linear_weight":
        return value.T
    if kind == "conv_weight":
        return value.transpose(2, 3, 1, 0)
    return value


def _to_torch(kind: str, value: np.ndarray) -> np.ndarray:
    if kind == "linear_weight":
        return value.T
    if kind == "conv_weight":
        return value.transpose(3, 2, 0, 1)
    return value


def load_torch_state_dict(
    module: nn.Module, variables: Any, state_dict: Mapping[str, Any], *, strict: bool = True
) -> dict:
    """New variables for ``module`` holding the tensors of a PyTorch ``state_dict``.

    Args:
      module: an MLP, LeNet, SmallCNN, ResNet18 or VGG whose attributes match the checkpoint's architecture.
      variables: template variables of ``module`` (from :func:`jaxunlearn.models.create`, or the free
        :func:`jaxunlearn.models.abstract_variables`); only their shapes and dtypes are used.
      state_dict: PyTorch key -> array (numpy arrays or anything ``np.asarray`` accepts); key names as in
        :func:`torch_names` and this module's docstring. A ``module.`` prefix (``nn.DataParallel``) is stripped.
      strict: raise on keys the model does not use (``num_batches_tracked`` is always ignored).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` with the structure of ``variables`` (jax arrays).

    Raises:
      ValueError: a key is missing, unexpected (``strict``) or has the wrong shape; the message names it.
      TypeError: ``module`` is not supported, or a value is not array-like.
    """
    names = torch_names(module, variables)
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping from PyTorch key names to arrays; got {type(state_dict).__name__}."
        )
    sd = dict(state_dict)
    if sd and all(k.startswith("module.") for k in sd) and not any(k.startswith("module.") for k in names):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    missing = [k for k in names if k not in sd]
    if missing:
        raise ValueError(
            f"state_dict lacks {len(missing)} key(s) {type(module).__name__} needs, e.g. {missing[:5]}; it has e.g. "
            f"{list(sd)[:5]}. Check that the module's attributes (num_classes, widths) match the checkpoint; "
            "jaxunlearn.models.torch_import.torch_names(module, variables) lists the expected keys."
        )
    unexpected = [k for k in sd if k not in names and not k.endswith(_IGNORED_SUFFIXES)]
    if strict and unexpected:
        raise ValueError(
            f"state_dict has {len(unexpected)} key(s) {type(module).__name__} does not use, e.g. {unexpected[:5]}. "
            "Use a module whose architecture matches the checkpoint, or strict=False to ignore them."
        )
    out = {c: traverse_util.flatten_dict(flax.core.unfreeze(variables[c])) for c in variables}
    for key, dest in names.items():
        value = _as_numpy(key, sd[key])
        if tuple(value.shape) != dest.torch_shape:
            raise ValueError(
                f"state_dict[{key!r}] has shape {tuple(value.shape)}; {type(module).__name__} expects "
                f"{dest.torch_shape} (PyTorch layout). Check the module's attributes against the checkpoint."
            )
        template = out[dest.collection][dest.path]
        out[dest.collection][dest.path] = jnp.asarray(_to_flax(dest.kind, value), dtype=template.dtype)
    return {c: traverse_util.unflatten_dict(flat) for c, flat in out.items()}


def export_torch_state_dict(module: nn.Module, variables: Any) -> dict[str, np.ndarray]:
    """The inverse of :func:`load_torch_state_dict`: PyTorch key -> numpy array in PyTorch layout."""
    names = torch_names(module, variables)
    flat = {c: traverse_util.flatten_dict(flax.core.unfreeze(variables[c])) for c in variables}
    return {
        k: np.ascontiguousarray(_to_torch(d.kind, np.asarray(flat[d.collection][d.path]))) for k, d in names.items()
    }


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``state_dict`` saved with ``np.savez(path, **numpy_state_dict)`` into a dict of numpy arrays."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
