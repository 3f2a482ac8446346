"""The host-side dataset container every loader returns.

A :class:`Dataset` holds numpy arrays on the host: inputs ``x`` with a leading
example axis and integer labels ``y`` in ``[0, num_classes)``. The pytree that
losses and curvature functions take is the plain tuple :attr:`Dataset.arrays`
``(x, y)``; :meth:`Dataset.take` selects examples by an index array in that
order (index orders are how the forget scenarios reproduce the originals' batch
composition).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np


def _as_index_array(indices: Any, n: int, name: str = "indices") -> np.ndarray:
    """``indices`` as a 1-D int64 array, checked to lie in ``[0, n)``."""
    idx = np.asarray(indices)
    if idx.dtype == bool:
        raise TypeError(f"{name} must be integer indices, got a boolean mask; use np.flatnonzero(mask).")
    if idx.size == 0:
        idx = idx.astype(np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"{name} must be integer indices, got dtype {idx.dtype}.")
    if idx.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {idx.shape}.")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{name} must lie in [0, {n}) for a dataset of {n} examples; got [{idx.min()}, {idx.max()}].")
    return idx.astype(np.int64, copy=False)


def check_labels(y: Any, num_classes: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as an int32 1-D array after checking it holds class ids in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {y.shape}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids, got dtype {y.dtype}.")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{name} holds labels outside [0, {num_classes}): min {y.min()}, max {y.max()}. "
            f"Pass the right num_classes or remap the labels to 0..{num_classes - 1}."
        )
    return y.astype(np.int32, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset held in host memory.

    Attributes:
      x: inputs, float array ``[N, ...]`` (images are NHWC ``[N, H, W, C]``).
      y: int32 labels ``[N]`` in ``[0, num_classes)``: the labels a model is
        trained on (CIFAR-20: the coarse superclass).
      num_classes: number of classes of ``y``.
      name: a short description (``"cifar20/train"``, ``"digits/test"``, ...).
      fine_y: optional second label set ``[N]`` in ``[0, num_fine_classes)``;
        for CIFAR-20 the CIFAR-100 fine class, which the sub-class scenario
        forgets.
      num_fine_classes: number of classes of ``fine_y``.
      info: free-form metadata (normalisation, source, seed, ...).
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    fine_y: np.ndarray | None = None
    num_fine_classes: int | None = None
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        x = np.asarray(self.x)
        if x.ndim < 2:
            raise ValueError(
                f"x must have a leading example axis and at least one feature axis, got shape {x.shape}; "
                "reshape a single feature to [N, 1]."
            )
        y = check_labels(self.y, self.num_classes, "y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y disagree on the number of examples: x has {x.shape[0]}, y has {y.shape[0]}.")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "num_classes", int(self.num_classes))
        if self.fine_y is not None:
            if self.num_fine_classes is None:
                raise ValueError("fine_y needs num_fine_classes.")
            fine = check_labels(self.fine_y, self.num_fine_classes, "fine_y")
            if fine.shape[0] != y.shape[0]:
                raise ValueError(f"fine_y has {fine.shape[0]} labels for {y.shape[0]} examples.")
            object.__setattr__(self, "fine_y", fine)
            object.__setattr__(self, "num_fine_classes", int(self.num_fine_classes))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        fine = f", fine classes {self.num_fine_classes}" if self.fine_y is not None else ""
        return (f"Dataset({self.name!r}: x {self.x.shape} {self.x.dtype}, {self.num_classes} classes{fine}, "
                f"n={len(self)})")

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``(x, y)`` pytree that losses take (numpy; ``jax.device_put`` it for the device)."""
        return (self.x, self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example's input, ``x.shape[1:]``."""
        return tuple(self.x.shape[1:])

    def take(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "Dataset":
        """The examples at ``indices``, in that order (duplicates allowed)."""
        idx = _as_index_array(indices, len(self))
        return dataclasses.replace(
            self,
            x=self.x[idx],
            y=self.y[idx],
            fine_y=None if self.fine_y is None else self.fine_y[idx],
            name=self.name if name is None else name,
            info=dict(self.info),
        )

    def class_indices(self, cls: int, *, fine: bool = False) -> np.ndarray:
        """Indices (ascending) of the examples of class ``cls`` (of ``fine_y`` when ``fine``)."""
        labels, k = self._labels(fine)
        cls = check_class(cls, k, "fine class" if fine else "class")
        return np.flatnonzero(labels == cls).astype(np.int64)

    def class_counts(self, *, fine: bool = False) -> np.ndarray:
        """Number of examples of each class, ``[num_classes]``."""
        labels, k = self._labels(fine)
        return np.bincount(labels, minlength=k)

    def _labels(self, fine: bool) -> tuple[np.ndarray, int]:
        if not fine:
            return self.y, self.num_classes
        if self.fine_y is None:
            raise ValueError(f"{self.name or 'this dataset'} has no fine labels (fine_y); only CIFAR-20 has them.")
        return self.fine_y, int(self.num_fine_classes)


def check_class(cls: Any, num_classes: int, what: str = "class") -> int:
    """``cls`` as an int, checked to be a class id in ``[0, num_classes)``."""
    if isinstance(cls, (bool, np.bool_)) or not isinstance(cls, (int, np.integer)):
        raise TypeError(f"the {what} must be an integer class id, got {cls!r} ({type(cls).__name__}).")
    if not 0 <= int(cls) < num_classes:
        raise ValueError(f"the {what} {cls} is out of range: this dataset has classes 0..{num_classes - 1}.")
    return int(cls)


def from_arrays(x: Any, y: Any, num_classes: int | None = None, name: str = "", **kwargs: Any) -> Dataset:
    """Build a :class:`Dataset` from array-likes; ``num_classes`` defaults to ``max(y) + 1``."""
    y = np.asarray(y)
    if num_classes is None:
        if y.size == 0:
            raise ValueError("cannot infer num_classes from empty labels; pass num_classes.")
        num_classes = int(y.max()) + 1
    return Dataset(x=np.asarray(x), y=y, num_classes=num_classes, name=name, **kwargs)
