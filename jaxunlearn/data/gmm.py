"""The synthetic 2-D Gaussian mixture of the Bayesian forgetting papers and its removal set.

Reference: original-algorithms.md section 1.6 (BIF) and 2.2 (MCMC unlearning,
same data): ``n = 2000`` points from ``K = 4`` clusters, seed 23498353.

Generation (the originals' ``gen_data_special``, reproduced call for call on
numpy's legacy ``RandomState`` stream, so the default seed gives the
originals' data set up to the sign conventions of the platform's LAPACK SVD
inside ``multivariate_normal``):

1. ``c = U(0, 1) * 2 * 2``; centres ``mu_k ~ N(0, [[4, c], [c, 4]])``, k = 0..3.
2. ``mu_1 += (-1, 2.5)``, ``mu_3 += (1, 0)``.
3. Covariances: cluster 0 ``diag(1, 0.05)``, cluster 2 ``diag(0.05, 1)``, the
   others ``I``.
4. For each point: ``k ~ Uniform{0..3}``, ``x ~ N(mu_k, Sigma_k)``.

Removal set (the originals' ``get_forget_idx``, 800 points): the 400 points of
cluster 0 with the largest ``x[0]`` plus the 400 points of cluster 2 with the
smallest ``x[1]``, then shuffled; they are removed in that order in batches of
``rm_bs = 4`` (200 forget calls).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxunlearn.data.dataset import Dataset

GMM_SEED = 23498353
GMM_NUM_POINTS = 2000
GMM_NUM_CLUSTERS = 4
GMM_NUM_REMOVED = 800


class GMMData(NamedTuple):
    """A sampled mixture: the points (``dataset.y`` = true cluster) and the true parameters."""

    dataset: Dataset
    means: np.ndarray  # [K, 2] float64
    covariances: np.ndarray  # [K, 2, 2] float64


def gmm2d_covariances(num_clusters: int = GMM_NUM_CLUSTERS) -> np.ndarray:
    """``[K, 2, 2]``: ``diag(1, 0.05)`` for cluster 0, ``diag(0.05, 1)`` for cluster 2, ``I`` otherwise."""
    covs = np.stack([np.eye(2) for _ in range(num_clusters)])
    covs[0] = np.diag([1.0, 0.05])
    if num_clusters > 2:
        covs[2] = np.diag([0.05, 1.0])
    return covs


def make_gmm2d(
    n: int = GMM_NUM_POINTS, *, seed: int = GMM_SEED, num_clusters: int = GMM_NUM_CLUSTERS, prior_std: float = 2.0,
) -> GMMData:
    """Sample the original papers' synthetic 2-D mixture (see module doc).

    Args:
      n: number of points (2000 in the originals).
      seed: seed of the legacy ``np.random.RandomState`` stream (23498353 in the originals).
      num_clusters: ``K`` (4; the centre shifts and special covariances need ``K >= 4``).
      prior_std: standard deviation of the centre prior per axis (2).

    Returns:
      :class:`GMMData`; ``dataset.x`` float32 ``[n, 2]``, ``dataset.y`` the cluster of each point.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if num_clusters < 4:
        raise ValueError(f"num_clusters must be >= 4 (the originals shift centres 1 and 3), got {num_clusters}.")
    rs = np.random.RandomState(seed)
    var = float(prior_std) ** 2
    coef = rs.rand() * np.sqrt(var) * np.sqrt(var)
    means = rs.multivariate_normal([0.0, 0.0], np.array([[var, coef], [coef, var]]), size=num_clusters)
    means[1] += [-1.0, 2.5]
    means[3] += [1.0, -0.0]
    covs = gmm2d_covariances(num_clusters)
    x = np.empty((n, 2), dtype=np.float64)
    y = np.empty(n, dtype=np.int32)
    for i in range(n):  # one draw after another, as the original's stream does
        k = rs.randint(num_clusters)
        x[i] = rs.multivariate_normal(means[k], covs[k])
        y[i] = k
    info = {"source": "synthetic 2-D GMM (BIF / MCMC unlearning)", "seed": seed, "prior_std": prior_std}
    data = Dataset(x=x.astype(np.float32), y=y, num_classes=num_clusters, name="gmm2d", info=info)
    return GMMData(dataset=data, means=means, covariances=covs)


def gmm2d_removal_indices(
    dataset: Dataset, num_removed: int = GMM_NUM_REMOVED, *, seed: int | None = 0,
) -> np.ndarray:
    """The original papers' removal set: ``num_removed // 2`` points of cluster 0 with the largest ``x[0]``
    and the remaining ``num_removed - num_removed // 2`` of cluster 2 with the smallest ``x[1]``.

    Args:
      dataset: the mixture (``dataset.y`` = cluster), e.g. ``make_gmm2d().dataset``.
      num_removed: size of the removal set (800).
      seed: the removal order is ``np.random.default_rng(seed).permutation``
        of the set (the originals shuffle it with their process seed);
        ``None`` leaves it unshuffled: the cluster-0 points by increasing
        ``x[0]``, then the cluster-2 points by increasing ``x[1]``.

    Returns:
      int64 ``[num_removed]`` indices into ``dataset``, in removal order.
    """
    if num_removed < 1:
        raise ValueError(f"num_removed must be >= 1, got {num_removed}.")
    half = num_removed // 2
    x, y = dataset.x, dataset.y
    c0 = np.flatnonzero(y == 0)
    c2 = np.flatnonzero(y == 2)
    if c0.size < half or c2.size < num_removed - half:
        raise ValueError(
            f"clusters 0 and 2 hold {c0.size} and {c2.size} points: too few for a removal set of {num_removed}."
        )
    top0 = c0[np.argsort(x[c0, 0], kind="stable")[c0.size - half:]]
    low2 = c2[np.argsort(x[c2, 1], kind="stable")[: num_removed - half]]
    removal = np.concatenate([top0, low2]).astype(np.int64)
    if seed is not None:
        removal = np.random.default_rng(seed).permutation(removal)
    return removal
