"""Fast per-example squared gradients for flax ``Dense`` and ``Conv`` layers.

For a dense layer ``y = a W + b`` the per-example gradient of the kernel is
the outer product ``a_i delta_i^T`` with ``delta_i = dl_i/dy_i``, so

    sum_i (dl_i/dW)^2 = (a^2)^T (delta^2),        sum_i (dl_i/db)^2 = sum_i delta_i^2

(the BackPACK formulation; Dangel, Kunstner & Hennig, ICLR 2020). It needs
only the layer inputs ``a`` and the per-example output gradients ``delta``,
never a per-example copy of ``W``. When a layer sees several positions per
example (tokens, or a module called twice) the per-example gradient is
``sum_p a_ip delta_ip^T`` and is formed per layer, one layer at a time; for
convolutions the same holds with ``a`` the unfolded input patches
(``jax.lax.conv_general_dilated_patches``).

``a`` and ``delta`` are captured with ``flax.linen.intercept_methods``: every
supported layer's output gets a zero perturbation ``e`` added, and
``dl_i/de_i = delta_i``. Both come out of one ``vmap(grad)`` over examples in
which the dense and conv weights are constants, so no per-example weight
gradient is materialised. Parameters of other modules (batch norm, layer
norm, embeddings, unsupported conv variants) get their per-example gradients
in that same pass, by ``vmap(grad)``: the general fallback.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

Path = tuple[str, ...]


def _as_pairs(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _conv_padding(padding: Any, n: int) -> Any:
    if isinstance(padding, str):
        return padding.upper() if padding.upper() in ("SAME", "VALID") else None
    if isinstance(padding, int):
        return ((padding, padding),) * n
    pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
    return pads if len(pads) == n else None


def _supported(module: nn.Module) -> str | None:
    """``"dense"``, ``"conv"`` or ``None`` (handled by the general fallback)."""
    if type(module) is nn.Dense:
        return "dense"
    if type(module) is nn.Conv:
        n = len(module.kernel_size)
        ok = (
            module.feature_group_count == 1
            and module.mask is None
            and module.input_dilation in (None, 1, (1,) * n)
            and _conv_padding(module.padding, n) is not None
        )
        return "conv" if ok else None
    return None


class LayerwiseLoss:
    """A mean per-example loss of a flax linen model, with the per-layer fast path for squared gradients.

    ``loss = mean_i loss_on_outputs(model.apply({'params': params, **variables}, x, **apply_kwargs), y)_i``
    for a batch ``(x, y, ...)``. Callable as ``loss(params, batch)``, so it
    works anywhere a ``loss_fn`` does; :func:`jaxunlearn.curvature.fisher_diagonal`
    uses :meth:`squared_grad_sum` on it.

    Args:
      model: a ``flax.linen.Module``.
      loss_on_outputs: ``(outputs, y) -> per-example losses`` of shape ``[B]``.
      variables: other collections (for example ``{"batch_stats": ...}``), held fixed.
      apply_kwargs: keyword arguments of ``model.apply`` (for example ``{"train": False}``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_on_outputs: Callable[[Any, Any], jax.Array],
        *,
        variables: dict | None = None,
        apply_kwargs: dict | None = None,
    ):
        self.model = model
        self.loss_on_outputs = loss_on_outputs
        self.variables = dict(variables or {})
        self.apply_kwargs = dict(apply_kwargs or {})

    def _apply(self, params: Any, x: Any, interceptor=None) -> Any:
        if interceptor is None:
            return self.model.apply({"params": params, **self.variables}, x, **self.apply_kwargs)
        with nn.intercept_methods(interceptor):
            return self.model.apply({"params": params, **self.variables}, x, **self.apply_kwargs)

    def per_example_losses(self, params: Any, batch: Any) -> jax.Array:
        return self.loss_on_outputs(self._apply(params, batch[0]), batch[1])

    def __call__(self, params: Any, batch: Any) -> jax.Array:
        return jnp.mean(self.per_example_losses(params, batch))

    def _layers(self, params: Any, x_one: Any) -> dict[Path, tuple[str, nn.Module, list]]:
        """Trace once on one example: the supported layers, their kinds, and per-call output shapes."""
        found: dict[Path, tuple[str, nn.Module, list]] = {}

        def record(next_fun, args, kwargs, ctx):
            out = next_fun(*args, **kwargs)
            kind = _supported(ctx.module) if ctx.method_name == "__call__" else None
            if kind is not None:
                path = tuple(ctx.module.path)
                found.setdefault(path, (kind, ctx.module, []))[2].append(jax.ShapeDtypeStruct(out.shape, out.dtype))
            return out

        jax.eval_shape(lambda p, x: self._apply(p, x, record), params, x_one)
        return found

    def squared_grad_sum(self, params: Any, batch: Any) -> Any:
        """``sum_i (dl_i/dtheta)^2`` over the examples of ``batch``, a pytree like ``params``."""
        x, y = batch[0], batch[1]
        layers = self._layers(params, jax.tree.map(lambda a: a[:1], x))
        flat = traverse_util.flatten_dict(params)
        fixed = {k: v for k, v in flat.items() if k[:-1] in layers}
        rest = {k: v for k, v in flat.items() if k[:-1] not in layers}
        perturbations = {
            path: [jnp.zeros((x.shape[0],) + s.shape, s.dtype) for s in shapes]
            for path, (_, _, shapes) in layers.items()
        }

        def example_loss(rest_p, perts, x_i, y_i):
            inputs: dict[Path, list] = {path: [] for path in layers}
            calls: dict[Path, int] = {path: 0 for path in layers}

            def perturb(next_fun, args, kwargs, ctx):
                out = next_fun(*args, **kwargs)
                path = tuple(ctx.module.path)
                if ctx.method_name != "__call__" or path not in layers:
                    return out
                inputs[path].append(args[0])
                k = calls[path]
                calls[path] += 1
                return out + perts[path][k]

            full = traverse_util.unflatten_dict({**fixed, **rest_p})
            out = self._apply(full, x_i[None], perturb)  # a batch of one example
            return jnp.sum(self.loss_on_outputs(out, y_i[None])), inputs

        grad_fn = jax.grad(example_loss, argnums=(0, 1), has_aux=True)
        (g_rest, deltas), inputs = jax.vmap(grad_fn, in_axes=(None, 0, 0, 0))(rest, perturbations, x, y)
        result = {k: jnp.sum(g * g, axis=0) for k, g in g_rest.items()}
        for path, (kind, module, _) in layers.items():
            sq = _dense_squares if kind == "dense" else _conv_squares
            kernel_sq, bias_sq = sq(module, inputs[path], deltas[path])
            result[path + ("kernel",)] = kernel_sq.reshape(flat[path + ("kernel",)].shape)
            if path + ("bias",) in flat:
                result[path + ("bias",)] = bias_sq
        return traverse_util.unflatten_dict({k: result[k] for k in flat})


