"""Entropy MIA against scikit-learn on numpy features; threshold attack against brute-force numpy searches."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from jaxunlearn import metrics


def linear_logits(params, x):
    return x @ params["w"] + params["b"]


def _np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _np_entropy(p):
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)


class EntropyTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_entropy_and_confidence_match_numpy(self):
        rng = np.random.default_rng(0)
        p = _np_softmax(rng.normal(size=(7, 4)) * 3).astype(np.float32)
        p[0] = [1.0, 0.0, 0.0, 0.0]  # 0 log 0 = 0
        y = rng.integers(0, 4, size=7).astype(np.int32)
        np.testing.assert_allclose(self.variant(metrics.entropy)(p), _np_entropy(p), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(self.variant(metrics.true_class_confidence)(p, y), p[np.arange(7), y])


def test_entropy_mia_matches_sklearn_on_numpy_features():
    rng = np.random.default_rng(1)
    d, c = 5, 3
    params = {"w": jnp.asarray(rng.normal(size=(d, c)) * 2, jnp.float32), "b": jnp.zeros(c, jnp.float32)}
    retain = rng.normal(size=(80, d)).astype(np.float32) * 2.0  # confident: low entropy
    test = rng.normal(size=(64, d)).astype(np.float32) * 0.3  # uncertain: high entropy
    forget = np.concatenate([retain[:16], test[:16]])
    feats = [_np_entropy(_np_softmax(a @ np.asarray(params["w"]))) for a in (retain, test, forget)]
    X = np.concatenate(feats[:2])[:, None]
    Y = np.concatenate([np.ones(80), np.zeros(64)])
    want = LogisticRegression(class_weight="balanced", C=2.0).fit(X, Y).predict(feats[2][:, None]).mean()
    got = metrics.entropy_mia(linear_logits, params, (retain, None), (test, None), forget, batch_size=16)
    assert got == pytest.approx(want)
    assert 0.2 < got < 0.8  # the attack separates the two halves of this forget set


def test_c2_binary_fit_equals_two_class_multinomial_fit():
    # the original: LogisticRegression(multi_class="multinomial") on two classes, balanced weights, C = 1
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0.5, 0.4, 50), rng.normal(1.2, 0.5, 30)])
    y = np.concatenate([np.ones(50), np.zeros(30)]).astype(int)
    w = np.where(y == 1, len(y) / (2 * 50), len(y) / (2 * 30))

    def objective(theta):  # softmax over two classes, both weight vectors penalised (C = 1)
        w1, b1, w0, b0 = theta
        z = np.stack([w0 * x + b0, w1 * x + b1], axis=1)
        logp = z - np.logaddexp(z[:, 0], z[:, 1])[:, None]
        return -np.sum(w * logp[np.arange(len(y)), y]) + 0.5 * (w1**2 + w0**2)

    theta = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    clf = LogisticRegression(class_weight="balanced", C=2.0, tol=1e-10).fit(x[:, None], y)
    assert clf.coef_[0, 0] == pytest.approx(theta[0] - theta[2], rel=1e-4)
    assert clf.intercept_[0] == pytest.approx(theta[1] - theta[3], rel=1e-4)


def _grouped_bruteforce(members, nonmembers):
    best, best_tau = -1.0, None
    for tau in sorted(set(np.concatenate([members, nonmembers]).tolist())):
        acc = 0.5 * (np.mean(members >= tau) + np.mean(nonmembers < tau))
        if acc > best:
            best, best_tau = acc, tau
    return best_tau, best


def _original_loop(train_conf, test_conf):  # the seed's mia_get_threshold, with a stable sort
    result = np.array([[v, 1] for v in train_conf] + [[v, 0] for v in test_conf], dtype=np.float32)
    result = result[result[:, 0].argsort(kind="stable")]
    one, zero = len(train_conf), len(test_conf)
    best, threshold = -1, -1
    for value, label in result:
        acc = 0.5 * (one / len(train_conf) + (len(test_conf) - zero) / len(test_conf))
        if best < acc and threshold < value:
            best, threshold = acc, value
        if label == 1:
            one -= 1
        else:
            zero -= 1
    return threshold, best


class ThresholdTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_threshold_search_matches_bruteforce_and_the_original_loop_with_ties(self):
        rng = np.random.default_rng(3)
        fit_fn = self.variant(metrics.fit_confidence_threshold)
        for trial in range(6):
            # few distinct values: many ties within and across the two groups
            members = (rng.integers(3, 10, size=23) / 10).astype(np.float32)
            nonmembers = (rng.integers(0, 8, size=17) / 10).astype(np.float32)
            fit = fit_fn(members, nonmembers)
            for reference in (_grouped_bruteforce, _original_loop):
                tau, acc = reference(members, nonmembers)
                assert float(fit.threshold) == pytest.approx(tau), (trial, reference.__name__)
                assert float(fit.attack_accuracy) == pytest.approx(acc), (trial, reference.__name__)

    def test_smallest_maximiser_wins(self):
        members = np.array([0.5, 0.9], np.float32)
        nonmembers = np.array([0.5, 0.1], np.float32)
        # tau = 0.5: 0.5 * (2/2 + 1/2) = 0.75; tau = 0.9: 0.5 * (1/2 + 2/2) = 0.75
        fit = metrics.fit_confidence_threshold(members, nonmembers)
        assert float(fit.threshold) == pytest.approx(0.5) and float(fit.attack_accuracy) == 0.75


def test_confidence_mia_reports_forget_fraction_below_threshold():
    rng = np.random.default_rng(4)
    d, c = 4, 3
    params = {"w": jnp.asarray(rng.normal(size=(d, c)), jnp.float32), "b": jnp.zeros(c, jnp.float32)}
    data = [(rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, c, n).astype(np.int32)) for n in (42, 28, 14)]
    got = metrics.confidence_mia(linear_logits, params, data[0], data[1], data[2], batch_size=7)
    conf = [_np_softmax(x @ np.asarray(params["w"]))[np.arange(len(y)), y].astype(np.float32) for x, y in data]
    tau, acc = _grouped_bruteforce(conf[0], conf[1])
    assert got["threshold"] == pytest.approx(tau)
    assert got["attack_accuracy"] == pytest.approx(acc)
    assert got["forget_nonmember_fraction"] == pytest.approx(np.mean(conf[2] < tau))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="member_conf"):
        metrics.fit_confidence_threshold(np.zeros(0, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="labels"):
        metrics.true_class_confidence(np.full((3, 2), 0.5, np.float32), np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="query_features"):
        metrics.entropy_attack_from_features(np.ones(3), np.zeros(3), np.array([np.nan]))
    with pytest.raises(ValueError, match="probs"):
        metrics.entropy(np.ones(3, np.float32))


def test_labels_outside_the_classes_and_misfit_features_are_named():
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    x, y = rng.normal(size=(6, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2], np.int32)
    with pytest.raises(ValueError, match=r"labels hold values from 0 to 3.*0\.\.2"):
        metrics.true_class_confidence(np.full((6, 3), 1 / 3, np.float32), np.array([0, 1, 3, 0, 1, 2], np.int32))
    with pytest.raises(ValueError, match=r"test labels y hold values from -2 to 2.*0\.\.2"):
        metrics.confidence_mia(linear_logits, params, (x, y), (x, y - 2 * (y == 0)), (x, y))
    wrong = rng.normal(size=(6, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="forget_train does not fit the model"):
        metrics.confidence_mia(linear_logits, params, (x, y), (x, y), (wrong, y))
    with pytest.raises(ValueError, match="retain_train does not fit the model"):
        metrics.entropy_mia(linear_logits, params, wrong, x, x)
