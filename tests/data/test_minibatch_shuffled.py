"""Shuffled-epoch minibatches of the alive examples: never a removed one, every alive one once per epoch,
and the distribution of a uniformly shuffled ``drop_last`` loader, checked against exact enumeration."""

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from jaxunlearn.data.minibatch import shuffled_batches

N, B, T = 12, 3, 10  # fixed shapes: every example below reuses one compilation


@settings(max_examples=20, deadline=None)
@given(alive=st.lists(st.booleans(), min_size=N, max_size=N).filter(lambda a: sum(a) >= B),
       seed=st.integers(0, 2**16))
def test_never_a_removed_point_and_each_epoch_covers_the_alive_points_once(alive, seed):
    alive = np.asarray(alive)
    rows = np.asarray(shuffled_batches(jax.random.key(seed), jnp.asarray(alive), T, B))
    assert rows.shape == (T, B) and rows.dtype == np.int32
    assert alive[rows].all(), "a removed point was drawn"
    m = int(alive.sum())
    per_epoch = m // B
    for start in range(0, T, per_epoch):
        epoch = rows[start:start + per_epoch].ravel()
        assert len(set(epoch.tolist())) == epoch.size, "a point came twice in one epoch"
        if start + per_epoch <= T and m % B == 0:
            assert sorted(epoch.tolist()) == np.flatnonzero(alive).tolist(), "an epoch missed an alive point"


def test_distribution_matches_exact_enumeration_of_shuffles():
    # 5 alive of 6, batches of 2: 2 batches per epoch, and one point sits each epoch out.
    alive = np.array([1, 1, 0, 1, 1, 1], bool)
    num_keys = 6_000
    rows = np.asarray(jax.vmap(lambda k: shuffled_batches(k, jnp.asarray(alive), 4, 2))(
        jax.random.split(jax.random.key(0), num_keys))).reshape(num_keys, 2, 4)  # [key, epoch, 4 drawn]
    points = np.flatnonzero(alive).tolist()
    # brute force: every ordering of the alive points is equally likely, an epoch is its first 4 entries
    law = collections.Counter(p[:4] for p in itertools.permutations(points))
    for epoch in (0, 1):
        observed = collections.Counter(map(tuple, rows[:, epoch].tolist()))
        assert set(observed) <= set(law), "an impossible epoch was drawn (a repeat or a removed point)"
        cells = sorted(law)
        expected = np.array([law[c] for c in cells]) / sum(law.values()) * num_keys
        p_value = stats.chisquare([observed[c] for c in cells], expected).pvalue
        assert p_value > 1e-4, f"epoch {epoch} is not a uniform shuffle (chi-square p = {p_value:.2e})"
    # epochs are independent: the points left out of epochs 0 and 1 are uniform on the 5 x 5 pairs
    left_out = [tuple(sorted(set(points) - set(r))) for r in rows.reshape(num_keys * 2, 4).tolist()]
    pairs = collections.Counter(zip(left_out[0::2], left_out[1::2]))
    counts = [pairs[((a,), (b,))] for a in points for b in points]
    assert sum(counts) == num_keys
    p_value = stats.chisquare(counts).pvalue
    assert p_value > 1e-4, f"the epochs are not independent (chi-square p = {p_value:.2e})"


def test_errors():
    with pytest.raises(ValueError, match="fewer than batch_size"):
        shuffled_batches(jax.random.key(0), jnp.arange(N) < B - 1, T, B)
    with pytest.raises(ValueError, match="batch_size"):
        shuffled_batches(jax.random.key(0), jnp.ones(N, bool), T, N + 1)
    with pytest.raises(ValueError, match="num_batches"):
        shuffled_batches(jax.random.key(0), jnp.ones(N, bool), 0, B)
