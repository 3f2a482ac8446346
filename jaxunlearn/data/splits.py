"""Forget scenarios: which training examples to forget, and the index orders of every set.

Every scenario returns one :class:`ForgetSplit`: index arrays into the train
(and test) :class:`~jaxunlearn.data.dataset.Dataset` for the forget and retain
train sets and the forget and retain test sets. The index *orders* are
deterministic and are the originals' orders, so that unshuffled loaders over
them reproduce the originals' batch composition:

``full_class`` (SSD / JiT full-class, original-algorithms.md 3.2, 3.4)
    forget train = every train example of class ``c`` (dataset order);
    retain train = the other classes **class by class** (ascending class, dataset
    order inside a class), as SSD's ``build_retain_forget_sets``;
    forget test = test examples of ``c``; retain test = the other test examples,
    class-sorted. On CIFAR-20 the classes are the superclasses.
``sub_class`` (SSD / JiT sub-class)
    a CIFAR-100 fine class inside a CIFAR-20 model: as ``full_class`` but with
    the fine labels (``Dataset.fine_y``) deciding membership and order; the
    model's labels ``y`` stay the superclasses.
``random`` (SSD / JiT random forgetting)
    a seeded random permutation of the train set, cut like torch's
    ``random_split([f, 1 - f])`` (floor sizes, remainder added round-robin
    from the first part: ``f = 0.00165`` of 50,000 gives **83** forgotten
    examples); both parts keep the permutation order. As in the originals,
    **forget test = the forgotten training examples themselves**
    (``forget_valid_dl = forget_train_dl``; Df = accuracy on the forgotten
    training samples, section 3.4) and retain test = the whole test set.
``class_subset`` (BIF / MCMC unlearning BNN experiments)
    ``k`` examples of class ``c`` drawn by a seeded permutation, kept in that
    (removal) order; retain = every other train example in dataset order (the
    originals drop the removed indices from an unshuffled index list). As in the
    originals' metrics (error on S_f, S_r and S_test), forget test = the
    forgotten training examples and retain test = the whole test set; the test
    examples of class ``c`` are ``split.test.class_indices(c)``.
``indices``
    explicit forget indices (e.g. the originals' shipped removal index files,
    or :func:`gmm2d_split`'s removal set); retain = the rest in dataset order;
    forget test = the forgotten training examples; retain test = the test set.

SSD's importance loader ``full_train_dl`` is ``ConcatDataset(retain_train,
forget_train)`` **unshuffled**: :attr:`ForgetSplit.full_train_idx` is that order
(class-sorted in the class scenarios), and
:func:`jaxunlearn.data.batching.sequential_batches` cuts it into the
originals' batches.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from jaxunlearn.data.cifar import CIFAR20_CLASS_IDS, CIFAR100_CLASS_IDS, FINE_TO_COARSE
from jaxunlearn.data.dataset import Dataset, _as_index_array, check_class
from jaxunlearn.data.gmm import GMM_NUM_REMOVED, GMM_SEED, gmm2d_removal_indices, make_gmm2d

SCENARIOS = ("full_class", "sub_class", "random", "class_subset", "indices")
_ALIASES = {"fullclass": "full_class", "class": "full_class", "subclass": "sub_class",
            "random_samples": "random", "classsubset": "class_subset", "class_random": "class_subset"}


@dataclasses.dataclass(frozen=True, eq=False)
class ForgetSplit:
    """A forget request with its retain set and evaluation sets, as index arrays.

    Attributes:
      scenario: one of :data:`SCENARIOS`.
      train, test: the full datasets (``test`` may be ``None``, e.g. the GMM).
      forget_train_idx: int64 indices into ``train``, in the originals' forget order.
      retain_train_idx: int64 indices into ``train``, in the originals' retain order.
      forget_test_idx: int64 indices into ``test``, or into ``train`` when
        ``forget_test_from == "train"`` (random / class_subset / indices).
      retain_test_idx: int64 indices into ``test`` (empty without a test set).
      forget_test_from: ``"test"`` or ``"train"``.
      forget_class: the forgotten class in the model's label space ``y``
        (sub-class: the superclass holding the forgotten fine class); ``None``
        for random forgetting.
      forget_subclass: the forgotten fine class (sub-class only).
      seed: the seed that drew the split, if any.
    """

    scenario: str
    train: Dataset
    test: Dataset | None
    forget_train_idx: np.ndarray
    retain_train_idx: np.ndarray
    forget_test_idx: np.ndarray
    retain_test_idx: np.ndarray
    forget_test_from: str = "test"
    forget_class: int | None = None
    forget_subclass: int | None = None
    seed: int | None = None

    def __post_init__(self):
        n_train = len(self.train)
        f = _as_index_array(self.forget_train_idx, n_train, "forget_train_idx")
        r = _as_index_array(self.retain_train_idx, n_train, "retain_train_idx")
        if f.size == 0:
            raise ValueError(
                f"the forget set is empty ({self.scenario}): there is nothing to unlearn. "
                "Pick a class or indices that select at least one training example."
            )
        for name, idx in (("forget_train_idx", f), ("retain_train_idx", r)):
            if np.unique(idx).size != idx.size:
                raise ValueError(f"{name} holds duplicate indices.")
        common = np.intersect1d(f, r)
        if common.size:
            raise ValueError(
                f"forget and retain sets are not disjoint: {common.size} training examples are in both "
                f"(first: {common[:5].tolist()})."
            )
        if self.forget_test_from not in ("test", "train"):
            raise ValueError(f"forget_test_from must be 'test' or 'train', got {self.forget_test_from!r}.")
        if self.forget_test_from == "test" and self.test is None:
            raise ValueError("forget_test_from='test' needs a test set.")
        ft_source = self.train if self.forget_test_from == "train" else self.test
        ft = _as_index_array(self.forget_test_idx, len(ft_source), "forget_test_idx")
        if ft.size == 0:
            raise ValueError(
                f"the forget test set is empty ({self.scenario}, class {self.forget_class}): the test set holds no "
                "example of the forgotten class, so accuracy on it (Df) is undefined."
            )
        n_test = 0 if self.test is None else len(self.test)
        rt = _as_index_array(self.retain_test_idx, n_test, "retain_test_idx")
        if self.forget_test_from == "test" and np.intersect1d(ft, rt).size:
            raise ValueError("forget and retain test sets are not disjoint.")
        for name, val in (("forget_train_idx", f), ("retain_train_idx", r), ("forget_test_idx", ft),
                          ("retain_test_idx", rt)):
            val = val.copy()
            val.setflags(write=False)
            object.__setattr__(self, name, val)

    # ---- the four sets and the combined orders -------------------------------------------------
    @functools.cached_property
    def forget_train(self) -> Dataset:
        """The training examples to forget, in :attr:`forget_train_idx` order."""
        return self.train.take(self.forget_train_idx, name=f"{self.train.name}[forget]")

    @functools.cached_property
    def retain_train(self) -> Dataset:
        """The training examples that remain, in :attr:`retain_train_idx` order."""
        return self.train.take(self.retain_train_idx, name=f"{self.train.name}[retain]")

    @functools.cached_property
    def forget_test(self) -> Dataset:
        """The forget evaluation set (Df): test examples of the class, or the forgotten train examples."""
        src = self.train if self.forget_test_from == "train" else self.test
        return src.take(self.forget_test_idx, name=f"{src.name}[forget]")

    @functools.cached_property
    def retain_test(self) -> Dataset:
        """The retain evaluation set (Dr test). Without a test set (the GMM) it is empty (0 examples)."""
        if self.test is None:
            return self.train.take(np.zeros(0, np.int64), name=f"{self.train.name}[no test set]")
        return self.test.take(self.retain_test_idx, name=f"{self.test.name}[retain]")

    @property
    def full_train_idx(self) -> np.ndarray:
        """Retain then forget indices: SSD's unshuffled ``ConcatDataset(retain_train, forget_train)`` order."""
        return ssd_full_train_order(self)

    @property
    def full_train(self) -> Dataset:
        """The training set in :attr:`full_train_idx` order (a fresh copy on each access); pass
        ``split.full_train.arrays`` to SSD's ``init`` to reproduce its importance batches."""
        return self.train.take(self.full_train_idx, name=f"{self.train.name}[retain+forget]")

    @property
    def full_train_request(self) -> np.ndarray:
        """The forget examples' positions in :attr:`full_train` (its last ``n_f`` examples): the request that
        forgets them from a method initialised on ``full_train``."""
        start = self.retain_train_idx.size
        return np.arange(start, start + self.forget_train_idx.size)

    @property
    def retain_idx(self) -> np.ndarray:
        """Alias of :attr:`retain_train_idx`."""
        return self.retain_train_idx

    @property
    def forget_idx(self) -> np.ndarray:
        """Alias of :attr:`forget_train_idx`."""
        return self.forget_train_idx

    @property
    def sizes(self) -> dict[str, int]:
        """Number of examples in each set."""
        return {"forget_train": int(self.forget_train_idx.size), "retain_train": int(self.retain_train_idx.size),
                "forget_test": int(self.forget_test_idx.size), "retain_test": int(self.retain_test_idx.size)}

    def __repr__(self) -> str:
        what = {"forget_class": self.forget_class, "forget_subclass": self.forget_subclass, "seed": self.seed}
        what = ", ".join(f"{k}={v}" for k, v in what.items() if v is not None)
        return f"ForgetSplit({self.scenario}: {self.train.name}, {what}, sizes={self.sizes})"


