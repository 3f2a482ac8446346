"""Independent numpy forward passes in PyTorch's NCHW layout, on PyTorch-named state dicts.

Written from the PyTorch definitions (torch.nn.Conv2d / MaxPool2d / BatchNorm2d /
AdaptiveAvgPool2d / Linear semantics), sharing no code with jaxunlearn.models.
"""

from __future__ import annotations

import numpy as np


def conv2d(x, w, b=None, stride=1, padding=0):
    """x [N, C, H, W], w [O, C, kh, kw] -> [N, O, Ho, Wo] (cross-correlation, like torch)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def max_pool2(x):
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))


def relu(x):
    return np.maximum(x, 0.0)


def linear(x, sd, name):
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def batch_norm(x, sd, name, train=False, eps=1e-5, momentum=0.1, new_stats=None):
    """torch BatchNorm2d; in train mode uses the batch's (biased) statistics and records the updated running ones."""
    g, b = sd[name + ".weight"], sd[name + ".bias"]
    if train:
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
        if new_stats is not None:
            # flax's update rule (biased batch variance); torch would use the unbiased one here
            new_stats[name + ".running_mean"] = (1 - momentum) * sd[name + ".running_mean"] + momentum * mean
            new_stats[name + ".running_var"] = (1 - momentum) * sd[name + ".running_var"] + momentum * var
    else:
        mean, var = sd[name + ".running_mean"], sd[name + ".running_var"]
    return (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps) * g[None, :, None, None] + b[
        None, :, None, None]


def adaptive_avg_pool(x, out_hw):
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        hs, he = int(np.floor(i * h / oh)), int(np.ceil((i + 1) * h / oh))
        for j in range(ow):
            ws, we = int(np.floor(j * w / ow)), int(np.ceil((j + 1) * w / ow))
            out[:, :, i, j] = x[:, :, hs:he, ws:we].mean(axis=(2, 3))
    return out


def mlp(sd, x, num_layers):
    h = x.reshape(len(x), -1)
    for i in range(1, num_layers + 1):
        h = linear(h, sd, f"linear{i}")
        if i < num_layers:
            h = relu(h)
    return h


def lenet(sd, x, padding=0):
    h = max_pool2(relu(conv2d(x, sd["conv1.weight"], sd["conv1.bias"], padding=padding)))
    h = max_pool2(relu(conv2d(h, sd["conv2.weight"], sd["conv2.bias"], padding=padding)))
    h = h.reshape(len(h), -1)
    h = relu(linear(h, sd, "fc1"))
    h = relu(linear(h, sd, "fc2"))
    return linear(h, sd, "fc3")


def small_cnn(sd, x, padding=0):
    h = max_pool2(relu(conv2d(x, sd["conv1.weight"], sd["conv1.bias"], padding=padding)))
    h = max_pool2(relu(conv2d(h, sd["conv2.weight"], sd["conv2.bias"], padding=padding)))
    h = relu(linear(h.reshape(len(h), -1), sd, "fc1"))
    return linear(h, sd, "fc2")


def basic_block(sd, x, name, stride, train=False, new_stats=None):
    r = conv2d(x, sd[f"{name}.residual_function.0.weight"], stride=stride, padding=1)
    r = relu(batch_norm(r, sd, f"{name}.residual_function.1", train, new_stats=new_stats))
    r = conv2d(r, sd[f"{name}.residual_function.3.weight"], stride=1, padding=1)
    r = batch_norm(r, sd, f"{name}.residual_function.4", train, new_stats=new_stats)
    if f"{name}.shortcut.0.weight" in sd:
        s = conv2d(x, sd[f"{name}.shortcut.0.weight"], stride=stride)
        s = batch_norm(s, sd, f"{name}.shortcut.1", train, new_stats=new_stats)
    else:
        s = x
    return relu(r + s)


def resnet18(sd, x, train=False, new_stats=None):
    h = conv2d(x, sd["conv1.0.weight"], padding=1)
    h = relu(batch_norm(h, sd, "conv1.1", train, new_stats=new_stats))
    for stage, stride in zip(range(2, 6), (1, 2, 2, 2)):
        blocks = {k.split(".")[1] for k in sd if k.startswith(f"conv{stage}_x.")}
        for b in range(len(blocks)):
            h = basic_block(sd, h, f"conv{stage}_x.{b}", stride if b == 0 else 1, train, new_stats)
    h = h.mean(axis=(2, 3))
    return linear(h, sd, "fc")


def vgg(sd, x, cfg, pool_size=(7, 7)):
    h, idx = x, 0
    for v in cfg:
        if v == "M":
            h = max_pool2(h)
            idx += 1
        else:
            h = relu(conv2d(h, sd[f"model.features.{idx}.weight"], sd[f"model.features.{idx}.bias"], padding=1))
            idx += 2
    h = adaptive_avg_pool(h, pool_size).reshape(len(h), -1)
    h = relu(linear(h, sd, "model.classifier.0"))
    h = relu(linear(h, sd, "model.classifier.3"))
    h = linear(h, sd, "model.classifier.6")
    return linear(h, sd, "fc")


def random_state_dict(names, seed=0, scale=0.3):
    """Random PyTorch-layout tensors for the keys of ``torch_names``; BN running_var positive."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, dest in names.items():
        shape = dest.torch_shape
        if key.endswith("running_var"):
            sd[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif key.endswith(".weight") and len(shape) in (2, 4):
            fan_in = int(np.prod(shape[1:]))
            sd[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif key.endswith(".weight") and len(shape) == 1:  # BN scale
            sd[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            sd[key] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return sd


def numpy_variables(abstract, seed=0, scale=0.2):
    """Random values for a pytree of ShapeDtypeStructs (``abstract_variables``), drawn in numpy.

    Cheaper than ``module.init`` on CPU (no per-array random-kernel compile). Running variances are positive.
    """
    import jax

    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if jax.tree_util.keystr(path).endswith("['var']"):
            return rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
        return (rng.standard_normal(leaf.shape) * scale).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)
