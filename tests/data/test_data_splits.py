"""Forget scenarios: sets, sizes, disjointness, the originals' orders, determinism, errors."""

import numpy as np
import pytest

from jaxunlearn import data as jd


pytestmark = pytest.mark.xdist_group("data_splits")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def digits():
    return jd.load_digits()


def _fake_cifar20(n_per_fine, seed):
    """A CIFAR-20-shaped dataset: every fine class ``n_per_fine`` times, shuffled; coarse labels by the table."""
    rng = np.random.default_rng(seed)
    fine = rng.permutation(np.repeat(np.arange(100), n_per_fine))
    x = rng.normal(size=(fine.size, 2, 2, 3)).astype(np.float32)
    return jd.Dataset(x=x, y=jd.coarse_labels(fine), num_classes=20, name="fake20", fine_y=fine, num_fine_classes=100)


@pytest.fixture(scope="module")
def cifar20():
    return _fake_cifar20(6, 0), _fake_cifar20(2, 1)


# ---- brute-force references: the originals' loops ---------------------------------------------------

def _ssd_sets(labels, num_classes, forget_class):
    """SSD's get_classwise_ds + build_retain_forget_sets on (index, label) pairs."""
    classwise = {c: [] for c in range(num_classes)}
    for i, lab in enumerate(labels):
        classwise[int(lab)].append(i)
    forget = [i for c in range(num_classes) if c == forget_class for i in classwise[c]]
    retain = [i for c in range(num_classes) if c != forget_class for i in classwise[c]]
    return retain, forget


def _loader_batches(order, batch_size):
    return [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def _check_partition(split):
    n = len(split.train)
    f, r = split.forget_train_idx, split.retain_train_idx
    assert np.intersect1d(f, r).size == 0
    assert np.array_equal(np.sort(np.concatenate([f, r])), np.arange(n))
    assert len(split.forget_train) == f.size and len(split.retain_train) == r.size


# ---- full class -------------------------------------------------------------------------------------

@pytest.mark.parametrize("forget_class", [0, 3, 9])
def test_full_class_matches_ssd_loops(digits, forget_class):
    train, test = digits
    split = jd.full_class_split(train, test, forget_class)
    _check_partition(split)
    retain, forget = _ssd_sets(train.y, 10, forget_class)
    assert split.retain_train_idx.tolist() == retain and split.forget_train_idx.tolist() == forget
    t_retain, t_forget = _ssd_sets(test.y, 10, forget_class)
    assert split.retain_test_idx.tolist() == t_retain and split.forget_test_idx.tolist() == t_forget
    assert split.forget_test_from == "test" and split.forget_class == forget_class
    assert (split.forget_train.y == forget_class).all() and (split.forget_test.y == forget_class).all()
    assert not (split.retain_train.y == forget_class).any() and not (split.retain_test.y == forget_class).any()
    assert split.sizes["forget_train"] == int((train.y == forget_class).sum())
    # retain is class-sorted: labels never decrease
    assert (np.diff(split.retain_train.y) >= 0).all()
    # SSD's unshuffled full_train loader: ConcatDataset(retain, forget), batch 64
    full = split.full_train_idx
    np.testing.assert_array_equal(full, jd.ssd_full_train_order(split))
    np.testing.assert_array_equal(split.full_train.y, train.y[full])
    assert split.retain_idx is split.retain_train_idx and split.forget_idx is split.forget_train_idx
    ours = [b.tolist() for b in jd.sequential_batches(full, 64)]
    assert ours == _loader_batches(retain + forget, 64)
    assert len(ours[-1]) == len(train) % 64 or len(train) % 64 == 0


def test_full_class_on_cifar20_uses_superclasses_and_names(cifar20):
    train, test = cifar20
    split = jd.make_forget_split("Full-Class", train, test, forget_class="vehicle2")
    assert split.forget_class == 19 and split.scenario == "full_class"
    assert split.sizes["forget_train"] == 5 * 6 and split.sizes["forget_test"] == 5 * 2
    assert set(np.unique(train.fine_y[split.forget_train_idx])) == set(jd.CIFAR20_COARSE_MAP[19])
    retain, forget = _ssd_sets(train.y, 20, 19)
    assert split.retain_train_idx.tolist() == retain and split.forget_train_idx.tolist() == forget


# ---- sub class --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fine,coarse", [("rocket", 69, 19), ("mushroom", 51, 4), ("baby", 2, 14),
                                              ("lamp", 40, 5), ("sea", 71, 10)])
