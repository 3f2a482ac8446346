"""Minibatches never hold a removed point; n stays the alive count over any sequence of requests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxunlearn as ju
from jaxunlearn import bayes
from jaxunlearn.methods.mcmc_forgetting import importance_sampling

N, K, B = 12, 2, 3  # fixed shapes: every example below reuses one compilation

_ENERGY = bayes.Energy(lambda t: jnp.sum(t**2) / 2, lambda t, x, key: 0.5 * jnp.sum((x - t) ** 2, axis=1))
_SAMPLER = bayes.sgld(_ENERGY.energy)
_BASELINE = importance_sampling(_SAMPLER, lr=1e-3, num_steps=2, batch_size=B, rescale_step_size=False)
_X = jnp.arange(2.0 * N).reshape(N, 2)
_DRAW = ju.jit(bayes.draw_batches, static_argnames=("num_batches", "batch_size"))


@settings(max_examples=25, deadline=None)
@given(requests=st.lists(st.lists(st.integers(0, N - 1), min_size=K, max_size=K), min_size=1, max_size=6),
       seed=st.integers(0, 2**16))
def test_no_removed_point_is_ever_drawn_and_n_is_the_alive_count(requests, seed):
    params = jnp.zeros(2)
    state = _BASELINE.init(params, _X, key=jax.random.key(0))
    removed = set()
    for i, request in enumerate(requests):
        key = jax.random.fold_in(jax.random.key(seed), i)
        invalid = len(set(request)) < K or bool(removed & set(request))
        too_few = N - len(removed | set(request)) < B
        if invalid or too_few:
            with pytest.raises(ValueError, match="forgotten|once per request|fewer than batch_size"):
                _BASELINE.update(params, jnp.asarray(request), state, key=key)
            continue
        params, state, _ = _BASELINE.update(params, jnp.asarray(request), state, key=key)
        removed |= set(request)
        alive = np.asarray(state.store.alive)
        assert int(state.n) == alive.sum() == N - len(removed)
        drawn = np.asarray(_DRAW(key, state.store.alive, num_batches=4, batch_size=B))
        assert alive[drawn].all(), "a removed point was drawn"
        assert all(len(set(row)) == B for row in drawn)  # distinct within a batch


def test_draw_raises_when_fewer_points_are_alive_than_the_batch():
    alive = jnp.arange(N) < B - 1
    with pytest.raises(ValueError, match="fewer than batch_size"):
        bayes.draw_indices(jax.random.key(0), alive, B)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        _DRAW(jax.random.key(0), alive, num_batches=4, batch_size=B)
    with pytest.raises(ValueError, match="batch_size"):
        bayes.draw_indices(jax.random.key(0), alive, N + 1)
    idx = bayes.draw_indices(jax.random.key(0), jnp.arange(N) < B, B)
    assert sorted(np.asarray(idx).tolist()) == list(range(B))
