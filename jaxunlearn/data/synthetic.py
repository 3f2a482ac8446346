"""Synthetic datasets with the real shapes of MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and CIFAR-20.

Nothing can be downloaded on many machines, yet the paper-scale paths (a
ResNet-18 on 50,000 CIFAR images, the sub-class scenario of CIFAR-20) must be
known to run before anyone rents an accelerator. These generators make
learnable stand-ins from a seed, in numpy, with the shapes, label sets and
normalisations of the tfds loaders (:mod:`jaxunlearn.data.tfds_loaders`):

=================================  ==============  =========================================
function                           native images   labels
=================================  ==============  =========================================
:func:`synthetic_mnist`            28x28x1 uint8   10 classes
:func:`synthetic_fashion_mnist`    28x28x1 uint8   10 classes (other patterns)
:func:`synthetic_cifar10`          32x32x3 uint8   10 classes
:func:`synthetic_cifar100`         32x32x3 uint8   100 fine classes
:func:`synthetic_cifar20`          32x32x3 uint8   ``y``: the 20 superclasses, ``fine_y``: the
                                                   100 fine classes (the images of
                                                   :func:`synthetic_cifar100`)
=================================  ==============  =========================================

The uint8 images then go through the same presets as the real loaders
(``preset="ssd"`` etc., :func:`jaxunlearn.data.transforms.normalize`; MNIST's
``"lenet"`` preset resizes to 32x32 as :func:`jaxunlearn.data.load_mnist`
does), so ``synthetic_cifar20`` is a drop-in for ``load_cifar20`` and scenarios
such as ``subclass:rocket`` select the same fine class ids.

The generative model (pixel values in ``[0, 1]`` before quantisation), for
example ``i`` of class ``y_i``::

    x_i = round(255 * clip(0.5 + a c_i S_{d_i}(T_{y_i}) + b sum_j u_ij B_j + sigma eps_i, 0, 1)) / 255

* ``T_k`` (class templates) are smooth random fields: standard normal noise
  at a quarter of the resolution, bilinearly upsampled
  (:func:`~jaxunlearn.data.transforms.resize_float`), each scaled to zero
  mean and unit standard deviation; ``B_j`` (``M = 16`` class-free nuisance
  patterns, the clutter) are quarter-resolution standard normal noise, so
  scaled too, blown up to 4x4 blocks. For CIFAR-100 (and
  CIFAR-20) ``T_k = norm(sqrt(rho) G_{coarse(k)} + sqrt(1 - rho) F_k)`` with
  ``rho = 1/2``: the five fine classes of a superclass share the pattern
  ``G`` of their superclass (by :data:`~jaxunlearn.data.cifar.CIFAR20_COARSE_MAP`),
  so a sub-class is close to its siblings, as in the real data;
* ``S_d`` shifts a template by ``d in {-s..s}^2`` pixels (``s = H // 8``,
  reflected at the border); contrast ``c_i ~ U(0.6, 1.4)``; nuisance weights
  ``u_ij ~ N(0, 1/M)``; pixel noise ``eps`` uniform on 256 evenly spaced
  values in ``(-sqrt 3, sqrt 3)`` (unit variance, drawn as random bytes);
  ``a = 0.06``, ``b = 0.15``, ``sigma = 0.25``.

Classes are balanced: the labels of a split are a seeded permutation of
``arange(n) % K``. The class signal is weak against clutter and noise, so
accuracy rises with training and stays short of 100 %: scikit-learn's linear
discriminant on 4x4-pooled pixels of 500 training examples scores about 0.93
on CIFAR-10 shapes, 0.6 on the 20 superclasses, 0.35 on the 100 fine classes
and 0.7 on MNIST shapes (chance: 0.1, 0.05, 0.01, 0.1).
Everything is deterministic in ``seed``: the templates come from
``default_rng([seed, family])`` and each split from its own streams
``default_rng([seed, family, split, ...])``, so train and test share the
templates but not the examples; ``synthetic_cifar100`` and
``synthetic_cifar20`` with one seed hold the same images. Examples are made
in chunks of :data:`CHUNK` (bounded temporary memory); 50,000 CIFAR-shaped
examples take about 2 s of CPU time on one core, plus the page faults of the
600 MB result.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxunlearn._validation import check_positive_int
from jaxunlearn.data.cifar import FINE_TO_COARSE, coarse_labels
from jaxunlearn.data.dataset import Dataset
from jaxunlearn.data.tfds_loaders import CIFAR_PRESETS, MNIST_PRESETS, _preset
from jaxunlearn.data.transforms import normalize, resize_float, resize_uint8

#: Examples rendered at a time (float32 temporaries of ~12 MB for CIFAR shapes).
CHUNK = 1024
#: Template amplitude ``a``, nuisance amplitude ``b`` and pixel-noise standard deviation ``sigma`` (module doc).
AMPLITUDE, NUISANCE, NOISE = 0.06, 0.15, 0.25
#: Number ``M`` of class-free nuisance patterns, and the superclass share ``rho`` of a CIFAR-100 template.
NUM_NUISANCE, SUPERCLASS_SHARE = 16, 0.5

#: family -> (native image shape, number of classes, stream id). CIFAR-20 is the CIFAR-100 family.
FAMILIES: dict[str, tuple[tuple[int, int, int], int, int]] = {
    "mnist": ((28, 28, 1), 10, 1),
    "fashion_mnist": ((28, 28, 1), 10, 2),
    "cifar10": ((32, 32, 3), 10, 10),
    "cifar100": ((32, 32, 3), 100, 100),
}
_SPLITS = {"train": 0, "test": 1}


def _smooth_fields(rng: np.random.Generator, count: int, shape: tuple[int, int, int]) -> np.ndarray:
    """``count`` smooth random images ``[count, H, W, C]``: quarter-resolution normal noise, upsampled bilinearly."""
    h, _, c = shape
    low = rng.standard_normal((count, h // 4, h // 4, c)).astype(np.float32)
    return resize_float(low, h)


def _standardise(fields: np.ndarray) -> np.ndarray:
    """Each image scaled to zero mean and unit standard deviation."""
    centred = fields - fields.mean(axis=(1, 2, 3), keepdims=True)
    return (centred / centred.std(axis=(1, 2, 3), keepdims=True)).astype(np.float32)


def _patterns(family: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(templates [K, H + 2s, W + 2s, C], nuisance [M, H/4, W/4, C])`` of ``family``; templates padded by
    reflection, nuisance patterns at a quarter of the resolution (blown up to 4x4 blocks when rendered)."""
    shape, k, stream = FAMILIES[family]
    rng = np.random.default_rng([seed, stream])
    templates = _smooth_fields(rng, k, shape)
    if family == "cifar100":
        superclass = _smooth_fields(rng, 20, shape)
        templates = (np.sqrt(SUPERCLASS_SHARE) * superclass[FINE_TO_COARSE]
                     + np.sqrt(1.0 - SUPERCLASS_SHARE) * templates)
    s = shape[0] // 8
    padded = np.pad(_standardise(templates), ((0, 0), (s, s), (s, s), (0, 0)), mode="reflect")
    h, w, c = shape
    return padded, _standardise(rng.standard_normal((NUM_NUISANCE, h // 4, w // 4, c)).astype(np.float32))


def _render(family: str, n: int, seed: int, split: str) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """The uint8 images ``[m, H, W, C]`` and int64 labels ``[m]`` of one split (module doc), chunk by chunk:
    yields ``(part, images, labels)`` for consecutive slices ``part`` of at most :data:`CHUNK` examples."""
    (h, w, c), k, stream = FAMILIES[family]
    padded, nuisance = _patterns(family, seed)
    rng = np.random.default_rng([seed, stream, _SPLITS[split]])
    labels = rng.permutation(np.arange(n) % k)
    s = h // 8
    shifts = rng.integers(0, 2 * s + 1, size=(n, 2))
    contrast = rng.uniform(0.6, 1.4, size=n).astype(np.float32)
    weights = rng.standard_normal((n, NUM_NUISANCE)) / np.sqrt(NUM_NUISANCE)
    # computed in units of the noise quantum q = NOISE * sqrt(12) / 256 (uniform bytes b, variance NOISE**2):
    # 255 * (0.5 + a c T + b N + q (b - 127.5)) = 255 q ((a c T + b N) / q + 0.5 / q - 127.5 + b)
    quantum = NOISE * np.sqrt(12.0) / 256.0
    template_scale = (AMPLITUDE / quantum * contrast).astype(np.float32)
    nuisance_weights = (NUISANCE / quantum * weights).astype(np.float32)
    offset = np.float32(0.5 / quantum - 127.5)
    rows, cols = np.arange(h), np.arange(w)
    for number, start in enumerate(range(0, n, CHUNK)):
        part = slice(start, min(start + CHUNK, n))
        top, left = shifts[part, :1], shifts[part, 1:]
        x = padded[labels[part, None, None], (rows[None] + top)[:, :, None], (cols[None] + left)[:, None, :]]
        x *= template_scale[part, None, None, None]
        clutter = np.einsum("nm,mhwc->nhwc", nuisance_weights[part], nuisance)  # numpy's own loop, not BLAS
        blocks = x.reshape(-1, h // 4, 4, w // 4, 4, c)  # a view of x: each clutter pixel covers 4x4 pixels
        blocks += clutter[:, :, None, :, None, :]
        x += np.random.default_rng([seed, stream, _SPLITS[split], 1 + number]).integers(
            0, 256, size=x.shape, dtype=np.uint8)
        x += offset
        x *= np.float32(255.0 * quantum)
        np.clip(x, 0.0, 255.0, out=x)
        yield part, np.rint(x, out=x).astype(np.uint8), labels[part]


def _to_inputs(images: np.ndarray, normalization: str, image_size: int | None) -> np.ndarray:
    """The real loaders' pipeline: grey images resized as uint8 first, then normalised, CIFAR resized after."""
    if image_size is not None and images.shape[-1] == 1 and image_size != images.shape[1]:
        images = resize_uint8(images, image_size)
    x = normalize(images, normalization)
    if image_size is not None and x.shape[1] != image_size:
        x = resize_float(x, image_size)
    return x


def _split_inputs(family: str, n: int, seed: int, split: str, normalization: str,
                  image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(x float32 [n, ...], labels int64 [n])`` of one split, each chunk rendered and normalised in turn."""
    x, labels = None, np.empty(n, np.int64)
    for part, images, chunk_labels in _render(family, n, seed, split):
        chunk = _to_inputs(images, normalization, image_size)
        if x is None:
            x = np.empty((n,) + chunk.shape[1:], np.float32)
        x[part], labels[part] = chunk, chunk_labels
    return x, labels


def make_synthetic(
    family: str,
    *,
    num_train: int,
    num_test: int,
    seed: int,
    normalization: str,
    image_size: int | None,
    coarse: bool = False,
) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of one synthetic family (module doc), with an explicit normalisation.

    Args:
      family: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` or ``"cifar100"``.
      num_train, num_test: examples per split (positive integers).
      seed: non-negative integer; the same seed gives the same arrays.
      normalization: ``"unit"``, ``"center"`` or ``"cifar"`` (:func:`jaxunlearn.data.transforms.normalize`).
      image_size: resize to ``image_size x image_size`` as the tfds loaders do, or ``None`` (native size).
      coarse: CIFAR-100 only: ``y`` = the CIFAR-20 superclass, ``fine_y`` = the fine class.

    Returns:
      ``(train, test)`` :class:`~jaxunlearn.data.Dataset` objects, float32 NHWC ``x``, int32 ``y``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown synthetic family {family!r}; choose one of {sorted(FAMILIES)}.")
    if coarse and family != "cifar100":
        raise ValueError("coarse=True (CIFAR-20 labels) applies to the cifar100 family only.")
    sizes = {"train": check_positive_int(num_train, "num_train"), "test": check_positive_int(num_test, "num_test")}
    seed = check_positive_int(seed, "seed", allow_zero=True)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
                                   or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}.")
    num_classes = FAMILIES[family][1]
    name = "cifar20" if coarse else family
    out = []
    for split, n in sizes.items():
        x, labels = _split_inputs(family, n, seed, split, normalization, image_size)
        info = {"source": f"synthetic:{family}", "split": split, "seed": seed, "normalization": normalization,
                "image_size": x.shape[1]}
        if coarse:
            out.append(Dataset(x=x, y=coarse_labels(labels), num_classes=20, name=f"synthetic_{name}/{split}",
                               fine_y=labels, num_fine_classes=num_classes, info=info))
        else:
            out.append(Dataset(x=x, y=labels, num_classes=num_classes, name=f"synthetic_{name}/{split}", info=info))
    return out[0], out[1]


def synthetic_mnist(*, num_train: int = 5000, num_test: int = 1000, seed: int = 0, preset: str = "lenet",
                    normalization: str | None = None, image_size: Any = "preset") -> tuple[Dataset, Dataset]:
    """MNIST-shaped ``(train, test)``: 28x28x1 images of 10 classes, presets as :func:`jaxunlearn.data.load_mnist`.

    The generative model is the module doc's. The same arguments serve every ``synthetic_*`` loader.

    Args:
      num_train, num_test: examples in each split (positive integers; classes balanced).
      seed: non-negative integer; the same seed gives the same arrays.
      preset: ``"lenet"`` (default, as the real loader: resized to 32x32, ``x/255 - 0.5``), ``"vae"`` (28x28 in
        ``[0, 1]``) or ``"center"`` (28x28, ``x/255 - 0.5``); the CIFAR loaders take ``"ssd"`` (default,
        ``(x/255 - CIFAR_MEAN) / CIFAR_STD``), ``"center"`` or ``"unit"``.
      normalization: overrides the preset's (``"unit"``, ``"center"``, ``"cifar"``).
      image_size: overrides the preset's size (``None``: native size).

    Returns:
      ``(train, test)`` :class:`~jaxunlearn.data.Dataset` objects (float32 NHWC ``x``, int32 ``y``), named
      ``"synthetic_mnist/train"`` and ``"synthetic_mnist/test"``.
    """
    norm, size = _preset(MNIST_PRESETS, preset, normalization, image_size)
    return make_synthetic("mnist", num_train=num_train, num_test=num_test, seed=seed, normalization=norm,
                          image_size=size)


def synthetic_fashion_mnist(*, num_train: int = 5000, num_test: int = 1000, seed: int = 0, preset: str = "lenet",
                            normalization: str | None = None, image_size: Any = "preset") -> tuple[Dataset, Dataset]:
    """Fashion-MNIST-shaped ``(train, test)``: as :func:`synthetic_mnist` with patterns of their own."""
    norm, size = _preset(MNIST_PRESETS, preset, normalization, image_size)
    return make_synthetic("fashion_mnist", num_train=num_train, num_test=num_test, seed=seed, normalization=norm,
                          image_size=size)


def synthetic_cifar10(*, num_train: int = 5000, num_test: int = 1000, seed: int = 0, preset: str = "ssd",
                      normalization: str | None = None, image_size: Any = "preset") -> tuple[Dataset, Dataset]:
    """CIFAR-10-shaped ``(train, test)``: 32x32x3, 10 classes, presets as :func:`jaxunlearn.data.load_cifar10`
    (``"ssd"``: CIFAR mean/std; ``"center"``: ``x/255 - 0.5``; ``"unit"``: ``x/255``)."""
    norm, size = _preset(CIFAR_PRESETS, preset, normalization, image_size)
    return make_synthetic("cifar10", num_train=num_train, num_test=num_test, seed=seed, normalization=norm,
                          image_size=size)


def synthetic_cifar100(*, num_train: int = 5000, num_test: int = 1000, seed: int = 0, preset: str = "ssd",
                       normalization: str | None = None, image_size: Any = "preset") -> tuple[Dataset, Dataset]:
    """CIFAR-100-shaped ``(train, test)``: 32x32x3, 100 fine classes whose templates share a superclass pattern
    (module doc); presets as :func:`jaxunlearn.data.load_cifar100`."""
    norm, size = _preset(CIFAR_PRESETS, preset, normalization, image_size)
    return make_synthetic("cifar100", num_train=num_train, num_test=num_test, seed=seed, normalization=norm,
                          image_size=size)


def synthetic_cifar20(*, num_train: int = 5000, num_test: int = 1000, seed: int = 0, preset: str = "ssd",
                      normalization: str | None = None, image_size: Any = "preset") -> tuple[Dataset, Dataset]:
    """CIFAR-20-shaped ``(train, test)``: the images of :func:`synthetic_cifar100` (same seed, same arrays) with
    the superclass as ``y`` (20 classes) and the fine class as ``fine_y``, as :func:`jaxunlearn.data.load_cifar20`
    represents CIFAR-20; the sub-class scenario (``subclass:rocket``) works on it."""
    norm, size = _preset(CIFAR_PRESETS, preset, normalization, image_size)
    return make_synthetic("cifar100", num_train=num_train, num_test=num_test, seed=seed, normalization=norm,
                          image_size=size, coarse=True)


#: name -> loader, for :func:`jaxunlearn.data.load_dataset`.
SYNTHETIC_LOADERS = {
    "synthetic_mnist": synthetic_mnist,
    "synthetic_fashion_mnist": synthetic_fashion_mnist,
    "synthetic_cifar10": synthetic_cifar10,
    "synthetic_cifar100": synthetic_cifar100,
    "synthetic_cifar20": synthetic_cifar20,
}
SYNTHETIC_DATASETS = tuple(SYNTHETIC_LOADERS)
