"""MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and CIFAR-20 through tensorflow-datasets.

Random access through ``builder.as_data_source`` (ArrayRecord files, no
TensorFlow needed). The loaders never reach the network unless asked:

* the builder is checked with ``builder.is_prepared()`` first; data that is
  not prepared under ``data_dir`` raises :class:`DatasetNotAvailableError` at
  once with the way to supply it (an offline download would retry for minutes
  before failing);
* ``download=True`` first probes the download host (:data:`DOWNLOAD_HOSTS`,
  or the proxy of ``https_proxy``/``http_proxy``) with one TCP connect of a
  few seconds (:func:`jaxunlearn.io.can_connect`); an unreachable host raises
  :class:`DatasetNotAvailableError` at once instead of tfds retrying for
  minutes. Then ``download_and_prepare`` runs (ArrayRecord format), and a
  failure there is re-raised as :class:`DatasetNotAvailableError` too. Either
  way the folders the attempt created under ``data_dir`` are removed again. A
  replaced ``download_and_prepare`` (``tfds.testing.mock_data``, a test
  double) is called without the probe.

Normalisations of the originals (``normalization=``, see
:func:`jaxunlearn.data.transforms.normalize`):

=============================  ==========================================================
dataset / preset               inputs
=============================  ==========================================================
mnist, fashion_mnist "lenet"   Resize(32) bilinear on the uint8 image, then x/255 - 0.5
                               (BIF / MCMC unlearning LeNet), ``[N, 32, 32, 1]``
mnist, fashion_mnist "vae"     x/255 in [0, 1] at 28x28 (Selective Amnesia), ``[N, 28, 28, 1]``
cifar10/100/20 "ssd"           (x/255 - CIFAR_MEAN) / CIFAR_STD (SSD, JiT), ``[N, 32, 32, 3]``
cifar10/100 "center"           x/255 - 0.5 (MCMC unlearning SmallCNN)
=============================  ==========================================================

CIFAR-20 (``load_cifar20``) is CIFAR-100 with the superclass as label ``y``
(derived from the fine label by the standard 20x5 table,
:data:`jaxunlearn.data.cifar.CIFAR20_COARSE_MAP`, not read from the files) and
the fine label kept as ``fine_y`` for the sub-class scenario.

Tests run these loaders under ``tfds.testing.mock_data`` (pass
``download=True`` there: the mocked download is a no-op).
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from typing import Any

import numpy as np

from jaxunlearn.data.cifar import coarse_labels
from jaxunlearn.data.dataset import Dataset
from jaxunlearn.data.transforms import normalize, resize_float, resize_uint8

#: tfds name -> (number of classes, native image shape)
TFDS_DATASETS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "mnist": (10, (28, 28, 1)),
    "fashion_mnist": (10, (28, 28, 1)),
    "cifar10": (10, (32, 32, 3)),
    "cifar100": (100, (32, 32, 3)),
}

#: tfds name -> (train size, test size), as tfds prepares them.
SPLIT_SIZES: dict[str, tuple[int, int]] = {
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
}

#: tfds name -> examples of its largest class in the train split (an upper bound for every class).
MAX_CLASS_COUNT: dict[str, int] = {"mnist": 6742, "fashion_mnist": 6000, "cifar10": 5000, "cifar100": 500}

#: tfds name -> (host, port) its tfds builder downloads from (probed before a download).
DOWNLOAD_HOSTS: dict[str, tuple[str, int]] = {
    "mnist": ("storage.googleapis.com", 443),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": ("www.cs.toronto.edu", 443),
    "cifar100": ("www.cs.toronto.edu", 443),
}

#: Seconds the connectivity probe waits before calling the download host unreachable.
PROBE_TIMEOUT = 3.0

#: preset -> (normalization, image_size) for the grey datasets and for CIFAR.
MNIST_PRESETS = {"lenet": ("center", 32), "vae": ("unit", None), "center": ("center", None)}
CIFAR_PRESETS = {"ssd": ("cifar", None), "center": ("center", None), "unit": ("unit", None)}


class DatasetNotAvailableError(FileNotFoundError):
    """The requested tfds dataset is not prepared under ``data_dir`` and cannot be downloaded."""


def _howto(name: str, data_dir: str) -> str:
    return (
        f"To supply it, on a machine with internet access run\n"
        f"    python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='DIR', "
        f"file_format='array_record').download_and_prepare()\"\n"
        f"and copy DIR/{name} into {data_dir} (or pass data_dir=DIR, or set TFDS_DATA_DIR); "
        f"or pass download=True where this machine can reach the internet. "
        f"Offline, the embedded datasets need no download: jaxunlearn.data.load_digits() and make_gmm2d()."
    )


def _probe_target(name: str) -> tuple[str, int, str]:
    """``(host, port, what)`` to probe before downloading ``name``: the configured proxy, else the download host."""
    host, port = DOWNLOAD_HOSTS[name]
    proxies = urllib.request.getproxies()
    proxy = proxies.get("https" if port == 443 else "http")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), f"proxy {proxy}"
    return host, port, "download host"


def probe_download(name: str) -> None:
    """Raise :class:`DatasetNotAvailableError` unless the host that serves ``name`` answers a TCP connect.

    Args:
      name: a key of :data:`DOWNLOAD_HOSTS`.

    Raises:
      DatasetNotAvailableError: the host (or the configured proxy) did not accept a connection within
        :data:`PROBE_TIMEOUT` seconds.
    """
    from jaxunlearn.io import can_connect

    host, port, what = _probe_target(name)
    if not can_connect(host, port, timeout=PROBE_TIMEOUT):
        raise DatasetNotAvailableError(
            f"the {what} {host}:{port} of tfds dataset {name!r} did not answer within {PROBE_TIMEOUT:g} s "
            f"(no network?)"
        )


def _is_real_download(builder: Any) -> bool:
    """False when ``download_and_prepare`` is replaced (``tfds.testing.mock_data`` or a test double)."""
    fn = getattr(type(builder), "download_and_prepare", None)
    return getattr(fn, "__module__", "").startswith("tensorflow_datasets.core")


def _new_folders(root: str, name: str) -> list[str]:
    """The folders a download of ``name`` into ``root`` would create that do not exist yet.

    The topmost missing ancestor of ``root`` (``root`` included) when there is
    one (everything goes inside it), else ``root/name`` and ``root/downloads``
    where missing.
    """
    top, probe = None, root
    while not os.path.exists(probe):
        top, probe = probe, os.path.dirname(probe)
        if probe == os.path.dirname(probe):
            break
    if top is not None:
        return [top]
    return [p for p in (os.path.join(root, name), os.path.join(root, "downloads")) if not os.path.exists(p)]


def open_source(name: str, split: str, *, data_dir: str | os.PathLike | None = None, download: bool = False) -> Any:
    """The tfds random-access data source of ``name``/``split`` (a sequence of example dicts).

    Raises :class:`DatasetNotAvailableError` at once when the data is not
    prepared under ``data_dir`` and ``download`` is false, and when a
    requested download fails.
    """
    if name not in TFDS_DATASETS:
        raise ValueError(f"unknown tfds dataset {name!r}; choose one of {sorted(TFDS_DATASETS)}.")
    import tensorflow_datasets as tfds

    given = None if data_dir is None else os.path.abspath(os.fspath(data_dir))
    builder = tfds.builder(name, data_dir=given, file_format="array_record")
    where = str(builder.data_dir)
    root = given if given is not None else os.path.dirname(os.path.dirname(where))
    if not builder.is_prepared():
        if not download:
            raise DatasetNotAvailableError(
                f"tfds dataset {name!r} is not prepared under {where} (data_dir={root}) and download=False, "
                f"so it cannot be loaded offline. {_howto(name, root)}"
            )
        made = _new_folders(root, name)
        try:
            if _is_real_download(builder):
                probe_download(name)
            builder.download_and_prepare()
        except Exception as err:  # network failures come in many types
            for folder in made:  # what the failed attempt left behind
                if os.path.isdir(folder):
                    shutil.rmtree(folder, ignore_errors=True)
            if isinstance(err, DatasetNotAvailableError):
                raise DatasetNotAvailableError(
                    f"tfds dataset {name!r} is not prepared under {where} (data_dir={root}) and cannot be "
                    f"downloaded: {err}. {_howto(name, root)}"
                ) from None
            raise DatasetNotAvailableError(
                f"tfds dataset {name!r} is not prepared under {where} and downloading it failed "
                f"({type(err).__name__}: {err}). {_howto(name, root)}"
            ) from err
    try:
        return builder.as_data_source(split=split)
    except NotImplementedError as err:
        raise DatasetNotAvailableError(
            f"tfds dataset {name!r} under {where} is not stored in a random-access format (ArrayRecord), "
            f"which these loaders read without TensorFlow. Prepare it again with file_format='array_record' "
            f"into another data_dir. {_howto(name, root)}"
        ) from err


def _read_all(source: Any, keys: tuple[str, ...], chunk: int = 1024) -> dict[str, np.ndarray]:
    """Stack ``keys`` of every example of ``source``.

    Reads in chunks through ``__getitems__`` (parallel reads on real ArrayRecord
    files) and falls back to one item at a time where that fails (the
    ``tfds.testing.mock_data`` sources implement only ``__getitem__``).
    """
    n = len(source)
    if n == 0:
        raise DatasetNotAvailableError("the requested split holds no examples.")
    cols: dict[str, list] = {k: [] for k in keys}
    batched = hasattr(source, "__getitems__")
    for start in range(0, n, chunk):
        ids = list(range(start, min(start + chunk, n)))
        items = None
        if batched:
            try:
                items = list(source.__getitems__(ids))
            except TypeError:
                batched = False
        if items is None:
            items = [source[i] for i in ids]
        for item in items:
            for k in keys:
                cols[k].append(np.asarray(item[k]))
    return {k: np.stack(v) for k, v in cols.items()}


def load_tfds(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    normalization: str,
    image_size: int | None = None,
    coarse: bool = False,
) -> Dataset:
    """Load one split of a tfds image-classification dataset into host memory.

    Args:
      name: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` or ``"cifar100"``.
      split: a tfds split string (``"train"``, ``"test"``, ``"train[:10%]"``, ...).
      data_dir: where the prepared data lives (default: tfds' default,
        ``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      download: allow downloading when the data is not prepared.
      normalization: ``"unit"``, ``"center"`` or ``"cifar"`` (see module doc).
      image_size: resize to ``image_size x image_size``. Grey datasets are
        resized as uint8 images before normalising (PIL bilinear, like
        torchvision's ``Resize`` on the PIL image); CIFAR is resized after
        normalising (float bilinear, like SSD's ``Resize`` after ``Normalize``).
      coarse: CIFAR-100 only: ``y`` = the CIFAR-20 superclass (by the table),
        ``fine_y`` = the CIFAR-100 class.

    Returns:
      :class:`Dataset` with float32 NHWC ``x`` and int32 ``y``.
    """
    num_classes, native = TFDS_DATASETS.get(name, (None, None))
    if num_classes is None:
        raise ValueError(f"unknown tfds dataset {name!r}; choose one of {sorted(TFDS_DATASETS)}.")
    if coarse and name != "cifar100":
        raise ValueError("coarse=True (CIFAR-20 labels) applies to cifar100 only.")
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}.")
    source = open_source(name, split, data_dir=data_dir, download=download)
    cols = _read_all(source, ("image", "label"))
    images, labels = cols["image"], cols["label"].astype(np.int64)
    if images.dtype != np.uint8 or images.shape[1:] != native:
        raise ValueError(f"{name}/{split}: expected uint8 images of shape {native}, got {images.dtype} "
                         f"{images.shape[1:]}; is data_dir holding another dataset under this name?")
    if image_size is not None and native[-1] == 1 and image_size != native[0]:
        images = resize_uint8(images, image_size)  # torchvision Resize on the PIL image, before ToTensor
    x = normalize(images, normalization)
    if image_size is not None and x.shape[1] != image_size:
        x = resize_float(x, image_size)
    info = {"source": f"tfds:{name}", "split": split, "normalization": normalization, "image_size": x.shape[1]}
    if coarse:
        return Dataset(x=x, y=coarse_labels(labels), num_classes=20, name=f"cifar20/{split}",
                       fine_y=labels, num_fine_classes=100, info=info)
    return Dataset(x=x, y=labels, num_classes=num_classes, name=f"{name}/{split}", info=info)


def _preset(presets: dict, preset: str, normalization: str | None, image_size: Any) -> tuple[str, int | None]:
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}.")
    norm, size = presets[preset]
    return (norm if normalization is None else normalization), (size if image_size == "preset" else image_size)


def load_mnist(split: str = "train", *, preset: str = "lenet", data_dir=None, download: bool = False,
               normalization: str | None = None, image_size: Any = "preset") -> Dataset:
    """MNIST. ``preset="lenet"``: 32x32, ``x/255 - 0.5`` (BIF, MCMC unlearning); ``"vae"``: 28x28 in [0, 1] (SA).

    ``normalization`` and ``image_size`` override the preset's (``image_size=None``: native size).
    """
    norm, size = _preset(MNIST_PRESETS, preset, normalization, image_size)
    return load_tfds("mnist", split, data_dir=data_dir, download=download, normalization=norm, image_size=size)


def load_fashion_mnist(split: str = "train", *, preset: str = "lenet", data_dir=None, download: bool = False,
                       normalization: str | None = None, image_size: Any = "preset") -> Dataset:
    """Fashion-MNIST, presets as :func:`load_mnist` (the BIF BNN experiments use ``"lenet"``)."""
    norm, size = _preset(MNIST_PRESETS, preset, normalization, image_size)
    return load_tfds("fashion_mnist", split, data_dir=data_dir, download=download, normalization=norm,
                     image_size=size)


def load_cifar10(split: str = "train", *, preset: str = "ssd", data_dir=None, download: bool = False,
                 normalization: str | None = None, image_size: Any = "preset") -> Dataset:
    """CIFAR-10. ``preset="ssd"``: CIFAR mean/std (SSD, JiT); ``"center"``: ``x/255 - 0.5`` (MCMC unlearning)."""
    norm, size = _preset(CIFAR_PRESETS, preset, normalization, image_size)
    return load_tfds("cifar10", split, data_dir=data_dir, download=download, normalization=norm, image_size=size)


def load_cifar100(split: str = "train", *, preset: str = "ssd", data_dir=None, download: bool = False,
                  normalization: str | None = None, image_size: Any = "preset") -> Dataset:
    """CIFAR-100 with its 100 fine labels, presets as :func:`load_cifar10`."""
    norm, size = _preset(CIFAR_PRESETS, preset, normalization, image_size)
    return load_tfds("cifar100", split, data_dir=data_dir, download=download, normalization=norm, image_size=size)


def load_cifar20(split: str = "train", *, preset: str = "ssd", data_dir=None, download: bool = False,
                 normalization: str | None = None, image_size: Any = "preset") -> Dataset:
    """CIFAR-20: CIFAR-100 images labelled by superclass (``y``, 20 classes), fine class in ``fine_y``."""
    norm, size = _preset(CIFAR_PRESETS, preset, normalization, image_size)
    return load_tfds("cifar100", split, data_dir=data_dir, download=download, normalization=norm,
                     image_size=size, coarse=True)
