"""tfds loaders on tfds.testing.mock_data, transforms against PIL, and the offline errors."""

import os
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxunlearn import data as jd
from jaxunlearn.data import tfds_loaders

N_MOCK = 40

# The brief's rounded constants: the exact ones must round to them.
ROUNDED_MEAN = (0.5071, 0.4865, 0.4409)
ROUNDED_STD = (0.2673, 0.2564, 0.2762)


def _mock(n=N_MOCK):
    return tfds.testing.mock_data(num_examples=n)


def _raw_uint8(x_unit):
    """Recover the uint8 pixels from a 'unit' (x / 255) load."""
    raw = np.round(x_unit * 255.0)
    assert np.allclose(raw, x_unit * 255.0, atol=1e-3)
    return raw.astype(np.uint8)


def _pil_resize(images, size):
    out = []
    for img in images:
        if img.shape[-1] == 1:
            pil = Image.fromarray(img[..., 0], mode="L").resize((size, size), Image.BILINEAR)
            out.append(np.asarray(pil)[..., None])
        else:
            pil = Image.fromarray(img, mode="RGB").resize((size, size), Image.BILINEAR)
            out.append(np.asarray(pil))
    return np.stack(out)


# ---- constants -------------------------------------------------------------------------------------

def test_cifar_constants_round_to_the_published_values():
    np.testing.assert_allclose(jd.CIFAR_MEAN, ROUNDED_MEAN, atol=5e-5)
    np.testing.assert_allclose(jd.CIFAR_STD, ROUNDED_STD, atol=5e-5)


def test_coarse_table_is_a_partition_and_matches_named_classes():
    fines = sorted(f for fs in jd.CIFAR20_COARSE_MAP.values() for f in fs)
    assert fines == list(range(100))
    assert all(len(fs) == 5 for fs in jd.CIFAR20_COARSE_MAP.values()) and len(jd.CIFAR20_COARSE_MAP) == 20
    # the SSD forget classes and their superclasses
    pairs = {"rocket": "vehicle2", "mushroom": "veg", "baby": "people", "lamp": "electrical_devices",
             "sea": "natural_scenes"}
    assert jd.CIFAR100_CLASS_IDS == {"rocket": 69, "mushroom": 51, "baby": 2, "lamp": 40, "sea": 71}
    assert jd.CIFAR20_CLASS_IDS == {"vehicle2": 19, "veg": 4, "people": 14, "electrical_devices": 5,
                                    "natural_scenes": 10}
    for fine, coarse in pairs.items():
        assert jd.superclass_of(jd.CLASS_IDS[fine]) == jd.CLASS_IDS[coarse]


def test_coarse_labels_errors():
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        jd.coarse_labels(np.array([3, 100]))
    with pytest.raises(TypeError, match="integers"):
        jd.coarse_labels(np.array([1.0]))


# ---- every loader on mock data ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_grey_loaders_lenet_is_pil_resize_then_center(name):
    loader = {"mnist": jd.load_mnist, "fashion_mnist": jd.load_fashion_mnist}[name]
    with _mock():
        lenet = loader("train", download=True)
        vae = loader("train", preset="vae", download=True)
        test = loader("test", download=True)
    assert lenet.x.shape == (N_MOCK, 32, 32, 1) and lenet.x.dtype == np.float32
    assert vae.x.shape == (N_MOCK, 28, 28, 1)
    assert lenet.y.dtype == np.int32 and lenet.num_classes == 10 and 0 <= lenet.y.min() and lenet.y.max() < 10
    assert test.name == f"{name}/test" and len(test) == N_MOCK
    # VAE preset: raw [0, 1]
    assert vae.x.min() >= 0.0 and vae.x.max() <= 1.0
    raw = _raw_uint8(vae.x)
    # LeNet preset: torchvision Resize(32) on the PIL image (bilinear), ToTensor, Normalize((0.5,), (1.,))
    expected = _pil_resize(raw, 32).astype(np.float32) / 255.0 - 0.5
    np.testing.assert_allclose(lenet.x, expected, atol=1e-6)
    np.testing.assert_array_equal(lenet.y, vae.y)
    assert lenet.x.min() >= -0.5 and lenet.x.max() <= 0.5


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loaders_normalisations(name):
    loader = {"cifar10": jd.load_cifar10, "cifar100": jd.load_cifar100}[name]
    with _mock():
        ssd = loader("train", download=True)
        unit = loader("train", preset="unit", download=True)
        center = loader("train", preset="center", download=True)
    k = {"cifar10": 10, "cifar100": 100}[name]
    assert ssd.x.shape == (N_MOCK, 32, 32, 3) and ssd.x.dtype == np.float32 and ssd.num_classes == k
    assert ssd.y.max() < k and ssd.fine_y is None
    raw = _raw_uint8(unit.x).astype(np.float64) / 255.0
    np.testing.assert_allclose(ssd.x, (raw - np.array(ROUNDED_MEAN)) / np.array(ROUNDED_STD), atol=2e-3)
    np.testing.assert_allclose(ssd.x, (raw - np.array(jd.CIFAR_MEAN)) / np.array(jd.CIFAR_STD), atol=1e-5)
    np.testing.assert_allclose(center.x, raw - 0.5, atol=1e-6)


