"""Batching: short final batches, seeded epoch shuffles, index stacks for lax.scan consumers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import curvature
from jaxunlearn import data as jd


def _ids(n, num_classes=3):
    """A dataset whose x records each example's own index."""
    return jd.Dataset(x=np.arange(n, dtype=np.float32)[:, None], y=np.arange(n) % num_classes,
                      num_classes=num_classes, name="ids")


# ---- sequential / epoch batches ---------------------------------------------------------------------

def test_sequential_batches_short_final_batch():
    keep = jd.sequential_batches(10, 4)
    assert [b.tolist() for b in keep] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b.tolist() for b in jd.sequential_batches(10, 4, final="drop")] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    padded = jd.sequential_batches(np.array([7, 3, 5]), 2, final="pad")
    assert [b.tolist() for b in padded] == [[7, 3], [5, 5]]
    assert jd.num_batches(10, 4) == 3 and jd.num_batches(10, 4, final="drop") == 2
    assert jd.num_batches(8, 4) == 2
    idx, mask = jd.pad_batch(np.array([4, 2]), 4)
    assert idx.tolist() == [4, 2, 4, 4] and mask.tolist() == [1, 1, 0, 0]


def test_iterate_batches_covers_each_example_once_and_is_reproducible():
    ds = _ids(23)
    key = jax.random.key(5)
    first = list(jd.iterate_batches(ds, 5, key=key, epoch=0))
    assert [b[0].shape[0] for b in first] == [5, 5, 5, 5, 3]
    assert isinstance(first[0][0], jax.Array) and first[0][1].dtype == jnp.int32
    seen = np.concatenate([np.asarray(x)[:, 0] for x, _ in first]).astype(int)
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    for x, y in first:  # x and y stay paired
        np.testing.assert_array_equal(np.asarray(x)[:, 0].astype(int) % 3, np.asarray(y))
    again = np.concatenate([np.asarray(x)[:, 0] for x, _ in jd.iterate_batches(ds, 5, key=key, epoch=0)])
    np.testing.assert_array_equal(seen, again)
    # the same order from an int seed twice, and from epoch_order
    other_epoch = np.concatenate([np.asarray(x)[:, 0] for x, _ in jd.iterate_batches(ds, 5, key=key, epoch=1)])
    assert other_epoch.tolist() != seen.tolist()
    np.testing.assert_array_equal(seen, jd.epoch_order(23, key, 0))
    a = jd.epoch_batches(23, 5, key=3, epoch=2)
    b = jd.epoch_batches(23, 5, key=3, epoch=2)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    # raw uint32 keys and typed keys give the same host shuffle
    np.testing.assert_array_equal(jd.epoch_order(23, jax.random.key_data(key), 0), seen)


def test_iterate_batches_unshuffled_subset_and_final_modes():
    ds = _ids(10)
    batches = list(jd.iterate_batches(ds, 4, indices=[9, 1, 8, 2, 7], device=False))
    assert [b[0][:, 0].astype(int).tolist() for b in batches] == [[9, 1, 8, 2], [7]]
    assert isinstance(batches[0][0], np.ndarray)
    dropped = list(jd.iterate_batches(ds, 4, final="drop"))
    assert len(dropped) == 2
    padded = list(jd.iterate_batches(ds, 4, final="pad"))
    assert len(padded) == 3 and all(b[0].shape == (4, 1) for b, _ in padded)
    (_, last_mask) = padded[-1]
    assert np.asarray(last_mask).tolist() == [1, 1, 0, 0]
    # a masked mean over the padded batch equals the mean of the short batch
    (x, _), mask = padded[-1]
    assert float(jnp.sum(mask * x[:, 0]) / jnp.sum(mask)) == pytest.approx((8 + 9) / 2)
    # plain pytrees work too
    tree = {"a": np.arange(6), "b": np.ones((6, 2))}
    out = list(jd.iterate_batches(tree, 4))
    assert out[0]["b"].shape == (4, 2) and out[1]["a"].tolist() == [4, 5]


