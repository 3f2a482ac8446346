"""The embedded datasets: scikit-learn's digits and the Bayesian seeds' 2-D Gaussian mixture."""

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_digits

from jaxunlearn import data as jd


# ---- digits ----------------------------------------------------------------------------------------

def test_digits_shapes_ranges_and_content():
    train, test = jd.load_digits()
    assert len(train) + len(test) == 1797 and len(test) == 450
    assert train.x.shape == (len(train), 8, 8, 1) and train.x.dtype == np.float32
    assert train.y.dtype == np.int32 and train.num_classes == 10
    for ds in (train, test):
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert set(np.unique(ds.y)) == set(range(10))
    # together the two splits are exactly sklearn's images / 16
    raw = sk_digits()
    ours = np.concatenate([train.x.reshape(-1, 64), test.x.reshape(-1, 64)])
    ours_y = np.concatenate([train.y, test.y])
    ref = raw.data.astype(np.float32) / 16.0
    key = lambda a, y: np.lexsort(np.column_stack([a, y]).T)  # noqa: E731
    np.testing.assert_array_equal(ours[key(ours, ours_y)], ref[key(ref, raw.target)])
    np.testing.assert_array_equal(np.sort(ours_y), np.sort(raw.target))


def test_digits_split_is_deterministic_and_stratified():
    a_train, a_test = jd.load_digits(seed=3)
    b_train, b_test = jd.load_digits(seed=3)
    c_train, _ = jd.load_digits(seed=4)
    np.testing.assert_array_equal(a_train.x, b_train.x)
    np.testing.assert_array_equal(a_test.y, b_test.y)
    assert not np.array_equal(a_train.x, c_train.x)
    counts = np.bincount(sk_digits().target, minlength=10)
    np.testing.assert_array_equal(a_test.class_counts(), np.round(0.25 * counts).astype(int))


def test_digits_options():
    train, test = jd.load_digits(flatten=True, normalization="center", test_fraction=0.5)
    assert train.x.shape[1:] == (64,) and abs(len(train) - len(test)) <= 10
    assert train.x.min() >= -0.5 and train.x.max() <= 0.5
    with pytest.raises(ValueError, match="test_fraction"):
        jd.load_digits(test_fraction=1.0)
    with pytest.raises(ValueError, match="normalization"):
        jd.load_digits(normalization="cifar")


# ---- Dataset container -----------------------------------------------------------------------------

def test_dataset_validation_errors():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        jd.Dataset(x=x, y=np.array([0, 1, 2, 3]), num_classes=3)
    with pytest.raises(ValueError, match="disagree on the number of examples"):
        jd.Dataset(x=x, y=np.array([0, 1, 2]), num_classes=3)
    with pytest.raises(ValueError, match="leading example axis"):
        jd.Dataset(x=np.zeros(4), y=np.zeros(4, int), num_classes=1)
    with pytest.raises(TypeError, match="integer class ids"):
        jd.Dataset(x=x, y=np.array([0.0, 1.0, 0.0, 1.0]), num_classes=2)
    with pytest.raises(ValueError, match="1-D"):
        jd.Dataset(x=x, y=np.zeros((4, 1), int), num_classes=1)
    ds = jd.from_arrays(x, [0, 2, 1, 2])
    assert ds.num_classes == 3
    with pytest.raises(ValueError, match="out of range"):
        ds.class_indices(3)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ds.take([0, 4])
    with pytest.raises(ValueError, match="no fine labels"):
        ds.class_indices(0, fine=True)
    sub = ds.take([3, 1, 3])
    np.testing.assert_array_equal(sub.y, [2, 2, 2])


# ---- GMM -------------------------------------------------------------------------------------------

