"""The loop policy: how every data loop of the library runs, decided in one place.

Every loop over data or steps in jaxunlearn goes through :func:`scan`, a drop-in for
``jax.lax.scan``: the chunked sums and maps (:mod:`jaxunlearn.curvature.chunks`: Fisher and SSD
importances, influence, accuracy, batched logits), the training epochs and step loops
(:mod:`jaxunlearn.train.loop`: ``fit``, hence JiT and the iterative baselines; ``scan_steps``,
hence the samplers' ``run_chain``, VI, the MCMC forgetting recursion, Selective Amnesia).

**Why a policy.** XLA:CPU (jax 0.10.2) runs a convolution whose dimension numbers are not the
canonical ``NHWC x HWIO -> NHWC`` (batch, spatial..., feature) through a slow generic kernel
when the convolution sits inside a ``while`` loop, which every ``lax.scan`` is. Outside a loop it
first transposes the operands into the canonical layout and calls its fast kernel. Reverse-mode
differentiation of an ``NHWC`` convolution produces exactly such convolutions (the kernel
gradient contracts over the batch: ``dim_labels=f01b_i01o->01bf``), so a loop body that takes the
gradient of a CNN ran 4-15x slower than the same step outside any loop (jax-ml/jax#12868 reports
the same slowdown for convolutions in loop bodies).

**The policy**, read when the loop is traced (a function already compiled keeps the policy it was
traced with; set the policy before the first call):

* ``"auto"`` (default): on the CPU backend the loop body is traced to a jaxpr once and every
  convolution with non-canonical dimension numbers is rewritten as transpose -> canonical
  convolution -> transpose (:func:`canonical_convolutions`), the computation XLA:CPU itself runs
  outside loops (on a small CNN the summed squared gradients came out bit-for-bit equal to those
  of the jitted step called outside any loop), and the loop stays one ``lax.scan`` (traceable under
  ``jit``, ``vmap`` and ``grad``; compile time unchanged). A body without such convolutions (a
  dense model) compiles to the same program as the plain ``lax.scan`` (measured: identical
  instructions); on accelerators the plain ``lax.scan`` runs (no per-step dispatch; cuDNN takes any
  layout).
* ``"canonical"``: the rewrite on every backend.
* ``"scan"``: the plain ``lax.scan`` everywhere.

Choose with :func:`set_policy` or, for a block of code, ``with loop_policy("scan"): ...``. Every
helper also takes ``unroll=`` (``lax.scan``'s: an integer or ``True``), which composes with the
policy.

**Called eagerly**, a function with a loop inside would run every operation around the loop on its
own (each compiled at its first use with those shapes: hundreds for the short last chunk of a CNN's
chunked gradients). :func:`compiled_when_eager` runs such a function as one compiled program instead;
the chunked reductions, LiSSA and CG use it (first eager call of a CNN's Fisher diagonal: 4.9 s ->
1.4 s here).

**Measured** (``benchmarks/loops.py``, shared 2-core CPU; 50 steps of SSD importances on a small CNN
at 32x32x3 and of SGLD on LeNet-5; ratio to the same jitted step called outside any loop): plain
``lax.scan`` 9x and 4x; ``unroll=8`` no better (the ``while`` loop remains); full unrolling 3.2x and
1.7x, with a compile time that grows with the number of steps (20 s and 60 s, against 4-6 s); a
Python loop of the jitted step 1.4x and 0.7x, but only possible when called eagerly (the helpers
must stay traceable); the rewrite 1.2x and 0.7x, with the compile time of the plain scan. Those
models now compute their convolutions as matrix products on CPU (:mod:`jaxunlearn.models.conv_forms`),
which loops do not slow: ``benchmarks/loops.py --quick`` then gives, for the SSD, JiT and SGLD loops,
plain ``lax.scan`` 0.82x, 0.74x and 0.71x of the floor, the library's entry points 0.92x, 0.82x and
0.84x. The policy still serves every model whose convolutions stay convolutions (ResNet-18's).

Limits: the rewrite reaches the convolutions of the body itself, of the ``jit`` calls inside it
(inlined) and of ``jax.checkpoint`` blocks (re-wrapped with the same remat policy); convolutions inside
nested loops, conditionals or custom-derivative rules are left as they are (loops of the library
nested in a body are rewritten by their own policy). Under ``vmap`` the batching rule runs after the
rewrite, so a loop vmapped over the *kernels* (stacked models) may again get grouped convolutions
in a non-canonical layout.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
from jax import lax
from jax.extend.core import primitives

from jaxunlearn._policy import Policy
from jaxunlearn._validation import is_concrete, keep_errors, wait_for_errors

POLICIES = ("auto", "canonical", "scan")
"""The loop policies (module docstring)."""

_POLICY = Policy("loop policy", POLICIES)


def get_policy() -> str:
    """The loop policy in force (``"auto"`` unless set)."""
    return _POLICY.get()


def set_policy(policy: str) -> str:
    """Set the loop policy (one of :data:`POLICIES`) for loops traced from now on; returns the previous one."""
    return _POLICY.set(policy)


def loop_policy(policy: str) -> contextlib.AbstractContextManager[None]:
    """``with loop_policy("scan"): ...``: the loops traced inside the block follow ``policy``."""
    return _POLICY.use(policy)


def rewrites_convolutions(policy: str | None = None) -> bool:
    """Whether loops traced now rewrite their convolutions: ``"canonical"``, or ``"auto"`` on the CPU backend."""
    policy = get_policy() if policy is None else _POLICY.check(policy)
    return policy == "canonical" or (policy == "auto" and jax.default_backend() == "cpu")


def _canonical_numbers(n: int) -> lax.ConvDimensionNumbers:
    """``NHWC x HWIO -> NHWC`` for ``n`` spatial dimensions, as positions (batch/out, feature/in, spatial...)."""
    spatial = tuple(range(1, n + 1))
    return lax.ConvDimensionNumbers((0, n + 1, *spatial), (n + 1, n, *range(n)), (0, n + 1, *spatial))


def _is_canonical(numbers: lax.ConvDimensionNumbers) -> bool:
    return numbers == _canonical_numbers(len(numbers.lhs_spec) - 2)


def _canonical_conv(lhs: jax.Array, rhs: jax.Array, params: dict) -> jax.Array:
    """``conv_general_dilated`` with ``params`` computed in the canonical layout: transpose, convolve, transpose back.

    Windows, strides, padding and dilations are listed in the order of the spatial dimensions of
    the dimension numbers, which the transposes keep; so the result is the same convolution.
    """
    numbers = params["dimension_numbers"]
    n = len(numbers.lhs_spec) - 2
    lhs = jnp.transpose(lhs, (numbers.lhs_spec[0], *numbers.lhs_spec[2:], numbers.lhs_spec[1]))
    rhs = jnp.transpose(rhs, (*numbers.rhs_spec[2:], numbers.rhs_spec[1], numbers.rhs_spec[0]))
    out = primitives.conv_general_dilated_p.bind(lhs, rhs, **{**params, "dimension_numbers": _canonical_numbers(n)})
    back = [0] * (n + 2)  # output axis numbers.out_spec[k] holds canonical axis (batch, spatial..., feature)[k]
    back[numbers.out_spec[0]], back[numbers.out_spec[1]] = 0, n + 1
    for i, axis in enumerate(numbers.out_spec[2:]):
        back[axis] = i + 1
    return jnp.transpose(out, back)


def _needs_rewrite(jaxpr: jcore.Jaxpr) -> bool:
    """A non-canonical convolution in ``jaxpr`` or in the ``jit``/``checkpoint`` calls it makes."""
    for eqn in jaxpr.eqns:
        if eqn.primitive is primitives.conv_general_dilated_p:
            if not _is_canonical(eqn.params["dimension_numbers"]):
                return True
        elif eqn.primitive is primitives.jit_p:
            if _needs_rewrite(eqn.params["jaxpr"].jaxpr):
                return True
        elif eqn.primitive is primitives.remat_p and _needs_rewrite(eqn.params["jaxpr"]):
            return True
    return False


def _evaluate(jaxpr: jcore.Jaxpr, consts: Any, args: Any, rewrite: bool = True) -> list:
    """Evaluate ``jaxpr`` (as ``jax.core.eval_jaxpr``); with ``rewrite``, its non-canonical convolutions are bound
    in canonical form."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        conv = rewrite and eqn.primitive is primitives.conv_general_dilated_p
        with eqn.ctx.manager:
            if conv and not _is_canonical(eqn.params["dimension_numbers"]):
                outputs = [_canonical_conv(*inputs, eqn.params)]
            elif rewrite and eqn.primitive is primitives.jit_p and _needs_rewrite(eqn.params["jaxpr"].jaxpr):
                inner = eqn.params["jaxpr"]
                outputs = _evaluate(inner.jaxpr, inner.consts, inputs)  # inlined: the jit boundary adds nothing here
            elif rewrite and eqn.primitive is primitives.remat_p and _needs_rewrite(eqn.params["jaxpr"]):
                inner = eqn.params["jaxpr"]
                block = jax.checkpoint(lambda *a, inner=inner: _evaluate(inner, (), a),
                                       prevent_cse=eqn.params["prevent_cse"], policy=eqn.params["policy"])
                outputs = block(*inputs)
            else:
                outputs = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
                if not eqn.primitive.multiple_results:
                    outputs = [outputs]
        env.update(zip(eqn.outvars, outputs))
    return [read(v) for v in jaxpr.outvars]


