"""U-LiRA against a brute-force numpy loop over examples (scipy.stats.norm.logpdf) and scikit-learn's ROC."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from jaxunlearn import metrics
from jaxunlearn.metrics import lira


def ref_scores(conf_in, conf_out, target, global_variance=False, min_std=1e-6):
    """Per example: Gaussians fitted to the IN and OUT confidences, log pdf ratio of every target model."""
    f = conf_in.shape[1]
    var_in = [np.var(conf_in[:, j]) for j in range(f)]
    var_out = [np.var(conf_out[:, j]) for j in range(f)]
    if global_variance:
        var_in, var_out = [np.mean(var_in)] * f, [np.mean(var_out)] * f
    out = np.empty(target.shape)
    for j in range(f):
        sd_in, sd_out = max(np.sqrt(var_in[j]), min_std), max(np.sqrt(var_out[j]), min_std)
        for m in range(target.shape[0]):
            out[m, j] = (norm.logpdf(target[m, j], np.mean(conf_in[:, j]), sd_in)
                         - norm.logpdf(target[m, j], np.mean(conf_out[:, j]), sd_out))
    return out


def confidences(seed, n=16, f=12, m=10, k=9):
    """IN / OUT confidences per example with their own means and spreads; unlearned models between the two."""
    rng = np.random.default_rng(seed)
    mu_in, mu_out = rng.normal(3, 1, f), rng.normal(0, 1, f)
    sd_in, sd_out = rng.uniform(0.3, 2, f), rng.uniform(0.3, 2, f)
    conf_in = rng.normal(mu_in, sd_in, (n, f))
    conf_out = rng.normal(mu_out, sd_out, (n, f))
    unlearned = rng.normal(0.4 * mu_in + 0.6 * mu_out, sd_out, (m, f))
    heldout = rng.normal(mu_out, sd_out, (k, f))
    return conf_in, conf_out, unlearned, heldout


@pytest.mark.parametrize("global_variance", [False, True])
def test_scores_match_scipy_loop(global_variance):
    conf_in, conf_out, unlearned, _ = confidences(0)
    conf_in[:, 3] = 1.5  # one example whose IN models agree exactly: the std floor keeps it finite
    got = metrics.lira_scores(conf_in, conf_out, unlearned, global_variance=global_variance)
    want = ref_scores(conf_in, conf_out, unlearned, global_variance)
    assert got.dtype == np.float64 and got.shape == unlearned.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-8)


def test_ulira_matches_sklearn_roc():
    conf_in, conf_out, unlearned, heldout = confidences(1)
    heldout[:3] = unlearned[:3]  # the same confidences in both groups: (nearly) tied scores
    result = metrics.ulira(conf_in, conf_out, unlearned, heldout, fprs=(0.05, 0.2))
    pos, neg = ref_scores(conf_in, conf_out, unlearned).ravel(), ref_scores(conf_in, conf_out, heldout).ravel()
    np.testing.assert_allclose(result.heldout_scores, neg.reshape(heldout.shape), rtol=1e-10, atol=1e-8)
    # the ROC of the scores ulira computed (equal inputs may differ in the last bit of a float64 score: XLA's
    # elementwise code may take a vector path for one and a scalar path for the other)
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    scores = np.r_[np.ravel(result.unlearned_scores), np.ravel(result.heldout_scores)]
    assert result.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    want = [tpr[fpr <= level].max() for level in (0.05, 0.2)]
    np.testing.assert_allclose(result.tpr_at_fpr, want, atol=1e-12)
    assert result.accuracy == pytest.approx(0.5 * (np.mean(pos > 0) + np.mean(neg <= 0)))
    np.testing.assert_allclose(result.unlearned_scores, pos.reshape(unlearned.shape), rtol=1e-10, atol=1e-8)
    assert 0.6 < result.auc < 1.0 and 0 < want[0] < want[1] < 1  # partly separable: neither end of the scale


def test_auc_counts_exact_ties_as_one_half():
    pos, neg = np.array([0.5, 1.0, 2.0, 2.0, -1.0]), np.array([1.0, 2.0, 0.0, 2.0])
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    assert float(lira._auc(jnp.asarray(pos), jnp.asarray(neg))) == pytest.approx(
        roc_auc_score(labels, np.r_[pos, neg]), abs=1e-6)


def test_from_logits_columns():
    conf_in, conf_out, unlearned, heldout = confidences(2)
    want = metrics.ulira(conf_in, conf_out, unlearned, heldout)
    # two-class logits [c, 0]: their logit-scaled confidence of label 0 is exactly c
    logits = [np.stack([c, np.zeros_like(c)], axis=-1) for c in (conf_in, conf_out, unlearned, heldout)]
    columns = metrics.ulira_columns(*logits, np.zeros(conf_in.shape[1], np.int32))
    assert columns == {"ulira_auc": pytest.approx(float(want.auc), abs=1e-12),
                       "ulira_accuracy": pytest.approx(float(want.accuracy), abs=1e-12),
                       "ulira_tpr_at_0.01_fpr": pytest.approx(float(want.tpr_at_fpr[0]), abs=1e-12),
                       "ulira_tpr_at_0.001_fpr": pytest.approx(float(want.tpr_at_fpr[1]), abs=1e-12)}
    assert set(columns) <= set(metrics.COLUMNS)


def test_unlearned_like_in_models_is_found_and_like_retrained_is_not():
    # 26 models per side: 16 fit the Gaussians, the other 10 play the unlearned models (same shapes as above)
    conf_in, conf_out, _, heldout = confidences(3, n=26)
    like_in = metrics.ulira(conf_in[:16], conf_out[:16], conf_in[16:], heldout, fprs=(0.05, 0.2))
    like_out = metrics.ulira(conf_in[:16], conf_out[:16], conf_out[16:], heldout, fprs=(0.05, 0.2))
    assert like_in.auc > 0.9 and like_in.accuracy > 0.8
    assert abs(like_out.auc - 0.5) < 0.1 and like_out.tpr_at_fpr[0] < 0.2


def test_bad_inputs_raise_naming_the_argument():
    conf_in, conf_out, unlearned, heldout = confidences(6)
    with pytest.raises(ValueError, match="heldout_conf"):
        metrics.ulira(conf_in, conf_out, unlearned, heldout[:, :5])
    with pytest.raises(ValueError, match="in_conf"):
        metrics.lira_scores(conf_in[0], conf_out, unlearned)
    with pytest.raises(ValueError, match="fprs"):
        metrics.ulira(conf_in, conf_out, unlearned, heldout, fprs=(0.0,))
    with pytest.raises(ValueError, match="labels"):
        metrics.ulira_from_logits(*(np.zeros((3, 4, 2)),) * 4, np.zeros(5, np.int32))