def test_sub_class_forgets_one_fine_class_inside_cifar20(cifar20, name, fine, coarse):
    train, test = cifar20
    split = jd.make_forget_split("subclass", train, test, forget_subclass=name)
    _check_partition(split)
    assert split.scenario == "sub_class" and split.forget_subclass == fine and split.forget_class == coarse
    assert (split.forget_train.fine_y == fine).all() and split.sizes["forget_train"] == 6
    assert (split.forget_train.y == coarse).all()  # the model's labels stay the superclasses
    assert split.forget_test.fine_y.tolist() == [fine, fine]
    # the other four fine classes of the superclass are retained
    kept = train.fine_y[split.retain_train_idx]
    assert set(jd.CIFAR20_COARSE_MAP[coarse]) - {fine} <= set(kept.tolist())
    # SSD's sub-class loops run over fine labels (get_classwise_ds by `label`)
    retain, forget = _ssd_sets(train.fine_y, 100, fine)
    assert split.retain_train_idx.tolist() == retain and split.forget_train_idx.tolist() == forget
    t_retain, _ = _ssd_sets(test.fine_y, 100, fine)
    assert split.retain_test_idx.tolist() == t_retain


def test_sub_class_needs_fine_labels(digits):
    train, test = digits
    with pytest.raises(ValueError, match="fine labels"):
        jd.sub_class_split(train, test, 3)


# ---- random -----------------------------------------------------------------------------------------

def test_random_split_sizes_follow_torch():
    assert jd.random_split_sizes(50000, 0.00165) == (83, 49917)
    assert jd.random_split_sizes(10, 0.25) == (3, 7)  # floor 2 + 7 = 9, remainder to the first part
    assert jd.random_split_sizes(1797, 0.1) == (180, 1617)
    with pytest.raises(ValueError, match="fraction"):
        jd.random_split_sizes(10, 0.0)


def test_random_split(digits):
    train, test = digits
    split = jd.random_split(train, test, fraction=0.05, seed=7)
    _check_partition(split)
    k = jd.random_split_sizes(len(train), 0.05)[0]
    assert split.sizes == {"forget_train": k, "retain_train": len(train) - k, "forget_test": k,
                           "retain_test": len(test)}
    # Df is measured on the forgotten training samples themselves; Dr test is the whole test set
    assert split.forget_test_from == "train"
    np.testing.assert_array_equal(split.forget_test.x, split.forget_train.x)
    np.testing.assert_array_equal(split.retain_test.x, test.x)
    # both parts in the order of one seeded permutation
    perm = np.random.default_rng(7).permutation(len(train))
    np.testing.assert_array_equal(np.concatenate([split.forget_train_idx, split.retain_train_idx]), perm)
    np.testing.assert_array_equal(split.full_train_idx, np.concatenate([perm[k:], perm[:k]]))
    again = jd.random_split(train, test, fraction=0.05, seed=7)
    np.testing.assert_array_equal(again.forget_train_idx, split.forget_train_idx)
    other = jd.random_split(train, test, fraction=0.05, seed=8)
    assert not np.array_equal(other.forget_train_idx, split.forget_train_idx)
    by_count = jd.make_forget_split("random", train, test, num_forget=12, seed=1)
    assert by_count.sizes["forget_train"] == 12


# ---- class subset (Bayesian) ------------------------------------------------------------------------