def test_cifar20_coarse_labels_come_from_the_table():
    with _mock(200):
        c100 = jd.load_cifar100("train", download=True)
        c20 = jd.load_cifar20("train", download=True)
        c20_test = jd.load_cifar20("test", download=True)
    assert c20.num_classes == 20 and c20.num_fine_classes == 100 and c20.name == "cifar20/train"
    np.testing.assert_array_equal(c20.fine_y, c100.y)
    np.testing.assert_array_equal(c20.x, c100.x)
    # brute force, as the original Cifar20.__getitem__ does it
    for fine, coarse in zip(c20.fine_y, c20.y):
        hits = [c for c, fs in jd.CIFAR20_COARSE_MAP.items() if int(fine) in fs]
        assert hits == [int(coarse)]
    assert c20_test.fine_y is not None and c20_test.y.max() < 20


def test_cifar_resize_after_normalisation():
    with _mock(8):
        small = jd.load_cifar10("train", download=True)
        big = jd.load_cifar10("train", download=True, image_size=64)
    assert big.x.shape == (8, 64, 64, 3)
    np.testing.assert_allclose(big.x, jd.resize_float(small.x, 64), atol=1e-6)


def test_load_dataset_dispatch_and_errors():
    train, test = jd.load_dataset("digits")
    assert len(train) + len(test) == 1797
    with _mock(10):
        tr, te = jd.load_dataset("Fashion-MNIST", download=True)
    assert tr.name == "fashion_mnist/train" and te.name == "fashion_mnist/test"
    with pytest.raises(ValueError, match="unknown dataset"):
        jd.load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown tfds dataset"):
        jd.load_tfds("svhn", normalization="unit")
    with pytest.raises(ValueError, match="unknown preset"):
        jd.load_mnist(preset="resnet")
    with pytest.raises(ValueError, match="cifar100 only"):
        jd.load_tfds("cifar10", normalization="cifar", coarse=True)


# ---- offline behaviour -----------------------------------------------------------------------------

