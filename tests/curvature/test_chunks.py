"""chunked_sum / chunked_map under the loop policy: convolution gradients against a brute-force numpy convolution.

The loop policy rewrites the non-canonical convolutions of a loop body (the kernel and input
gradients of an NHWC convolution, an NCHW forward pass) as transpose -> NHWC convolution ->
transpose; these tests check that the rewritten loops compute the same convolutions as a numpy
loop over kernel taps, and that the rewrite really happened (the scan body holds only canonical
convolutions) or, with policy "scan", did not.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend.core import primitives

from jaxunlearn import loops
from jaxunlearn.curvature.chunks import chunked_map, chunked_sum

CANONICAL = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
# (stride, padding, rhs dilation, feature groups)
CONFIGS = {"plain": (1, ((1, 1), (1, 1)), 1, 1), "strided_dilated_grouped": (2, ((2, 1), (0, 2)), 2, 2)}


def numpy_conv(x, k, stride, padding, dilation, groups):
    """NHWC x HWIO convolution as a loop over kernel taps; also returns the padded input and tap slicer."""
    xp = np.pad(x, ((0, 0), *padding, (0, 0)))
    kh, kw, cg, o = k.shape
    og = o // groups
    ho = (xp.shape[1] - dilation * (kh - 1) - 1) // stride + 1
    wo = (xp.shape[2] - dilation * (kw - 1) - 1) // stride + 1

    def tap(i, j):
        return (slice(None), slice(i * dilation, i * dilation + stride * (ho - 1) + 1, stride),
                slice(j * dilation, j * dilation + stride * (wo - 1) + 1, stride))

    out = np.zeros((x.shape[0], ho, wo, o))
    for i in range(kh):
        for j in range(kw):
            patch = xp[tap(i, j)]
            for g in range(groups):
                out[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ k[i, j, :, g * og:(g + 1) * og]
    return out, xp, tap


def numpy_conv_grads(x, k, cotangent, config):
    """Gradients of ``sum(conv(x, k) * cotangent)`` with respect to ``x`` and ``k``, written out tap by tap."""
    padding, groups = config[1], config[3]
    _, xp, tap = numpy_conv(x, k, *config)
    kh, kw, cg, o = k.shape
    og = o // groups
    dk, dxp = np.zeros_like(k), np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            patch = xp[tap(i, j)]
            for g in range(groups):
                gi, go = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
                dk[i, j, :, go] = np.einsum("bhwc,bhwo->co", patch[..., gi], cotangent[..., go])
                dxp[tap(i, j) + (gi,)] += cotangent[..., go] @ k[i, j, :, go].T
    (top, _), (left, _) = padding
    return dxp[:, top:top + x.shape[1], left:left + x.shape[2]], dk


def conv(x, k, config):
    stride, padding, dilation, groups = config
    return lax.conv_general_dilated(x, k, (stride, stride), padding, rhs_dilation=(dilation, dilation),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


@functools.lru_cache(maxsize=None)
def problem(config_name):
    config = CONFIGS[config_name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 6, 6, 4))
    k = rng.normal(size=(3, 3, 4 // config[3], 6))
    out, _, _ = numpy_conv(x, k, *config)
    cotangent = rng.normal(size=out.shape)
    return config, x, k, cotangent


def conv_grads(config, k):
    """``fn(chunk, index)`` of chunked_sum: on a chunk ``(x, cotangent)``, ``sum(dx^2)`` and ``dk`` of
    ``sum(conv(x, k) * cotangent)`` (a jit and a checkpoint inside, as library losses have them)."""

    @jax.jit
    def objective(x, kernel, cot):
        return jnp.sum(conv(x, kernel, config) * cot)

    def fn(chunk, index):
        del index
        dx, dk = jax.checkpoint(jax.grad(objective, argnums=(0, 1)))(chunk[0], k, chunk[1])
        return jnp.sum(dx ** 2), dk

    return fn


def scan_convolutions(fn, *args):
    """Dimension numbers of the convolutions inside the loop of ``fn`` (scan body, its jit and checkpoint calls)."""

    def walk(jaxpr, inside):
        found = []
        for eqn in jaxpr.eqns:
            if eqn.primitive is primitives.conv_general_dilated_p and inside:
                found.append(eqn.params["dimension_numbers"])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                found += walk(sub, inside or eqn.primitive.name == "scan")
        return found

    return walk(jax.make_jaxpr(fn)(*args).jaxpr, False)


@pytest.mark.parametrize(("policy", "config_name"),
                         [("auto", "plain"), ("auto", "strided_dilated_grouped"), ("scan", "strided_dilated_grouped")])
def test_chunked_sum_of_conv_gradients_matches_numpy(policy, config_name):
    config, x, k, cot = problem(config_name)
    dx_ref, dk_ref = numpy_conv_grads(x, k, cot, config)

    def total(x, cot, k):  # chunks of 3 over 7 examples: two scanned chunks and a short one
        return chunked_sum(conv_grads(config, k), (x, cot), 3, unroll=2 if config_name == "plain" else 1)

    args = (jnp.asarray(x, jnp.float32), jnp.asarray(cot, jnp.float32), jnp.asarray(k, jnp.float32))
    with loops.loop_policy(policy):
        sq_dx, dk = jax.jit(total)(*args)
        numbers = scan_convolutions(total, *args)
    np.testing.assert_allclose(dk, dk_ref, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(sq_dx, np.sum(dx_ref ** 2), rtol=2e-5)
    assert numbers  # the loop body holds the convolutions (forward, kernel and input gradients)
    rewritten = loops.rewrites_convolutions(policy)
    assert rewritten == (policy == "auto" and jax.default_backend() == "cpu")
    assert all(n == CANONICAL for n in numbers) == rewritten


def test_chunked_map_of_nchw_convolution_matches_numpy_and_is_rewritten():
    config, x, k, _ = problem("plain")
    want = numpy_conv(x, k, *config)[0]
    kernel = jnp.asarray(k.transpose(3, 2, 0, 1), jnp.float32)  # OIHW

    def nchw(chunk):
        return lax.conv_general_dilated(chunk, kernel, (1, 1), config[1], dimension_numbers=("NCHW", "OIHW", "NCHW"))

    x_nchw = jnp.asarray(x.transpose(0, 3, 1, 2), jnp.float32)
    with loops.loop_policy("canonical"):
        got = chunked_map(nchw, x_nchw, 2)
        numbers = scan_convolutions(lambda a: chunked_map(nchw, a, 2), x_nchw)
    np.testing.assert_allclose(np.asarray(got).transpose(0, 2, 3, 1), want, rtol=2e-5, atol=2e-5)
    assert numbers and all(n == CANONICAL for n in numbers)


def test_rewritten_loop_vmaps_over_stacked_kernels():
    """The rewrite happens before batching: a loop vmapped over two kernels equals the per-kernel loops."""
    config, x, k, cot = problem("plain")
    kernels = jnp.asarray(np.stack([k, -0.5 * k]), jnp.float32)
    xs, cots = jnp.asarray(x, jnp.float32), jnp.asarray(cot, jnp.float32)

    def total(kk):
        return chunked_sum(conv_grads(config, kk), (xs, cots), 3)[1]

    with loops.loop_policy("canonical"):
        got = jax.jit(jax.vmap(total))(kernels)
    for member, kk in enumerate(np.stack([k, -0.5 * k])):
        np.testing.assert_allclose(got[member], numpy_conv_grads(x, kk, cot, config)[1], rtol=2e-5, atol=2e-5)
