"""Synthetic datasets: real shapes and presets, determinism, CIFAR-20 labels, learnability (scikit-learn LDA)."""

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from threadpoolctl import threadpool_limits

from jaxunlearn import data as jd
from jaxunlearn.data import synthetic

N_TRAIN, N_TEST = 200, 100

# name -> (loader, x shape of one example under the default preset, classes of y, fine classes)
EXPECTED = {
    "synthetic_mnist": (jd.synthetic_mnist, (32, 32, 1), 10, None),  # "lenet": resized to 32 as load_mnist
    "synthetic_fashion_mnist": (jd.synthetic_fashion_mnist, (32, 32, 1), 10, None),
    "synthetic_cifar10": (jd.synthetic_cifar10, (32, 32, 3), 10, None),
    "synthetic_cifar100": (jd.synthetic_cifar100, (32, 32, 3), 100, None),
    "synthetic_cifar20": (jd.synthetic_cifar20, (32, 32, 3), 20, 100),
}


def _pixels(x, normalization):
    """Invert a normalisation by hand (module doc of transforms) and return the 0..255 pixel values."""
    if normalization == "cifar":
        unit = x * np.float64(jd.CIFAR_STD) + np.float64(jd.CIFAR_MEAN)
    elif normalization == "center":
        unit = x.astype(np.float64) + 0.5
    else:
        unit = x.astype(np.float64)
    return unit * 255.0


def _assert_uint8_pixels(x, normalization):
    raw = _pixels(x, normalization)
    np.testing.assert_allclose(raw, np.round(raw), atol=2e-3)
    assert raw.min() > -0.5 and raw.max() < 255.5


