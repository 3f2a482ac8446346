"""scikit-learn's digits: the embedded default dataset (no download).

1,797 grey 8x8 images of the digits 0-9 with pixel values 0..16, shipped inside
scikit-learn. :func:`load_digits` splits them into train and test sets by a
seeded, class-stratified split and scales pixels to floats.
"""

from __future__ import annotations

import numpy as np

from jaxunlearn.data.dataset import Dataset

NUM_DIGITS = 1797


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded class-stratified split of ``range(len(y))``.

    For each class ``c`` with ``n_c`` examples, ``round(test_fraction * n_c)``
    of them, chosen by ``np.random.default_rng(seed)`` permutations (classes in
    ascending order), go to the test set. Both returned index arrays are sorted
    ascending, so each split keeps the source's order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(test_fraction * idx.size))
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(y.size), test_idx).astype(np.int64)
    return train_idx, test_idx


def load_digits(
    *, test_fraction: float = 0.25, seed: int = 0, flatten: bool = False, normalization: str = "unit",
) -> tuple[Dataset, Dataset]:
    """The digits dataset as ``(train, test)``.

    Args:
      test_fraction: share of each class held out for the test set (default
        0.25: 1,347 train and 450 test images).
      seed: seed of the stratified split (same seed, same split).
      flatten: ``x`` as ``[N, 64]`` instead of NHWC images ``[N, 8, 8, 1]``.
      normalization: ``"unit"``: ``x / 16`` in [0, 1]; ``"center"``:
        ``x / 16 - 0.5``.

    Returns:
      ``(train, test)`` :class:`Dataset` objects, 10 classes, float32 inputs.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    raw = _sk_load_digits()
    images = np.asarray(raw.images, dtype=np.float32) / np.float32(16.0)  # [1797, 8, 8], pixel values 0..16
    if normalization == "center":
        images = images - np.float32(0.5)
    elif normalization != "unit":
        raise ValueError(f"unknown normalization {normalization!r} for digits; choose 'unit' or 'center'.")
    x = images.reshape(len(images), 64) if flatten else images[..., None]
    y = np.asarray(raw.target, dtype=np.int32)
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    info = {"source": "sklearn.datasets.load_digits", "normalization": normalization, "split_seed": seed,
            "test_fraction": test_fraction}
    full = Dataset(x=x, y=y, num_classes=10, name="digits", info=info)
    return full.take(train_idx, name="digits/train"), full.take(test_idx, name="digits/test")
