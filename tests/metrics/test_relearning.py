"""Relearning check on a linear softmax model against plain numpy SGD, step by step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import metrics

D, C, F, K, STEPS = 3, 3, 24, 4, 12


def linear_logits(params, x):
    return x @ params["w"] + params["b"]


def numpy_relearning(params, x_tune, y_tune, x_eval, y_eval, lr, steps):
    """Accuracies a_0..a_steps of full-batch SGD on the mean cross-entropy, gradient written out by hand."""
    w, b = np.array(params["w"], np.float64), np.array(params["b"], np.float64)
    onehot = np.eye(C)[y_tune]
    accs = []
    for t in range(steps + 1):
        accs.append(np.mean(np.argmax(x_eval @ w + b, axis=1) == y_eval))
        if t == steps:
            break
        z = x_tune @ w + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(y_tune)  # d mean CE / d logits
        w, b = w - lr * x_tune.T @ g, b - lr * g.sum(axis=0)
    return np.array(accs)


pytestmark = pytest.mark.xdist_group("relearning")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    centres = np.eye(D) * 3.0
    y = rng.integers(0, C, F).astype(np.int32)
    x = (centres[y] + rng.normal(0, 0.7, (F, D))).astype(np.float32)
    # an "unlearned" model: the right weights, with every class's logit pushed to class (y + 1) mod C
    forgot = {"w": jnp.asarray(np.roll(np.eye(D), 1, axis=1) * 2.0, jnp.float32), "b": jnp.zeros(C, jnp.float32)}
    knows = {"w": jnp.asarray(np.eye(D) * 2.0, jnp.float32), "b": jnp.zeros(C, jnp.float32)}
    return x, y, forgot, knows


def first_crossing(accs, tau, cap):
    hits = np.flatnonzero(accs >= tau)
    return (int(hits[0]), True) if hits.size else (cap, False)


def test_curves_steps_and_cap_match_numpy_sgd_under_jit_and_vmap(problem):
    x, y, forgot, knows = problem
    # three probes in one compiled program: two keys on the forgetting model, and the model that knows
    params = jax.tree.map(lambda a, b: jnp.stack([a, a, b]), forgot, knows)
    keys = jnp.stack([jax.random.key(3), jax.random.key(1), jax.random.key(3)])

    def run(p, key):
        return metrics.relearning(linear_logits, p, (x, y), key=key, num_examples=K, learning_rate=0.5,
                                  max_steps=STEPS, original_params=knows, margin=0.2)

    results = jax.jit(jax.vmap(run))(params, keys)
    crossings = []
    for i, key in enumerate(keys):
        perm = np.asarray(jax.random.permutation(key, F))  # the documented choice of fine-tuning examples
        p = jax.tree.map(lambda a, i=i: np.asarray(a[i]), params)
        tau = np.mean(np.argmax(x[perm[K:]] @ np.asarray(knows["w"]), axis=1) == y[perm[K:]]) - 0.2
        want = numpy_relearning(p, x[perm[:K]], y[perm[:K]], x[perm[K:]], y[perm[K:]], 0.5, STEPS)
        np.testing.assert_allclose(results.accuracies[i], want, atol=1e-6)
        assert float(results.threshold[i]) == pytest.approx(tau)
        crossings.append(first_crossing(want, tau, STEPS))
        assert (int(results.steps[i]), bool(results.reached[i])) == crossings[-1]
    assert 0 < crossings[0][0] < STEPS  # key 3: the curve climbs from "forgotten" to "relearned"
    assert crossings[1] == (STEPS, False)  # key 1: never within the cap (steps = cap, flagged)
    assert crossings[2] == (0, True)  # a model that already predicts the forget set needs no step


def test_bad_inputs_raise(problem):
    x, y, forgot, _ = problem
    kwargs = {"key": jax.random.key(0), "learning_rate": 0.1, "max_steps": 3}
    with pytest.raises(ValueError, match="exactly one of threshold"):
        metrics.relearning(linear_logits, forgot, (x, y), num_examples=K, **kwargs)
    with pytest.raises(ValueError, match="num_examples"):
        metrics.relearning(linear_logits, forgot, (x, y), num_examples=F, threshold=0.5, **kwargs)
    with pytest.raises(ValueError, match="threshold"):
        metrics.relearning(linear_logits, forgot, (x, y), num_examples=K, threshold=1.5, **kwargs)
    with pytest.raises(TypeError, match="key"):
        metrics.relearning(linear_logits, forgot, (x, y), num_examples=K, threshold=0.5, key=None,
                           learning_rate=0.1, max_steps=3)