def test_class_subset_split(digits):
    train, test = digits
    split = jd.make_forget_split("class_subset", train, test, forget_class=0, num_forget=50, seed=3)
    _check_partition(split)
    assert split.sizes["forget_train"] == 50 and (split.forget_train.y == 0).all()
    np.testing.assert_array_equal(split.forget_train_idx,
                                  np.random.default_rng(3).permutation(train.class_indices(0))[:50])
    assert (np.diff(split.retain_train_idx) > 0).all()  # the rest, in dataset order
    assert split.forget_test_from == "train" and split.sizes["retain_test"] == len(test)
    same = jd.class_subset_split(train, test, 0, 50, seed=3)
    np.testing.assert_array_equal(same.forget_train_idx, split.forget_train_idx)
    whole = jd.class_subset_split(train, test, 0, len(train.class_indices(0)), seed=0)
    assert set(whole.forget_train_idx.tolist()) == set(train.class_indices(0).tolist())
    with pytest.raises(ValueError, match="num_forget must lie in"):
        jd.class_subset_split(train, test, 0, len(train.class_indices(0)) + 1)


def test_indices_split(digits):
    train, test = digits
    split = jd.indices_split(train, test, [5, 3, 9])
    assert split.forget_train_idx.tolist() == [5, 3, 9]
    _check_partition(split)
    with pytest.raises(ValueError, match="duplicate"):
        jd.indices_split(train, test, [5, 5])
    with pytest.raises(ValueError, match=r"\[0, "):
        jd.indices_split(train, test, [len(train)])


# ---- errors -----------------------------------------------------------------------------------------

def test_scenario_errors(digits):
    train, test = digits
    with pytest.raises(ValueError, match="unknown forget scenario"):
        jd.make_forget_split("forget_everything", train, test)
    with pytest.raises(TypeError, match="scenario must be a string"):
        jd.make_forget_split(3, train, test)
    with pytest.raises(TypeError, match="full_class"):
        jd.make_forget_split("full_class", train, test, forget_klass=3)
    with pytest.raises(ValueError, match="out of range"):
        jd.full_class_split(train, test, 10)
    with pytest.raises(ValueError, match="out of range"):
        jd.full_class_split(train, test, -1)
    with pytest.raises(ValueError, match="unknown forget class name"):
        jd.full_class_split(train, test, "rocket")
    with pytest.raises(TypeError, match="integer class id"):
        jd.full_class_split(train, test, 2.0)
    with pytest.raises(ValueError, match="exactly one"):
        jd.random_split(train, test)


def test_empty_and_overlapping_forget_sets(digits):
    train, test = digits
    with pytest.raises(ValueError, match="forget set is empty"):
        jd.random_split(train, test, num_forget=0)
    with pytest.raises(ValueError, match="forget set is empty"):
        jd.class_subset_split(train, test, 1, 0)
    with pytest.raises(ValueError, match="forget set is empty"):
        jd.indices_split(train, test, [])
    # a class with no training example
    no_nines = train.take(np.flatnonzero(train.y != 9))
    with pytest.raises(ValueError, match="forget set is empty"):
        jd.full_class_split(no_nines, test, 9)
    with pytest.raises(ValueError, match="forget test set is empty"):
        jd.full_class_split(train, test.take(np.flatnonzero(test.y != 4)), 4)
    with pytest.raises(ValueError, match="not disjoint"):
        jd.ForgetSplit("indices", train, test, forget_train_idx=np.array([1, 2]),
                       retain_train_idx=np.array([2, 3]), forget_test_idx=np.array([1]),
                       retain_test_idx=np.array([0]), forget_test_from="train")
    with pytest.raises(ValueError, match="do not match"):
        jd.full_class_split(train, jd.load_digits(flatten=True)[1], 1)


def test_split_arrays_are_read_only(digits):
    split = jd.full_class_split(*digits, 2)
    with pytest.raises(ValueError):
        split.forget_train_idx[0] = 0
