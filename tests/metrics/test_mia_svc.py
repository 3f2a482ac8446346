"""SVC MIA-efficacy: features against a per-example numpy loop, efficacy against an independent scikit-learn
pipeline, and the two extreme cases (forget set like test data / like retain data). The data-level
``svc_mia_efficacy`` is checked against scikit-learn in ``test_comparison.py``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.svm import SVC

from jaxunlearn import metrics


def np_features(p, y, attack):
    """One row per example, written from the formulas of Song & Mittal (2021) and the SalUn evaluation."""
    rows = []
    for pi, yi in zip(p.astype(np.float64), y):
        if attack == "correctness":
            rows.append([float(np.argmax(pi) == yi)])
        elif attack == "confidence":
            rows.append([pi[yi]])
        elif attack == "entropy":
            rows.append([-sum(q * np.log(q) for q in pi if q > 0)])
        elif attack == "m_entropy":
            value = -(1 - pi[yi]) * np.log(max(pi[yi], 1e-30))
            for c, q in enumerate(pi):
                if c != yi:
                    value -= q * np.log(max(1 - q, 1e-30))
            rows.append([value])
        else:
            rows.append(list(pi))
    return np.array(rows)


def random_probs(rng, n, c, sharpness):
    z = rng.normal(size=(n, c)) * sharpness
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_features_match_numpy_loop_under_jit():
    rng = np.random.default_rng(0)
    p = random_probs(rng, 9, 4, 3.0)
    p[0] = [1.0, 0.0, 0.0, 0.0]  # log floors: p_y = 1, other probabilities 0
    p[1] = [0.0, 1.0, 0.0, 0.0]  # p_y = 0 with label 0; 1 - p_c = 0 at class 1
    y = rng.integers(0, 4, 9).astype(np.int32)
    y[0], y[1] = 0, 0
    # one compiled program for all attacks (eagerly every primitive would compile on its own)
    every, m_entropy = jax.jit(lambda q, t: ([metrics.svc_attack_features(q, t, a) for a in metrics.SVC_ATTACKS],
                                             metrics.modified_entropy(q, t)))(p, y)
    for attack, got in zip(metrics.SVC_ATTACKS, every):
        np.testing.assert_allclose(got, np_features(p, y, attack), rtol=1e-5, atol=1e-5, err_msg=attack)
    np.testing.assert_allclose(m_entropy, np_features(p, y, "m_entropy")[:, 0], rtol=1e-5)


def sklearn_efficacy(members, nonmembers, forget, attack):
    """The pipeline written out: numpy features, labels 1 / 0, SVC(C=3, rbf, gamma = 1 / num_features)."""
    feats = [np_features(p, y, attack) for p, y in (members, nonmembers, forget)]
    x = np.vstack(feats[:2])
    labels = np.r_[np.ones(len(feats[0])), np.zeros(len(feats[1]))]
    clf = SVC(C=3.0, kernel="rbf", gamma=1.0 / x.shape[1]).fit(x, labels)
    return float(np.mean(clf.predict(feats[2]) == 0))


def groups(seed, n_members, n_nonmembers, n_forget, c=5):
    rng = np.random.default_rng(seed)
    members = (random_probs(rng, n_members, c, 4.0), rng.integers(0, c, n_members))
    nonmembers = (random_probs(rng, n_nonmembers, c, 1.5), rng.integers(0, c, n_nonmembers))
    forget = (random_probs(rng, n_forget, c, 2.5), rng.integers(0, c, n_forget))
    members[0][np.arange(n_members), members[1]] += 1.0  # members: confident and mostly right
    members[0][:] /= members[0].sum(axis=1, keepdims=True)
    return members, nonmembers, forget


def test_efficacy_matches_sklearn_pipeline():
    members, nonmembers, forget = groups(1, 40, 40, 30)
    got = metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, *forget, key=jax.random.key(0))
    assert set(got) == set(metrics.SVC_ATTACKS)
    for attack in metrics.SVC_ATTACKS:
        assert got[attack] == pytest.approx(sklearn_efficacy(members, nonmembers, forget, attack)), attack
    assert 0.1 < got["confidence"] < 0.9  # a forget set between the two groups: the comparison is not trivial


def test_larger_group_is_subsampled_by_the_documented_rule():
    members, nonmembers, forget = groups(2, 70, 30, 10)  # 110 examples in all, as above: no new compilation
    key = jax.random.key(3)
    keep = np.sort(np.random.default_rng(int(jax.random.bits(key, (), jnp.uint32))).permutation(70)[:30])
    got = metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, *forget, key=key, attacks=("m_entropy",))
    balanced = (members[0][keep], members[1][keep])
    assert got["m_entropy"] == pytest.approx(sklearn_efficacy(balanced, nonmembers, forget, "m_entropy"))


def test_forget_like_test_data_scores_near_one_and_like_retain_near_zero():
    rng = np.random.default_rng(4)
    c, n = 5, 40

    def confident(m):  # what a model gives its training data: right and sure
        y = rng.integers(0, c, m)
        p = np.full((m, c), 0.02, np.float32)
        p[np.arange(m), y] = 1 - 0.02 * (c - 1)
        return p + rng.uniform(0, 0.01, p.shape).astype(np.float32), y

    def unsure(m):  # unseen data: flat and often wrong
        return random_probs(rng, m, c, 0.5), rng.integers(0, c, m)

    members, nonmembers = confident(n), unsure(n)
    like_test = metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, *unsure(30), key=jax.random.key(0),
                                                    attacks=("confidence", "entropy", "m_entropy", "prob"))
    like_retain = metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, *confident(30), key=jax.random.key(0),
                                                      attacks=("confidence", "entropy", "m_entropy", "prob"))
    assert min(like_test.values()) >= 0.9, like_test
    assert max(like_retain.values()) <= 0.1, like_retain


def test_bad_inputs_raise_naming_the_argument():
    members, nonmembers, forget = groups(6, 10, 10, 5)
    with pytest.raises(ValueError, match="attacks"):
        metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, *forget, key=jax.random.key(0), attacks="prob")
    with pytest.raises(ValueError, match="attack must be one of"):
        metrics.svc_attack_features(members[0], members[1], "loss")
    with pytest.raises(ValueError, match="same number of classes"):
        metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, forget[0][:, :3], forget[1] % 3,
                                            key=jax.random.key(0))
    with pytest.raises(ValueError, match="forget_labels"):
        metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, forget[0], forget[1][:4], key=jax.random.key(0))
    with pytest.raises(ValueError, match="nonmember_labels hold values from 3 to 7"):
        metrics.svc_mia_efficacy_from_probs(*members, nonmembers[0], nonmembers[1] + 3, *forget,
                                            key=jax.random.key(0))
    with pytest.raises(TypeError, match="key"):
        metrics.svc_mia_efficacy_from_probs(*members, *nonmembers, *forget, key=None)