def canonical_convolutions(fn: Callable) -> Callable:
    """``fn`` with its convolutions computed in the canonical ``NHWC x HWIO -> NHWC`` layout (module docstring).

    The returned function traces ``fn`` to a jaxpr at each call and evaluates it (as
    ``jax.core.eval_jaxpr``: every other equation is bound as it is) with each non-canonical
    ``conv_general_dilated`` (the kernel and input gradients of a convolution) replaced by
    ``transpose -> canonical convolution -> transpose``, the same convolution.

    Args:
      fn: a function of positional pytree arguments (a loop body's ``(carry, x)``), traceable.

    Returns:
      A function with the signature and results of ``fn``; its convolutions are all canonical.
    """

    def rewritten(*args):
        flat, tree = jax.tree.flatten(args)
        closed, shapes = jax.make_jaxpr(lambda *leaves: fn(*jax.tree.unflatten(tree, leaves)), return_shape=True)(*flat)
        return jax.tree.unflatten(jax.tree.structure(shapes), _evaluate(closed.jaxpr, closed.consts, flat))

    return rewritten


def compiled_when_eager(fn: Callable, *args: Any) -> Any:
    """``fn(*args)``; called outside ``jit`` (concrete ``args``), run as one compiled program.

    Called eagerly, a function that mixes a loop with other operations runs the loop as one
    compiled program and every other operation on its own, each compiled at its first use with
    those shapes: the short last chunk of a chunked reduction of a CNN's gradients is a few hundred
    such operations (seconds of compiling at the first call). Here ``fn`` is traced once to a jaxpr
    and evaluated under one ``jax.jit``, with the arrays ``fn`` closes over (a model's parameters,
    say) passed to it as arguments rather than embedded in the program as constants; errors staged
    by :func:`jaxunlearn._validation.raise_if` keep their class (:class:`~jaxunlearn._validation.keep_errors`).
    The program is compiled at every call, as an eager loop with a new body is; jit the caller to
    compile once. With traced ``args`` (inside the caller's ``jit``), ``fn(*args)`` as it is.

    Args:
      fn: a traceable function of ``args``.
      args: pytrees of arrays.

    Returns:
      ``fn(*args)``.
    """
    if not is_concrete(args):
        return fn(*args)
    flat, tree = jax.tree.flatten(args)
    closed, shapes = jax.make_jaxpr(lambda *leaves: fn(*jax.tree.unflatten(tree, leaves)), return_shape=True)(*flat)
    program = jax.jit(lambda consts, leaves: _evaluate(closed.jaxpr, consts, leaves, rewrite=False))
    with keep_errors():
        return jax.tree.unflatten(jax.tree.structure(shapes), wait_for_errors(program(closed.consts, flat)))


def scan(
    f: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any = None,
    length: int | None = None,
    *,
    unroll: int | bool = 1,
    policy: str | None = None,
) -> tuple[Any, Any]:
    """``jax.lax.scan(f, init, xs, length, unroll=unroll)`` under the loop policy (module docstring).

    Args:
      f, init, xs, length, unroll: as for ``jax.lax.scan``.
      policy: one of :data:`POLICIES` for this loop; ``None``: the policy in force (:func:`get_policy`).

    Returns:
      ``(final carry, stacked outputs)``, as ``jax.lax.scan``.
    """
    body = canonical_convolutions(f) if rewrites_convolutions(policy) else f
    return lax.scan(body, init, xs, length=length, unroll=unroll)
