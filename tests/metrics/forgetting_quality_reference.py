"""An independent, straightforward numpy port of the forgetting-quality specification: per example, per threshold.

The reference of ``test_metrics_forgetting_quality.py`` and the baseline of ``benchmarks/forgetting_quality.py``:
it loops over the forget examples and materialises both threshold grids, as the rules are written (single
threshold ``linspace(lo, hi, ceil((hi - lo) * 100))``; double threshold ``400`` left thresholds per right one;
a threshold discarded when exactly one of FPR, FNR is 0; the spike rule; the clip to ``[0, 50]``).
"""

import numpy as np

DELTA = 1e-5


def ref_confidence(logits, labels):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    is_label = np.arange(z.shape[-1]) == np.broadcast_to(labels, z.shape[:-1])[..., None]
    p_label = np.where(is_label, p, 0.0).sum(axis=-1)
    p_rest = np.where(is_label, 0.0, p).sum(axis=-1)
    return np.log(p_label + 1e-45) - np.log(p_rest + 1e-45)


def ref_threshold_eps(tpr, fnr, fpr, tnr, delta):
    """eps per threshold: inf on perfect separation, NaN when discarded."""
    with np.errstate(all="ignore"):
        terms = np.stack([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)])
        both_nan = np.isnan(terms).all(axis=0)
        logs = np.clip(np.where(both_nan, np.nan, np.nanmax(np.where(both_nan, 0.0, terms), axis=0)), 0, None)
    perfect = (fpr == 0) & (fnr == 0) & (tpr == 1) & (tnr == 1)
    one_zero = ((fpr == 0) | (fnr == 0)) & ~perfect
    return np.where(perfect, np.inf, np.where(one_zero, np.nan, logs))


def ref_example_epsilon(unlearned, retrained, delta=DELTA):
    pos, neg = (retrained, unlearned) if np.median(retrained) > np.median(unlearned) else (unlearned, retrained)
    range_pos, range_neg = pos.max() - pos.min(), neg.max() - neg.min()
    if range_pos + range_neg > 0 and min(range_pos, range_neg) / max(range_pos, range_neg) < 0.01:
        return 50.0
    # single threshold: positive when conf >= t
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))
    single = ref_threshold_eps(
        (pos[:, None] >= t).mean(0), (pos[:, None] < t).mean(0), (neg[:, None] >= t).mean(0),
        (neg[:, None] < t).mean(0), delta,
    )
    # double threshold: the peakier side is positive, predicted when t_l <= conf <= t_r
    peak, other = (neg, pos) if range_pos >= range_neg else (pos, neg)
    w = min(range_pos, range_neg)
    right_lo, right_hi = peak.min() + w - 2, peak.max() + 2
    rights = np.linspace(right_lo, right_hi, int(np.ceil((right_hi - right_lo) * 100)))
    t_left = np.concatenate([np.linspace(tr - w - 2, tr - w + 2, 400) for tr in rights])
    t_right = np.repeat(rights, 400)

    def predicted(c):
        return (t_left <= c[:, None]) & (c[:, None] <= t_right)

    tpr = predicted(peak).mean(0)
    fpr = predicted(other).mean(0)
    double = ref_threshold_eps(tpr, 1 - tpr, fpr, 1 - fpr, delta)
    eps = np.concatenate([single, double])
    eps = eps[~np.isnan(eps)]
    assert eps.size, "no threshold kept"
    return float(np.clip(eps.max(), 0, 50))


def ref_epsilons(unlearned, retrained, delta=DELTA):
    return np.array([ref_example_epsilon(unlearned[:, i], retrained[:, i], delta) for i in range(unlearned.shape[1])])


def ref_forget_score(eps, num_models):
    max_eps = np.ceil(np.log(num_models - 1))
    start, points, buckets = 0.0, 1.0, {}
    while start + 0.5 <= max_eps:
        buckets[start] = points
        points /= 2
        start += 0.5
    score = 0.0
    for e in eps:
        for start, points in buckets.items():
            if e < start + 0.5:
                score += points
                break
    return score / len(eps)