def _pool(x, p=4):
    n, h, w, c = x.shape
    return x.reshape(n, h // p, p, w // p, p, c).mean(axis=(2, 4)).reshape(n, -1)


pytestmark = pytest.mark.xdist_group("synthetic")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def pairs():
    return {name: jd.load_dataset(name, num_train=N_TRAIN, num_test=N_TEST) for name in EXPECTED}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shapes_dtypes_labels_and_balance(pairs, name):
    _, shape, k, fine = EXPECTED[name]
    for ds, n in zip(pairs[name], (N_TRAIN, N_TEST)):
        assert isinstance(ds, jd.Dataset)
        assert ds.x.shape == (n,) + shape and ds.x.dtype == np.float32 and np.isfinite(ds.x).all()
        assert ds.y.dtype == np.int32 and ds.num_classes == k and 0 <= ds.y.min() and ds.y.max() < k
        labels = ds.y if fine is None else ds.fine_y
        counts = np.bincount(labels, minlength=fine or k)
        assert counts.max() - counts.min() <= 1  # balanced: a permutation of arange(n) % K
        assert (ds.fine_y is None) == (fine is None)
    train, test = pairs[name]
    assert train.name == f"{name}/train" and test.name == f"{name}/test"
    # the default presets are the tfds loaders' (cifar mean/std; MNIST "lenet": x/255 - 0.5 at 32x32)
    _assert_uint8_pixels(train.x, "cifar" if shape[-1] == 3 else "center")


def test_presets_follow_the_tfds_loaders():
    train, _ = jd.synthetic_mnist(num_train=20, num_test=10, preset="vae")
    assert train.x.shape[1:] == (28, 28, 1) and train.x.min() >= 0.0 and train.x.max() <= 1.0
    _assert_uint8_pixels(train.x, "unit")
    native, _ = jd.synthetic_mnist(num_train=20, num_test=10, preset="center")
    np.testing.assert_allclose(native.x + 0.5, train.x, atol=1e-6)  # same images, "center" = unit - 0.5
    cifar_unit, _ = jd.synthetic_cifar10(num_train=20, num_test=10, preset="unit")
    cifar_ssd, _ = jd.synthetic_cifar10(num_train=20, num_test=10)
    np.testing.assert_allclose((cifar_unit.x - np.float32(jd.CIFAR_MEAN)) / np.float32(jd.CIFAR_STD), cifar_ssd.x,
                               rtol=1e-5, atol=1e-5)
    big, _ = jd.synthetic_cifar10(num_train=20, num_test=10, image_size=48)
    assert big.x.shape[1:] == (48, 48, 3)


def test_deterministic_in_the_seed():
    a_train, a_test = jd.synthetic_cifar10(num_train=50, num_test=30, seed=3)
    b_train, b_test = jd.synthetic_cifar10(num_train=50, num_test=30, seed=3)
    c_train, _ = jd.synthetic_cifar10(num_train=50, num_test=30, seed=4)
    np.testing.assert_array_equal(a_train.x, b_train.x)
    np.testing.assert_array_equal(a_train.y, b_train.y)
    np.testing.assert_array_equal(a_test.x, b_test.x)
    assert not np.array_equal(a_train.x, c_train.x)
    assert not np.array_equal(a_train.x[:30], a_test.x)  # train and test are different draws


def test_chunks_make_one_dataset(monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK", 16)
    train, _ = jd.synthetic_cifar10(num_train=40, num_test=5)  # chunks of 16, 16 and 8
    assert train.x.shape == (40, 32, 32, 3)
    _assert_uint8_pixels(train.x, "cifar")
    assert np.bincount(train.y).tolist() == [4] * 10
    assert len({train.x[i].tobytes() for i in range(40)}) == 40


def test_cifar20_labels_are_the_superclasses_of_the_cifar100_labels(pairs):
    reference = {fine: coarse for coarse, fines in jd.CIFAR20_COARSE_MAP.items() for fine in fines}
    for c100, c20 in zip(pairs["synthetic_cifar100"], pairs["synthetic_cifar20"]):
        np.testing.assert_array_equal(c20.x, c100.x)
        np.testing.assert_array_equal(c20.fine_y, c100.y)
        np.testing.assert_array_equal(c20.y, [reference[int(f)] for f in c100.y])
        assert c20.num_fine_classes == 100


def test_sub_class_scenario_runs_on_synthetic_cifar20(pairs):
    train, test = pairs["synthetic_cifar20"]
    split = jd.make_forget_split("subclass", train, test, forget_subclass="rocket")
    assert split.forget_class == 19  # rocket (69) lies in vehicle2 (19)
    assert (train.fine_y[split.forget_train_idx] == 69).all()
    assert split.sizes["forget_train"] == 2 and split.sizes["forget_test"] == 1  # 200 / 100, 100 / 100


def test_load_dataset_names_and_errors():
    assert set(jd.SYNTHETIC_DATASETS) == set(EXPECTED)
    assert jd.DATASETS == ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifar20")
    train, _ = jd.load_dataset("Synthetic-CIFAR10", num_train=10, num_test=10, seed=1)
    np.testing.assert_array_equal(train.x, jd.synthetic_cifar10(num_train=10, num_test=10, seed=1)[0].x)
    with pytest.raises(ValueError, match="synthetic_cifar100"):
        jd.load_dataset("synthetic_imagenet")
    with pytest.raises(ValueError, match="num_train"):
        jd.synthetic_cifar100(num_train=0)
    with pytest.raises(ValueError, match="num_test"):
        jd.synthetic_mnist(num_test=2.5)
    with pytest.raises(ValueError, match="seed"):
        jd.synthetic_cifar10(seed=-1)
    with pytest.raises(ValueError, match="preset"):
        jd.synthetic_cifar10(preset="lenet")
    with pytest.raises(ValueError, match="image_size"):
        jd.synthetic_mnist(image_size=0)
    with pytest.raises(ValueError, match="coarse"):
        synthetic.make_synthetic("cifar10", num_train=5, num_test=5, seed=0, normalization="unit",
                                 image_size=None, coarse=True)


@pytest.mark.parametrize("loader, low", [
    (jd.synthetic_cifar10, 0.6),  # chance 0.1
    (jd.synthetic_mnist, 0.35),  # chance 0.1
    (jd.synthetic_cifar20, 0.3),  # chance 0.05
])
def test_learnable_by_an_independent_classifier_but_not_trivially(loader, low):
    """scikit-learn's linear discriminant on 4x4-pooled pixels of 500 examples beats chance by a wide margin
    on 300 test examples, and stays short of perfect."""
    train, test = loader(num_train=500, num_test=300, seed=7)
    with threadpool_limits(1):  # small matrices: BLAS threads only add wake-up latency on a busy machine
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(_pool(train.x), train.y)
        score = lda.score(_pool(test.x), test.y)
    assert low < score < 0.99, score