def _forbid_network(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the loader tried to download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", boom)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_missing_data_raises_our_error_at_once(tmp_path, monkeypatch, name):
    _forbid_network(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(jd.DatasetNotAvailableError) as info:
        jd.load_tfds(name, "train", data_dir=tmp_path, normalization="unit")
    assert time.perf_counter() - start < 10.0
    msg = str(info.value)
    assert name in msg and str(tmp_path) in msg and "download=True" in msg and "array_record" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_missing_data_via_presets(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    for loader in (jd.load_mnist, jd.load_fashion_mnist, jd.load_cifar10, jd.load_cifar100, jd.load_cifar20):
        with pytest.raises(jd.DatasetNotAvailableError, match="not prepared"):
            loader("test", data_dir=tmp_path)


def test_failed_download_is_wrapped(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(jd.DatasetNotAvailableError, match="downloading it failed.*ConnectionError"):
        jd.load_mnist("train", data_dir=tmp_path, download=True)


def test_batched_reads_match_single_reads():
    class Source:
        def __init__(self, n):
            rng = np.random.default_rng(0)
            self.items = [{"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), "label": np.int64(i % 10)}
                          for i in range(n)]
            self.batched_calls = 0

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

        def __getitems__(self, ids):
            self.batched_calls += 1
            return [self.items[i] for i in ids]

    class BrokenBatchSource(Source):
        def __getitems__(self, ids):  # like the mocked source
            raise TypeError("_getitems() missing 1 required positional argument")

    good, broken = Source(25), BrokenBatchSource(25)
    a = tfds_loaders._read_all(good, ("image", "label"), chunk=10)
    b = tfds_loaders._read_all(broken, ("image", "label"), chunk=10)
    assert good.batched_calls == 3
    for k in ("image", "label"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["image"].shape == (25, 28, 28, 1)


# ---- transforms ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,size", [((5, 28, 28, 1), 32), ((3, 32, 32, 3), 24), ((2, 17, 17, 3), 40),
                                        ((2, 28, 28, 1), 9)])
def test_resize_uint8_matches_pil_bit_for_bit(shape, size):
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(jd.resize_uint8(images, size), _pil_resize(images, size))


def test_resize_float_is_bilinear_for_upsampling():
    img = np.random.default_rng(2).normal(size=(1, 4, 4, 1)).astype(np.float32)
    out = jd.resize_float(img, 8)
    # reference: half-pixel bilinear with edge clamping (torch interpolate, align_corners=False)
    src = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, 3)
    t = src - lo
    rows = img[0, lo, :, 0] * (1 - t)[:, None] + img[0, hi, :, 0] * t[:, None]
    ref = rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]
    np.testing.assert_allclose(out[0, :, :, 0], ref, atol=1e-5)


def test_transform_errors():
    with pytest.raises(ValueError, match="NHWC"):
        jd.resize_uint8(np.zeros((28, 28), np.uint8), 32)
    with pytest.raises(TypeError, match="uint8"):
        jd.resize_uint8(np.zeros((1, 28, 28, 1), np.float32), 32)
    with pytest.raises(ValueError, match="unknown normalization"):
        jd.normalize(np.zeros((1, 2, 2, 1), np.uint8), "imagenet")
    with pytest.raises(ValueError, match="3 channels"):
        jd.normalize(np.zeros((1, 2, 2, 1), np.uint8), "cifar")


# ---- --download without a network ----------------------------------------------------------------------

def test_offline_download_fails_in_seconds_and_leaves_no_folder(tmp_path, monkeypatch):
    """The probe (mocked to find no network) stops the download before tfds retries for minutes."""
    from jaxunlearn import io as jio

    probed = []

    def no_network(host, port, timeout=3.0):
        probed.append((host, port))
        return False

    def must_not_run(*args, **kwargs):
        raise AssertionError("download_and_prepare ran although the probe failed")

    monkeypatch.setattr(jio, "can_connect", no_network)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", must_not_run)
    monkeypatch.setattr(tfds_loaders, "_is_real_download", lambda builder: True)
    for env in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(env, raising=False)
    data_dir = tmp_path / "new" / "tfds"
    start = time.perf_counter()
    with pytest.raises(jd.DatasetNotAvailableError) as info:
        jd.load_mnist("train", data_dir=data_dir, download=True)
    assert time.perf_counter() - start < 5.0
    msg = str(info.value)
    assert probed == [tfds_loaders.DOWNLOAD_HOSTS["mnist"]]
    assert "'mnist' is not prepared under" in msg and "did not answer" in msg and "array_record" in msg
    assert os.listdir(tmp_path) == []


def test_failed_download_removes_the_folders_it_created(tmp_path, monkeypatch):
    def half_download(self, *args, **kwargs):
        root = os.path.dirname(os.path.dirname(str(self.data_dir)))
        os.makedirs(os.path.join(root, "downloads", "extracted"))
        os.makedirs(str(self.data_dir) + ".incomplete")
        raise ConnectionError("connection reset")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", half_download)
    fresh = tmp_path / "fresh"
    with pytest.raises(jd.DatasetNotAvailableError, match="downloading it failed.*ConnectionError"):
        jd.load_cifar10("train", data_dir=fresh, download=True)
    assert not fresh.exists()
    existing = tmp_path / "existing"
    (existing / "mine").mkdir(parents=True)
    with pytest.raises(jd.DatasetNotAvailableError):
        jd.load_cifar10("train", data_dir=existing, download=True)
    assert sorted(os.listdir(existing)) == ["mine"]


def test_probe_goes_through_the_configured_proxy(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.internal:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert tfds_loaders._probe_target("cifar10")[:2] == ("proxy.internal", 3128)
    monkeypatch.delenv("https_proxy")
    monkeypatch.delenv("http_proxy")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    assert tfds_loaders._probe_target("cifar10")[:2] == tfds_loaders.DOWNLOAD_HOSTS["cifar10"]


def test_mocked_downloads_are_not_probed(monkeypatch):
    from jaxunlearn import io as jio

    monkeypatch.setattr(jio, "can_connect", lambda *a, **k: pytest.fail("probed under tfds.testing.mock_data"))
    with _mock(4):
        assert len(jd.load_mnist("train", download=True)) == 4