def ssd_full_train_order(split: ForgetSplit) -> np.ndarray:
    """``concat(retain_train_idx, forget_train_idx)``: the order of SSD's importance loader.

    SSD's ``full_train_dl`` is ``DataLoader(ConcatDataset((retain_train, forget_train)), batch_size)``
    without shuffling; in the class scenarios it is therefore class-sorted (each retain class in turn,
    the forgotten class last), which changes the squared-batch-gradient importances against shuffled
    batches. Cut it with :func:`jaxunlearn.data.batching.sequential_batches`.
    """
    return np.concatenate([split.retain_train_idx, split.forget_train_idx])


# ---- helpers ----------------------------------------------------------------------------------------

def class_sorted_order(labels: np.ndarray, exclude: int | None = None) -> np.ndarray:
    """Indices grouped by ascending class, dataset order inside each class, class ``exclude`` left out.

    The order SSD's ``get_classwise_ds`` + ``build_retain_forget_sets`` give its retain sets.
    """
    order = np.argsort(labels, kind="stable").astype(np.int64)
    if exclude is not None:
        order = order[labels[order] != exclude]
    return order


def random_split_sizes(n: int, fraction: float) -> tuple[int, int]:
    """Sizes of torch's ``random_split(ds, [fraction, 1 - fraction])`` on ``n`` examples.

    ``floor(n * f)`` each, then the remainder added one by one from the first part
    (``n = 50000, f = 0.00165`` gives ``(83, 49917)``).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the forget fraction must lie in (0, 1), got {fraction}.")
    sizes = [int(math.floor(n * fr)) for fr in (fraction, 1.0 - fraction)]
    for i in range(n - sum(sizes)):
        sizes[i % 2] += 1
    return sizes[0], sizes[1]


def _resolve_class(cls: Any, num_classes: int, names: dict[str, int], what: str) -> int:
    if isinstance(cls, str):
        if cls not in names:
            known = f"known names here: {sorted(names)}" if names else "this dataset has no named classes"
            raise ValueError(f"unknown {what} name {cls!r}; {known}. Pass an integer class id instead.")
        cls = names[cls]
    return check_class(cls, num_classes, what)


def _class_names(num_classes: int) -> dict[str, int]:
    return {100: CIFAR100_CLASS_IDS, 20: CIFAR20_CLASS_IDS}.get(num_classes, {})


def _check_pair(train: Dataset, test: Dataset | None) -> None:
    if not isinstance(train, Dataset):
        raise TypeError(f"train must be a jaxunlearn.data.Dataset, got {type(train).__name__}.")
    if test is None:
        return
    if not isinstance(test, Dataset):
        raise TypeError(f"test must be a jaxunlearn.data.Dataset or None, got {type(test).__name__}.")
    if test.num_classes != train.num_classes or test.input_shape != train.input_shape:
        raise ValueError(
            f"train and test do not match: {train.num_classes} vs {test.num_classes} classes, "
            f"inputs {train.input_shape} vs {test.input_shape}."
        )


# ---- scenarios --------------------------------------------------------------------------------------

def full_class_split(train: Dataset, test: Dataset, forget_class: int | str) -> ForgetSplit:
    """Forget every training example of one class (see module doc for the orders).

    ``forget_class``: a class id of ``train.y``, or a name of the SSD experiments
    (CIFAR-100: rocket, mushroom, baby, lamp, sea; CIFAR-20: vehicle2, veg,
    people, electrical_devices, natural_scenes).
    """
    _check_pair(train, test)
    if test is None:
        raise ValueError("full_class_split needs a test set (forget test = the class's test examples).")
    c = _resolve_class(forget_class, train.num_classes, _class_names(train.num_classes), "forget class")
    return ForgetSplit(
        scenario="full_class", train=train, test=test,
        forget_train_idx=np.flatnonzero(train.y == c), retain_train_idx=class_sorted_order(train.y, exclude=c),
        forget_test_idx=np.flatnonzero(test.y == c), retain_test_idx=class_sorted_order(test.y, exclude=c),
        forget_test_from="test", forget_class=c,
    )


def sub_class_split(train: Dataset, test: Dataset, forget_subclass: int | str) -> ForgetSplit:
    """Forget one fine class (``fine_y``) inside a coarse-label model (CIFAR-100 class in CIFAR-20).

    ``forget_subclass``: a fine class id or a CIFAR-100 name (rocket, mushroom,
    baby, lamp, sea). :attr:`ForgetSplit.forget_class` is its superclass.
    """
    _check_pair(train, test)
    if test is None:
        raise ValueError("sub_class_split needs a test set.")
    if train.fine_y is None or test.fine_y is None:
        raise ValueError(
            "the sub_class scenario needs fine labels (Dataset.fine_y) on train and test: "
            "load CIFAR-20 with jaxunlearn.data.load_cifar20."
        )
    k = int(train.num_fine_classes)
    s = _resolve_class(forget_subclass, k, CIFAR100_CLASS_IDS if k == 100 else {}, "forget sub-class")
    forget = np.flatnonzero(train.fine_y == s)
    if forget.size:
        supers = np.unique(train.y[forget])
        if supers.size != 1:
            raise ValueError(f"fine class {s} appears under several coarse labels {supers.tolist()}.")
        superclass = int(supers[0])
    else:
        superclass = int(FINE_TO_COARSE[s]) if (k == 100 and train.num_classes == 20) else None
    return ForgetSplit(
        scenario="sub_class", train=train, test=test,
        forget_train_idx=forget, retain_train_idx=class_sorted_order(train.fine_y, exclude=s),
        forget_test_idx=np.flatnonzero(test.fine_y == s), retain_test_idx=class_sorted_order(test.fine_y, exclude=s),
        forget_test_from="test", forget_class=superclass, forget_subclass=s,
    )


def random_split(
    train: Dataset, test: Dataset | None, *, num_forget: int | None = None, fraction: float | None = None,
    seed: int = 0,
) -> ForgetSplit:
    """Forget a seeded random sample of the training set (see module doc).

    Give ``fraction`` (torch ``random_split`` sizes; SSD/JiT use 0.00165 on
    CIFAR-10, i.e. 83 examples) or ``num_forget``. The permutation is
    ``np.random.default_rng(seed).permutation(len(train))``.
    """
    _check_pair(train, test)
    n = len(train)
    if (num_forget is None) == (fraction is None):
        raise ValueError("give exactly one of num_forget or fraction for the random scenario.")
    if fraction is not None:
        k, _ = random_split_sizes(n, fraction)
    else:
        k = int(num_forget)
        if not 0 <= k < n:  # k == 0 reaches ForgetSplit's empty-forget-set error
            raise ValueError(f"num_forget must lie in [1, {n - 1}] for {n} training examples, got {num_forget}.")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    forget = perm[:k]
    return ForgetSplit(
        scenario="random", train=train, test=test,
        forget_train_idx=forget, retain_train_idx=perm[k:],
        forget_test_idx=forget, retain_test_idx=np.arange(0 if test is None else len(test)),
        forget_test_from="train", seed=seed,
    )


def class_subset_split(
    train: Dataset, test: Dataset | None, forget_class: int | str, num_forget: int, *, seed: int = 0,
) -> ForgetSplit:
    """Forget ``num_forget`` random training examples of one class (the Bayesian forgetting papers' BNN removal sets).

    The forget set is ``permutation(class examples)[:num_forget]`` under
    ``np.random.default_rng(seed)``, kept in that order (the removal order);
    ``num_forget`` equal to the class size forgets the whole class, in random order.
    """
    _check_pair(train, test)
    c = _resolve_class(forget_class, train.num_classes, _class_names(train.num_classes), "forget class")
    members = np.flatnonzero(train.y == c)
    k = int(num_forget)
    if not 0 <= k <= members.size:  # k == 0 reaches ForgetSplit's empty-forget-set error
        raise ValueError(
            f"num_forget must lie in [1, {members.size}] (class {c} has {members.size} training examples), "
            f"got {num_forget}."
        )
    forget = np.random.default_rng(seed).permutation(members)[:k].astype(np.int64)
    retain = np.setdiff1d(np.arange(len(train)), forget).astype(np.int64)
    return ForgetSplit(
        scenario="class_subset", train=train, test=test,
        forget_train_idx=forget, retain_train_idx=retain,
        forget_test_idx=forget, retain_test_idx=np.arange(0 if test is None else len(test)),
        forget_test_from="train", forget_class=c, seed=seed,
    )


def indices_split(train: Dataset, test: Dataset | None, forget_indices: Any) -> ForgetSplit:
    """Forget the given training indices, in the given order; retain the rest in dataset order."""
    _check_pair(train, test)
    forget = _as_index_array(forget_indices, len(train), "forget_indices")
    if np.unique(forget).size != forget.size:
        raise ValueError("forget_indices holds duplicate indices.")
    retain = np.setdiff1d(np.arange(len(train)), forget).astype(np.int64)
    return ForgetSplit(
        scenario="indices", train=train, test=test,
        forget_train_idx=forget, retain_train_idx=retain,
        forget_test_idx=forget, retain_test_idx=np.arange(0 if test is None else len(test)),
        forget_test_from="train",
    )


def gmm2d_split(
    *, seed: int = GMM_SEED, num_removed: int = GMM_NUM_REMOVED, removal_seed: int | None = 0, n: int = 2000,
) -> ForgetSplit:
    """The Bayesian forgetting papers' GMM experiment: :func:`make_gmm2d` data with its removal set to forget.

    No test set (the originals evaluate on the remaining and the removed points):
    ``forget_test`` is the removal set, ``retain_test`` is empty.
    """
    data = make_gmm2d(n, seed=seed).dataset
    removal = gmm2d_removal_indices(data, num_removed, seed=removal_seed)
    split = indices_split(data, None, removal)
    return dataclasses.replace(split, seed=seed)


def make_forget_split(scenario: str, train: Dataset, test: Dataset | None, **kwargs: Any) -> ForgetSplit:
    """Build a :class:`ForgetSplit` by scenario name.

    ``"full_class"`` (``forget_class``), ``"sub_class"`` (``forget_subclass``),
    ``"random"`` (``num_forget`` or ``fraction``, ``seed``), ``"class_subset"``
    (``forget_class``, ``num_forget``, ``seed``), ``"indices"``
    (``forget_indices``). Hyphens and case are ignored (``"Full-Class"`` works).
    """
    if not isinstance(scenario, str):
        raise TypeError(f"scenario must be a string, one of {SCENARIOS}; got {type(scenario).__name__}.")
    key = scenario.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    builders = {"full_class": full_class_split, "sub_class": sub_class_split, "random": random_split,
                "class_subset": class_subset_split, "indices": indices_split}
    if key not in builders:
        raise ValueError(f"unknown forget scenario {scenario!r}; choose one of {SCENARIOS}.")
    try:
        return builders[key](train, test, **kwargs)
    except TypeError as err:
        if "argument" in str(err):
            raise TypeError(f"scenario {key!r}: {err}. See help(jaxunlearn.data.{builders[key].__name__}).") from err
        raise