def _positions(arrays: list, width: int) -> jax.Array:
    """Concatenate calls and flatten every axis but the example axis and the last into positions."""
    return jnp.concatenate([a.reshape(a.shape[0], -1, width) for a in arrays], axis=1)


def _dense_squares(module: nn.Dense, inputs: list, deltas: list) -> tuple[jax.Array, jax.Array]:
    a = _positions(inputs, inputs[0].shape[-1])
    d = _positions(deltas, deltas[0].shape[-1])
    if a.shape[1] == 1:
        return jnp.einsum("bi,bo->io", a[:, 0] ** 2, d[:, 0] ** 2), jnp.sum(d[:, 0] ** 2, axis=0)
    g = jnp.einsum("bpi,bpo->bio", a, d)
    return jnp.sum(g * g, axis=0), jnp.sum(jnp.sum(d, axis=1) ** 2, axis=0)


def _conv_squares(module: nn.Conv, inputs: list, deltas: list) -> tuple[jax.Array, jax.Array]:
    n = len(module.kernel_size)
    patches = []
    for a in inputs:
        b = a.shape[0]
        lhs = a.reshape((-1,) + a.shape[-(n + 1):])
        p = jax.lax.conv_general_dilated_patches(
            lhs,
            filter_shape=tuple(module.kernel_size),
            window_strides=_as_pairs(module.strides or 1, n),
            padding=_conv_padding(module.padding, n),
            rhs_dilation=_as_pairs(module.kernel_dilation or 1, n),
            dimension_numbers=_conv_spec(n),
        )
        patches.append(p.reshape(b, -1, p.shape[-1]))
    a = jnp.concatenate(patches, axis=1)
    d = _positions(deltas, deltas[0].shape[-1])
    g = jnp.einsum("bpk,bpo->bko", a, d)
    cin = inputs[0].shape[-1]
    # patch features are ordered (C, *window); flax kernels are (*window, C, O)
    g = g.reshape((g.shape[0], cin) + tuple(module.kernel_size) + (g.shape[-1],))
    g = jnp.moveaxis(g, 1, n + 1)
    return jnp.sum(g * g, axis=0), jnp.sum(jnp.sum(d, axis=1) ** 2, axis=0)


def _conv_spec(n: int) -> tuple[str, str, str]:
    spatial = "HWD"[:n] if n <= 3 else None
    return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
