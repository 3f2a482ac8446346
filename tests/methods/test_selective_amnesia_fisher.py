"""Selective Amnesia's Fisher on the per-layer fast path: equal to ``vmap`` of ``grad`` (float32 rounding), each
path compiled once per configuration (counted with the contract battery's ``CompileCounter``)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CompileCounter

from jaxunlearn.methods.selective_amnesia import make_sa_fisher, sa_fisher_diagonal
from jaxunlearn.models.cvae import CVAE


def test_fast_path_equals_vmap_of_grad_and_each_path_compiles_once():
    module = CVAE(x_dim=6, num_classes=3, hidden=(5, 4), z_dim=2)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 6)), jnp.zeros((1, 3)), jnp.zeros((1, 2)))
    rng = np.random.default_rng(0)  # random weights, without compiling an init
    params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), jnp.float32), shapes["params"])
    fisher = {}
    for path in ("layerwise", "vmap"):
        fisher[path] = make_sa_fisher(module, num_samples=24, chunk_size=8, per_example=path)(params, jax.random.key(2))
        moved = jax.tree.map(lambda p: 1.1 * p, params)
        CompileCounter.count, CompileCounter.active = 0, True
        try:
            jax.block_until_ready(sa_fisher_diagonal(module, moved, jax.random.key(3), num_samples=24, chunk_size=8,
                                                     per_example=path))
        finally:
            CompileCounter.active = False
        assert CompileCounter.count == 0, f"{path}: a second call compiled {CompileCounter.count} time(s)"
    chex.assert_trees_all_close(fisher["layerwise"], fisher["vmap"], rtol=2e-5, atol=1e-9)
    assert min(float(jnp.min(f)) for f in jax.tree.leaves(fisher["vmap"])) >= 0.0
    with pytest.raises(ValueError, match="per_example"):
        sa_fisher_diagonal(module, params, jax.random.key(2), per_example="loop")