def test_gmm_default_shape_and_determinism():
    g = jd.make_gmm2d()
    ds = g.dataset
    assert ds.x.shape == (2000, 2) and ds.x.dtype == np.float32 and ds.num_classes == 4
    assert set(np.unique(ds.y)) == {0, 1, 2, 3}
    assert np.bincount(ds.y).min() >= 400  # the removal set needs 400 points in clusters 0 and 2
    again = jd.make_gmm2d()
    np.testing.assert_array_equal(ds.x, again.dataset.x)
    other = jd.make_gmm2d(seed=7)
    assert not np.array_equal(ds.x, other.dataset.x)


def test_gmm_centres_follow_the_original_recipe():
    g = jd.make_gmm2d(10)
    # independent re-draw of the first two steps of the legacy stream
    rs = np.random.RandomState(jd.gmm.GMM_SEED)
    c = rs.rand() * 4.0
    raw = rs.multivariate_normal([0, 0], [[4.0, c], [c, 4.0]], size=4)
    np.testing.assert_allclose(g.means[[0, 2]], raw[[0, 2]])
    np.testing.assert_allclose(g.means[1], raw[1] + [-1.0, 2.5])
    np.testing.assert_allclose(g.means[3], raw[3] + [1.0, 0.0])
    np.testing.assert_allclose(g.covariances[0], np.diag([1.0, 0.05]))
    np.testing.assert_allclose(g.covariances[2], np.diag([0.05, 1.0]))
    np.testing.assert_allclose(g.covariances[1], np.eye(2))
    np.testing.assert_allclose(g.covariances[3], np.eye(2))


def test_gmm_cluster_statistics_with_many_points():
    g = jd.make_gmm2d(8000, seed=11)
    x, y = g.dataset.x.astype(np.float64), g.dataset.y
    for k in range(4):
        pts = x[y == k]
        assert pts.shape[0] > 1700
        np.testing.assert_allclose(pts.mean(0), g.means[k], atol=0.07)  # ~3 standard errors
        cov = np.cov(pts.T)
        expected = g.covariances[k]
        np.testing.assert_allclose(np.diag(cov), np.diag(expected), rtol=0.1)
        assert abs(cov[0, 1]) < 0.07


def test_gmm_removal_set_is_exactly_the_described_points():
    ds = jd.make_gmm2d().dataset
    removal = jd.gmm2d_removal_indices(ds)
    assert removal.shape == (800,) and np.unique(removal).size == 800
    # brute force: cluster 0 by decreasing x[0], cluster 2 by increasing x[1]
    c0 = sorted((i for i in range(len(ds)) if ds.y[i] == 0), key=lambda i: -ds.x[i, 0])[:400]
    c2 = sorted((i for i in range(len(ds)) if ds.y[i] == 2), key=lambda i: ds.x[i, 1])[:400]
    assert set(removal.tolist()) == set(c0) | set(c2)
    assert min(ds.x[c0, 0]) >= max(ds.x[[i for i in range(len(ds)) if ds.y[i] == 0 and i not in set(c0)], 0])
    # order: seeded shuffle, reproducible; None leaves it sorted by cluster
    np.testing.assert_array_equal(removal, jd.gmm2d_removal_indices(ds, seed=0))
    assert not np.array_equal(removal, jd.gmm2d_removal_indices(ds, seed=1))
    plain = jd.gmm2d_removal_indices(ds, seed=None)
    assert set(plain[:400].tolist()) == set(c0) and set(plain[400:].tolist()) == set(c2)


def test_gmm_errors_and_split():
    small = jd.make_gmm2d(100, seed=3).dataset
    with pytest.raises(ValueError, match="too few"):
        jd.gmm2d_removal_indices(small)
    with pytest.raises(ValueError, match="num_clusters"):
        jd.make_gmm2d(num_clusters=3)
    split = jd.gmm2d_split()
    assert split.sizes == {"forget_train": 800, "retain_train": 1200, "forget_test": 800, "retain_test": 0}
    assert len(split.retain_test) == 0 and split.test is None and split.forget_test_from == "train"
    np.testing.assert_array_equal(split.forget_train_idx, jd.gmm2d_removal_indices(jd.make_gmm2d().dataset))
