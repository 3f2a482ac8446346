"""Data: embedded and tfds datasets, the original papers' synthetic mixture, forget scenarios, batching.

Datasets live on the host as numpy (:class:`Dataset`, ``x`` NHWC float32 and
int32 ``y``); batches go to the device as jax arrays.

* Embedded, no download: :func:`load_digits` (scikit-learn's 1,797 8x8
  digits) and :func:`make_gmm2d` (the Bayesian forgetting papers' 2-D mixture, with
  :func:`gmm2d_removal_indices`).
* tensorflow-datasets, offline from an existing ``data_dir``:
  :func:`load_mnist`, :func:`load_fashion_mnist`, :func:`load_cifar10`,
  :func:`load_cifar100`, :func:`load_cifar20`; missing data raises
  :class:`DatasetNotAvailableError` at once.
* Synthetic, no download, with the real shapes (:mod:`.synthetic`):
  :func:`synthetic_mnist`, :func:`synthetic_fashion_mnist`,
  :func:`synthetic_cifar10`, :func:`synthetic_cifar100`, :func:`synthetic_cifar20`
  (learnable class patterns from a seed, the tfds loaders' presets).
* Forget scenarios -> :class:`ForgetSplit`: :func:`full_class_split`,
  :func:`sub_class_split`, :func:`random_split`, :func:`class_subset_split`,
  :func:`indices_split`, :func:`gmm2d_split`, or :func:`make_forget_split` by name.
* Batching of host data: :func:`iterate_batches`, :func:`sequential_batches`,
  :func:`epoch_batches`, :func:`stack_batches` (index stacks for ``lax.scan``).
* Random minibatches on the device of the examples still alive (never a
  forgotten one): :func:`draw_indices`, :func:`draw_batches` (:mod:`.minibatch`).
"""

from __future__ import annotations

from typing import Any

from jaxunlearn.data.batching import (
    as_arrays, epoch_batches, epoch_order, gather, host_rng, iterate_batches, num_batches, pad_batch,
    sequential_batches, stack_batches,
)
from jaxunlearn.data.cifar import (
    CIFAR20_CLASS_IDS, CIFAR20_COARSE_MAP, CIFAR100_CLASS_IDS, CIFAR_MEAN, CIFAR_STD, CLASS_IDS, FINE_TO_COARSE,
    coarse_labels, superclass_of,
)
from jaxunlearn.data.dataset import Dataset, check_class, check_labels, from_arrays
from jaxunlearn.data.digits import load_digits
from jaxunlearn.data.gmm import GMMData, gmm2d_covariances, gmm2d_removal_indices, make_gmm2d
from jaxunlearn.data.minibatch import draw_batches, draw_indices
from jaxunlearn.data.splits import (
    SCENARIOS, ForgetSplit, class_sorted_order, class_subset_split, full_class_split, gmm2d_split, indices_split,
    make_forget_split, random_split, random_split_sizes, ssd_full_train_order, sub_class_split,
)
from jaxunlearn.data.synthetic import (
    SYNTHETIC_DATASETS, SYNTHETIC_LOADERS, synthetic_cifar10, synthetic_cifar20, synthetic_cifar100,
    synthetic_fashion_mnist, synthetic_mnist,
)
from jaxunlearn.data.tfds_loaders import (
    DatasetNotAvailableError, load_cifar10, load_cifar20, load_cifar100, load_fashion_mnist, load_mnist, load_tfds,
)
from jaxunlearn.data.transforms import normalize, resize_float, resize_uint8

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifar20")
"""The embedded and tfds datasets; :data:`SYNTHETIC_DATASETS` are their generated stand-ins."""


def load_dataset(name: str, **kwargs: Any) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of a dataset by name: one of :data:`DATASETS` or :data:`SYNTHETIC_DATASETS`.

    ``digits`` takes :func:`load_digits`'s arguments; the tfds datasets take
    their loader's (``preset``, ``data_dir``, ``download``, ...) and load the
    ``"train"`` and ``"test"`` splits; the synthetic ones (``"synthetic_cifar100"``, ...)
    take their generator's (``num_train``, ``num_test``, ``seed``, ``preset``, ...).
    """
    key = name.strip().lower().replace("-", "_")
    if key == "digits":
        return load_digits(**kwargs)
    if key in SYNTHETIC_LOADERS:
        return SYNTHETIC_LOADERS[key](**kwargs)
    loaders = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10,
               "cifar100": load_cifar100, "cifar20": load_cifar20}
    if key not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS + SYNTHETIC_DATASETS}.")
    return loaders[key]("train", **kwargs), loaders[key]("test", **kwargs)


__all__ = [
    "CIFAR100_CLASS_IDS", "CIFAR20_CLASS_IDS", "CIFAR20_COARSE_MAP", "CIFAR_MEAN", "CIFAR_STD", "CLASS_IDS", "DATASETS",
    "Dataset", "DatasetNotAvailableError", "FINE_TO_COARSE", "ForgetSplit", "GMMData", "SCENARIOS",
    "SYNTHETIC_DATASETS", "as_arrays", "check_class", "check_labels", "class_sorted_order", "class_subset_split",
    "coarse_labels", "draw_batches", "draw_indices", "epoch_batches", "epoch_order", "from_arrays", "full_class_split",
    "gather", "gmm2d_covariances", "gmm2d_removal_indices", "gmm2d_split", "host_rng", "indices_split",
    "iterate_batches", "load_cifar10", "load_cifar100", "load_cifar20", "load_dataset", "load_digits",
    "load_fashion_mnist", "load_mnist", "load_tfds", "make_forget_split", "make_gmm2d", "normalize", "num_batches",
    "pad_batch", "random_split", "random_split_sizes", "resize_float", "resize_uint8", "sequential_batches",
    "ssd_full_train_order", "stack_batches", "sub_class_split", "superclass_of", "synthetic_cifar10",
    "synthetic_cifar100", "synthetic_cifar20", "synthetic_fashion_mnist", "synthetic_mnist",
]
