"""Shared testbed of the baseline tests: a small MLP fitted to part of digits, full-class forgetting of digit 3.

Imported by tests/methods/test_baselines_*.py. The "original" model is fitted by scikit-learn's
MLPClassifier (same architecture: 64-32-10, ReLU, softmax) and cached for the session, so no test
pays for a JAX pretraining compile.
"""

import functools
import warnings

import jax
import numpy as np
import optax
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from jaxunlearn.data import load_digits

FORGET_CLASS = 3
NUM_CLASSES = 10


def init_fn(key):
    k1, k2 = jax.random.split(key)
    return {
        "hidden": {"w": jax.random.normal(k1, (64, 32)) / 8.0, "b": jax.numpy.zeros(32)},
        "head": {"w": jax.random.normal(k2, (32, NUM_CLASSES)) / np.sqrt(32.0), "b": jax.numpy.zeros(NUM_CLASSES)},
    }


def logits_fn(params, x):
    h = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
    return h @ params["head"]["w"] + params["head"]["b"]


def loss_fn(params, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(logits_fn(params, x), y).mean()


def acc(params, data):
    x, y = data
    return float(np.mean(np.asarray(logits_fn(params, x)).argmax(-1) == np.asarray(y)))


REQUEST = np.arange(48)
"""The forget request: the first 48 examples of ``train_data()`` are the digits 3."""


def train_data(setup=None):
    """The training data of the testbed, ``(x, y)``: the 48 forget examples, then the 432 retained ones."""
    _, forget, retain, _ = setup or trained_setup()
    return np.concatenate([forget[0], retain[0]]), np.concatenate([forget[1], retain[1]])


@functools.lru_cache(maxsize=None)
def trained_setup():
    """``(params, forget (x, y), retain (x, y), train Dataset)``: 48 digits 3 to forget, 432 other digits kept.

    Sizes divide the batch sizes the tests use (48, 144), so no epoch has a short last batch (fewer compiles).
    """
    train, _ = load_digits(flatten=True)
    x, y = train.x[:600], train.y[:600]
    forget_idx = np.flatnonzero(y == FORGET_CLASS)[:48]
    retain_idx = np.flatnonzero(y != FORGET_CLASS)[:432]
    forget, retain = (x[forget_idx], y[forget_idx]), (x[retain_idx], y[retain_idx])
    both = np.concatenate([forget_idx, retain_idx])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(x[both], y[both])
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    params = jax.tree.map(lambda a: jax.numpy.asarray(a, jax.numpy.float32),
                          {"hidden": {"w": w1, "b": b1}, "head": {"w": w2, "b": b2}})
    assert acc(params, forget) == 1.0 and acc(params, retain) > 0.98
    return params, forget, retain, train
