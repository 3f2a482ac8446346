"""CIFAR constants shared by the loaders and the forget scenarios.

* ``CIFAR_MEAN`` / ``CIFAR_STD``: the per-channel normalisation of the SSD and
  JiT code (taken there from weiaicunzai/pytorch-cifar100), to full precision;
  rounded they are mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762).
* ``CIFAR20_COARSE_MAP``: the standard 20x5 table of CIFAR-100 fine classes in
  each superclass (the bad-teaching-unlearning table that SSD's ``Cifar20``
  uses). CIFAR-20 labels are derived from the fine labels with this table,
  never read from a data file.
* ``CLASS_IDS``: the classes that the SSD/JiT experiments forget.
"""

from __future__ import annotations

import numpy as np

CIFAR_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)

CIFAR20_COARSE_MAP: dict[int, tuple[int, ...]] = {
    0: (4, 30, 55, 72, 95),
    1: (1, 32, 67, 73, 91),
    2: (54, 62, 70, 82, 92),
    3: (9, 10, 16, 28, 61),
    4: (0, 51, 53, 57, 83),
    5: (22, 39, 40, 86, 87),
    6: (5, 20, 25, 84, 94),
    7: (6, 7, 14, 18, 24),
    8: (3, 42, 43, 88, 97),
    9: (12, 17, 37, 68, 76),
    10: (23, 33, 49, 60, 71),
    11: (15, 19, 21, 31, 38),
    12: (34, 63, 64, 66, 75),
    13: (26, 45, 77, 79, 99),
    14: (2, 11, 35, 46, 98),
    15: (27, 29, 44, 78, 93),
    16: (36, 50, 65, 74, 80),
    17: (47, 52, 56, 59, 96),
    18: (8, 13, 48, 58, 90),
    19: (41, 69, 81, 85, 89),
}

# fine label -> coarse label, built from the table (every fine class appears exactly once).
FINE_TO_COARSE = np.full(100, -1, dtype=np.int32)
for _coarse, _fines in CIFAR20_COARSE_MAP.items():
    FINE_TO_COARSE[list(_fines)] = _coarse
assert (FINE_TO_COARSE >= 0).all() and sorted(f for fs in CIFAR20_COARSE_MAP.values() for f in fs) == list(range(100))
del _coarse, _fines

# The SSD/JiT forget targets (their conf.class_dict).
CIFAR100_CLASS_IDS: dict[str, int] = {"rocket": 69, "mushroom": 51, "baby": 2, "lamp": 40, "sea": 71}
CIFAR20_CLASS_IDS: dict[str, int] = {
    "vehicle2": 19, "veg": 4, "people": 14, "electrical_devices": 5, "natural_scenes": 10,
}
CLASS_IDS: dict[str, int] = {**CIFAR100_CLASS_IDS, **CIFAR20_CLASS_IDS}


def coarse_labels(fine: np.ndarray) -> np.ndarray:
    """CIFAR-20 superclass of each CIFAR-100 fine label, by :data:`CIFAR20_COARSE_MAP`.

    Args:
      fine: integer array of fine labels in ``[0, 100)``, any shape.

    Returns:
      int32 array of the same shape with values in ``[0, 20)``.
    """
    fine = np.asarray(fine)
    if not np.issubdtype(fine.dtype, np.integer):
        raise TypeError(f"fine labels must be integers, got dtype {fine.dtype}.")
    if fine.size and (fine.min() < 0 or fine.max() >= 100):
        raise ValueError(
            f"fine labels must lie in [0, 100) (CIFAR-100 classes); got values in [{fine.min()}, {fine.max()}]."
        )
    return FINE_TO_COARSE[fine]


def superclass_of(fine_class: int) -> int:
    """The CIFAR-20 superclass holding CIFAR-100 class ``fine_class`` (e.g. rocket 69 -> vehicle2 19)."""
    return int(coarse_labels(np.asarray([int(fine_class)]))[0])
