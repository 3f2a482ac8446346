"""The method contract, checked for every method of ``jaxunlearn.methods.registry.REGISTRY``.

One battery (in the spirit of optax's shared test of all its optimizers) runs
over each registered method on a tiny problem of its family:

* ``init``/``update`` eagerly: outputs finite, the state a pytree, ``info`` a NamedTuple;
* the same key gives bit-identical results; a different key is allowed to differ;
* two sequential requests work, and the second (same size) compiles nothing new;
* ``jaxunlearn.jit(jax.vmap(update))`` over keys and the stacked params and states of two
  models (jit and vmap in one compiled program) equals the per-member eager call;
* bad input raises the named error, eagerly and under that jitted, vmapped update: a missing key,
  an empty or non-integer request, an index out of range or already forgotten, NaN
  parameters; and in ``init``: labels outside ``0..C-1`` and data of the wrong shape.

A method added to the registry is covered without writing a new test.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxunlearn as ju
from jaxunlearn import bayes
from jaxunlearn.data import load_digits
from jaxunlearn.methods import registry
from jaxunlearn.models import bayesian
from jaxunlearn.models.cvae import create_cvae

N, K, C = 48, 4, 10
REQUEST_1 = np.arange(0, K)
REQUEST_2 = np.arange(K, 2 * K)


from conftest import CompileCounter  # noqa: E402  (tests/conftest.py, shared by the suite)


@functools.lru_cache(maxsize=None)
def digits():
    train, _ = load_digits(flatten=True)
    return np.asarray(train.x[:N], np.float32), np.asarray(train.y[:N], np.int32)


def mlp_init(key, hidden=8):
    k1, k2 = jax.random.split(key)
    return {"hidden": {"w": jax.random.normal(k1, (64, hidden)) / 8.0, "b": jnp.zeros(hidden)},
            "head": {"w": jax.random.normal(k2, (hidden, C)) / np.sqrt(hidden), "b": jnp.zeros(C)}}


def mlp_logits(params, x):
    h = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
    return h @ params["head"]["w"] + params["head"]["b"]


def mlp_loss(params, batch):
    return optax.softmax_cross_entropy_with_integer_labels(mlp_logits(params, batch[0]), batch[1]).mean()


def classifier_case():
    problem = registry.ClassifierProblem(mlp_loss, mlp_logits, mlp_init, C)
    return problem, mlp_init(jax.random.key(1)), digits()


def vi_case():
    module = bayesian.BayesMLP(num_classes=C, hidden=(8,))
    params = module.init({"params": jax.random.key(1), bayesian.RNG_STREAM: jax.random.key(2)},
                         jnp.zeros((1, 64)))["params"]
    energy = bayes.vbnn_energy(bayesian.stochastic_logits_fn(module), prior_std=0.15)
    return registry.BayesProblem(energy), params, digits()


def mcmc_case():
    energy = bayes.bnn_energy(mlp_logits, prior_std=1.0)
    return registry.BayesProblem(energy, lr=1e-4), mlp_init(jax.random.key(1)), digits()


def cvae_case():
    module, params = create_cvae(jax.random.key(1), x_dim=64, num_classes=C, hidden=(16, 8), z_dim=2)
    x, y = digits()
    return registry.CVAEProblem(module), params, (x / 16.0, y)


CASES = {"classifier": classifier_case, "vi": vi_case, "mcmc": mcmc_case, "cvae": cvae_case}


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol), a, b)


def assert_trees_equal(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)


def assert_finite(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.parametrize("name", registry.names())
def test_method_follows_the_contract(name):
    entry = registry.REGISTRY[name]
    problem, params, data = CASES[entry.family]()
    unlearner = entry.build(problem, **entry.test_settings)
    k_init, k1, k2, k3 = jax.random.split(jax.random.key(7), 4)

    # init and one request, eagerly; the state is a pytree, info a NamedTuple beside it
    state = unlearner.init(params, data, key=k_init)
    assert jax.tree.structure(jax.tree.map(lambda a: a, state)) == jax.tree.structure(state)
    p1, s1, info = unlearner.update(params, REQUEST_1, state, key=k1)
    assert jax.tree.structure(p1) == jax.tree.structure(params)
    assert isinstance(info, tuple) and hasattr(info, "_fields")
    assert_finite(p1)

    # the same key gives the same result, bit for bit
    p1_again, _, _ = unlearner.update(params, REQUEST_1, state, key=k1)
    assert_trees_equal(p1, p1_again)

    # a second request of the same size works and compiles nothing new
    CompileCounter.count, CompileCounter.active = 0, True
    try:
        p2, s2, _ = unlearner.update(p1, REQUEST_2, s1, key=k2)
        jax.block_until_ready(p2)
    finally:
        CompileCounter.active = False
    assert CompileCounter.count == 0, f"{name}: the second request compiled {CompileCounter.count} time(s)"
    assert_finite(p2)

    # jit and vmap together, in one compiled program (one compilation per method keeps the battery fast):
    # vmap over keys and over the stacked params and states of two models, under jaxunlearn.jit (jax.jit that
    # keeps our error classes); model 0 equals the eager call
    stack = lambda a, b: jax.tree.map(lambda u, v: jnp.stack([u, v]), a, b)  # noqa: E731
    params2 = jax.tree.map(lambda a: jnp.stack([a, 0.9 * a]), params)
    states2 = jax.vmap(lambda p: unlearner.init(p, data, key=k_init))(params2)
    batched = ju.jit(jax.vmap(unlearner.update, in_axes=(0, None, 0)))
    keys2 = jnp.stack([k1, k3])
    pv, _, _ = batched(params2, REQUEST_1, states2, key=keys2)
    assert_trees_close(jax.tree.map(lambda a: a[0], pv), p1, rtol=2e-4, atol=2e-5)
    assert_finite(pv)

    # bad requests and parameters: the named error, eagerly and under jaxunlearn.jit (the same program)
    with pytest.raises(TypeError, match="key"):
        unlearner.update(params, REQUEST_1, state)
    with pytest.raises(ValueError, match="empty"):
        unlearner.update(params, np.zeros((0,), np.int32), state, key=k1)
    with pytest.raises(TypeError, match="integer"):
        unlearner.update(params, REQUEST_1.astype(np.float32), state, key=k1)
    out_of_range = REQUEST_2.copy()
    out_of_range[1] = N + 3
    removed = REQUEST_2.copy()
    removed[2] = REQUEST_1[0]
    nan_params = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), params)
    eager_cases = ((params, out_of_range, state, k1), (p1, removed, s1, k2), (nan_params, REQUEST_1, state, k1))
    batched_cases = ((params2, out_of_range, states2, keys2), (stack(p1, p1), removed, stack(s1, s1), keys2),
                     (stack(nan_params, params), REQUEST_1, states2, keys2))
    for update, cases in ((unlearner.update, eager_cases), (batched, batched_cases)):
        (p_a, r_a, s_a, k_a), (p_b, r_b, s_b, k_b), (p_c, r_c, s_c, k_c) = cases
        with pytest.raises(ValueError, match="index"):
            update(p_a, r_a, s_a, key=k_a)
        with pytest.raises(ValueError, match="forgotten by an earlier request"):
            update(p_b, r_b, s_b, key=k_b)
        with pytest.raises(FloatingPointError, match="params"):
            update(p_c, r_c, s_c, key=k_c)

    # bad training data in init: labels outside 0..C-1, features of the wrong shape
    x, y = data
    with pytest.raises(ValueError, match="labels"):
        unlearner.init(params, (x, np.where(np.arange(N) == 5, -1, y)), key=k_init)
    if entry.knows_num_classes:
        with pytest.raises(ValueError, match="labels"):
            unlearner.init(params, (x, np.where(np.arange(N) == 5, C, y)), key=k_init)
    with pytest.raises(ValueError, match="data"):
        unlearner.init(params, (x[:, :10], y), key=k_init)


def test_every_method_is_registered():
    exported = {"finetune", "retrain", "neggrad", "neggrad_plus", "amnesiac", "bad_teacher", "scrub", "influence",
                "ssd", "lfssd", "lipschitz", "vi_forgetting", "mcmc_forgetting", "importance_sampling",
                "selective_amnesia", "random_labels", "salun", "l1_sparse", "unsir", "boundary_shrink",
                "boundary_expand"}
    assert exported <= set(ju.methods.__all__)
    families = {registry.REGISTRY[n].family for n in registry.names()}
    assert families == set(CASES)
    with pytest.raises(ValueError, match="unknown method"):
        registry.build("nope", None)
