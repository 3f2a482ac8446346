"""The comparison-row function: its columns, and the values the retrained row must take."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.svm import SVC

from jaxunlearn import metrics


def features(p, x):
    return jnp.maximum(x @ p["w1"], 0.0)


def logits(p, x):
    return features(p, x) @ p["w2"]


def test_comparison_metrics_of_the_retrained_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + 2 * (x[:, 1] > 0).astype(np.int32)
    forget = y == 3
    # 16 examples in each part: one compilation of the forward pass serves all three
    split = types.SimpleNamespace(retain_train=(x[~forget][:16], y[~forget][:16]),
                                  forget_train=(x[forget][:16], y[forget][:16]))
    test = (x[~forget][16:32], y[~forget][16:32])
    original = {"w1": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32),
                "w2": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)}
    retrained = jax.tree.map(lambda a: a + 0.3, original)
    row = metrics.comparison_metrics(
        logits, retrained, split=split, test=test, key=jax.random.key(0), features_fn=features,
        original_params=original, retrained_params=retrained, attacks=("confidence", "prob"), relearn_examples=3,
        relearn_max_steps=4)
    assert set(row) == {"svc_mia_confidence", "svc_mia_prob", "relearn_steps", "relearn_reached", "cka_forget",
                        "cka_retain"}
    assert set(row) <= set(metrics.COLUMNS)
    assert abs(row["cka_forget"] - 1) < 1e-5 and abs(row["cka_retain"] - 1) < 1e-5  # the retrained model itself
    # the SVC attack on the model's softmax, written out with scikit-learn (equal group sizes: no subsampling)
    probs = [np.asarray(jax.nn.softmax(logits(retrained, part[0]))) for part in (split.retain_train, test,
                                                                                 split.forget_train)]
    attack_features = {"confidence": [p[np.arange(16), part[1]][:, None] for p, part in
                                      zip(probs, (split.retain_train, test, split.forget_train))], "prob": probs}
    for attack, (member, nonmember, query) in attack_features.items():
        svc = SVC(C=3.0, kernel="rbf", gamma=1.0 / member.shape[1]).fit(
            np.vstack([member, nonmember]), np.r_[np.ones(16), np.zeros(16)])
        assert row[f"svc_mia_{attack}"] == pytest.approx(np.mean(svc.predict(query) == 0)), attack
    assert row["relearn_reached"] in (0.0, 1.0) and 0 <= row["relearn_steps"] <= 4
    assert all(isinstance(v, float) for v in row.values())