def test_batching_errors():
    ds = _ids(6)
    with pytest.raises(ValueError, match="batch_size"):
        list(jd.iterate_batches(ds, 0))
    with pytest.raises(ValueError, match="batch_size"):
        jd.sequential_batches(6, 2.5)
    with pytest.raises(ValueError, match="final must be"):
        list(jd.iterate_batches(ds, 2, final="wrap"))
    with pytest.raises(ValueError, match="leaves no batch"):
        list(jd.iterate_batches(ds, 8, final="drop"))
    with pytest.raises(ValueError, match="disagree"):
        list(jd.iterate_batches((np.zeros(3), np.zeros(4)), 2))
    with pytest.raises(ValueError, match="empty"):
        list(jd.iterate_batches((np.zeros((0, 2)),), 2))
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        list(jd.iterate_batches(ds, 2, indices=[0, 6]))
    with pytest.raises(ValueError, match="non-negative"):
        jd.epoch_order(6, -1)
    with pytest.raises(TypeError, match="bool"):
        jd.epoch_order(6, True)


# ---- stack_batches ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["epochs", "independent", "replacement"])
def test_stack_batches_shapes_ranges_and_determinism(mode):
    ds = _ids(50)
    key = jax.random.key(0)
    b = jd.stack_batches(ds, 8, 13, key, mode=mode)
    assert b.shape == (13, 8) and b.dtype == jnp.int32
    assert int(b.min()) >= 0 and int(b.max()) < 50
    np.testing.assert_array_equal(b, jd.stack_batches(ds, 8, 13, key, mode=mode))
    assert not np.array_equal(b, jd.stack_batches(ds, 8, 13, jax.random.key(1), mode=mode))
    if mode == "epochs":  # a traced key inside a user's jit gives the same batches
        jitted = jax.jit(lambda k: jd.stack_batches(ds, 8, 13, k, mode=mode))(key)
        np.testing.assert_array_equal(b, jitted)
    if mode != "replacement":
        assert all(len(set(row.tolist())) == 8 for row in np.asarray(b))


def test_stack_batches_epochs_cycle_like_the_data_sampler():
    b = np.asarray(jd.stack_batches(20, 6, 7, jax.random.key(3)))
    # 20 // 6 = 3 full batches per epoch (drop_last); each epoch's 18 indices are distinct
    for e in range(2):
        assert len(set(b[3 * e:3 * e + 3].ravel().tolist())) == 18


def test_stack_batches_candidates_repeats_and_errors():
    ds = _ids(30)
    retain = np.arange(0, 30, 3)
    b = jd.stack_batches(ds, 4, 5, 0, indices=retain)
    assert set(np.asarray(b).ravel().tolist()) <= set(retain.tolist())
    r = jd.stack_batches(ds, 4, 5, jax.random.key(0), num_repeats=3)
    assert r.shape == (3, 5, 4) and not np.array_equal(r[0], r[1])
    with pytest.raises(ValueError, match="exceeds"):
        jd.stack_batches(ds, 11, 2, 0, indices=retain)
    with pytest.raises(ValueError, match="mode"):
        jd.stack_batches(ds, 4, 2, 0, mode="sorted")
    with pytest.raises(ValueError, match="num_batches"):
        jd.stack_batches(ds, 4, 0, 0)
    assert jd.stack_batches(ds, 40, 2, 0, mode="replacement").shape == (2, 40)


def test_stack_batches_feed_lissa():
    """Index stacks plus data= give the same LiSSA result as the gathered batches."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    t = rng.normal(size=(40,)).astype(np.float32)
    data = (jnp.asarray(x), jnp.asarray(t))

    def loss_fn(w, batch):
        xb, tb = batch
        return 0.5 * jnp.mean((xb @ w - tb) ** 2) + 0.05 * jnp.sum(w ** 2)

    w = jnp.zeros(3)
    v = jnp.ones(3)
    idx = jd.stack_batches(data, 10, 30, jax.random.key(0))
    by_index = curvature.lissa(loss_fn, w, v, idx, data=data, scale=0.2)
    gathered = jax.tree.map(lambda a: a[idx], data)
    direct = curvature.lissa(loss_fn, w, v, gathered, scale=0.2)
    np.testing.assert_allclose(by_index.ihvp, direct.ihvp, rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(jnp.isfinite(by_index.ihvp)))
