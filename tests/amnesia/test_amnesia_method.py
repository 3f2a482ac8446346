"""Selective Amnesia: Fisher vs a brute-force loop, EWC, the weighted forgetting loss, projections, the Unlearner."""

import amnesia_reference as ref
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxunlearn as ju
from jaxunlearn.methods.selective_amnesia import (
    SABatch, SAInfo, SAState, class_request, ewc_penalty, forgetting_loss_terms, make_sa_fisher, project_gradients,
    sa_fisher_diagonal, sample_fisher_inputs, sample_sa_batch, selective_amnesia,
)
from jaxunlearn.models.cvae import create_cvae, decode, one_hot

NC = 3


def tiny(seed=0):
    return create_cvae(jax.random.key(seed), x_dim=6, num_classes=NC, hidden=(5, 4), z_dim=2)


def brute_force_fisher(module, params, z, c, eps):
    """Python loop over samples: decode, grad of one sample's VAE loss, square, accumulate in float64, average."""
    from jaxunlearn.models.cvae import vae_loss

    @jax.jit
    def grad_one(p, zi, ci, ei):
        cond = one_hot(ci, NC)
        x = decode(module, p, zi, cond)
        return jax.grad(lambda q: vae_loss(module, q, x, cond, ei))(p)

    total = jax.tree.map(lambda a: np.zeros(a.shape, np.float64), jax.device_get(params))
    for i in range(z.shape[0]):
        g = grad_one(params, z[i : i + 1], c[i : i + 1], eps[i : i + 1])
        total = jax.tree.map(lambda t, gi: t + np.asarray(gi, np.float64) ** 2, total, g)
    return jax.tree.map(lambda t: t / z.shape[0], total)


class TestFisher(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_brute_force_loop(self):
        module, params = tiny()
        key = jax.random.key(3)
        fisher = self.variant(lambda p: sa_fisher_diagonal(module, p, key, num_samples=7, chunk_size=3))(params)
        z, c, eps = sample_fisher_inputs(module, key, 7)
        expected = brute_force_fisher(module, params, z, c, eps)
        chex.assert_trees_all_close(fisher, expected, rtol=2e-4, atol=1e-7)
        assert all(float(jnp.min(f)) >= 0.0 for f in jax.tree.leaves(fisher))


def test_fisher_samples_cover_all_classes():
    module, _ = tiny()
    _, c, _ = sample_fisher_inputs(module, jax.random.key(0), 300)
    assert set(np.asarray(c).tolist()) == set(range(NC))
    with pytest.raises(ValueError, match="num_samples"):
        sample_fisher_inputs(module, jax.random.key(0), 0)


def test_fisher_input_loss_is_the_numpy_vae_loss():
    module, params = tiny()
    z, c, eps = sample_fisher_inputs(module, jax.random.key(1), 2)
    cond = one_hot(c, NC)
    x = ref.decode_numpy(jax.device_get(params), z, cond)
    np.testing.assert_allclose(decode(module, params, z, cond), x, rtol=1e-5, atol=1e-6)


class TestLossTerms(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_ewc_zero_at_theta_star_and_hand_value(self):
        _, params = tiny()
        fisher = jax.tree.map(lambda p: jnp.abs(p) + 0.5, params)
        ewc = self.variant(ewc_penalty)
        assert float(ewc(params, params, fisher)) == 0.0
        moved = jax.tree.map(lambda p: p + 0.1, params)
        hand = sum(np.sum(np.asarray(f) * 0.01) for f in jax.tree.leaves(fisher))  # sum F (0.1)^2, no 1/2
        np.testing.assert_allclose(ewc(moved, params, fisher), hand, rtol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_three_terms_weighted_as_specified(self):
        module, params_star = tiny()
        params = jax.tree.map(lambda p: p + 0.05, params_star)
        fisher = jax.tree.map(lambda p: p**2 + 0.1, params_star)
        forgotten = jnp.array([False, True, False])
        batch = sample_sa_batch(module, params_star, jax.random.key(4), forgotten, 5)
        host = jax.device_get(params)
        bce_f, kl_f = ref.cvae_loss_numpy(host, batch.x_f, one_hot(batch.c_f, NC), batch.eps_f)
        bce_r, kl_r = ref.cvae_loss_numpy(host, batch.x_r, one_hot(batch.c_r, NC), batch.eps_r)
        ewc = sum(np.sum(np.asarray(f, np.float64) * 0.05**2) for f in jax.tree.leaves(fisher))
        fn = self.variant(lambda p, b, lmbda, gamma: forgetting_loss_terms(module, p, b, params_star, fisher,
                                                                           lmbda=lmbda, gamma=gamma))
        for lmbda, gamma in ((100.0, 1.0), (3.0, 0.25), (0.0, 2.0)):
            out = fn(params, batch, lmbda, gamma)
            np.testing.assert_allclose(out.forget, bce_f + kl_f, rtol=1e-4)
            np.testing.assert_allclose(out.replay, bce_r + kl_r, rtol=1e-4)
            np.testing.assert_allclose(out.ewc, ewc, rtol=1e-3)
            np.testing.assert_allclose(out.total, bce_f + kl_f + gamma * (bce_r + kl_r) + lmbda * ewc, rtol=1e-4)


def test_sa_batch_labels_noise_and_replay():
    module, params = tiny()
    forgotten = jnp.array([True, False, True])
    b = sample_sa_batch(module, params, jax.random.key(5), forgotten, 200)
    assert isinstance(b, SABatch) and b.x_f.shape == (200, 6) and b.eps_r.shape == (200, 2)
    assert set(np.asarray(b.c_f).tolist()) == {0, 2} and set(np.asarray(b.c_r).tolist()) == {1}
    assert 0.0 <= float(b.x_f.min()) and float(b.x_f.max()) <= 1.0 and abs(float(b.x_f.mean()) - 0.5) < 0.05
    # replay images are the frozen model's mean images of the replay labels
    z = jax.random.split(jax.random.key(5), 6)[3]
    expected = decode(module, params, jax.random.normal(z, (200, 2)), one_hot(b.c_r, NC))
    np.testing.assert_allclose(b.x_r, expected, rtol=1e-6)


class TestProjection(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_pcgrad_projection_against_numpy(self):
        rng = np.random.default_rng(0)
        gf = {"a": rng.normal(size=3), "b": rng.normal(size=(2, 2))}
        gr = {"a": -gf["a"] + 0.3 * rng.normal(size=3), "b": -gf["b"]}  # conflicting
        flat = lambda g: np.concatenate([np.ravel(g["a"]), np.ravel(g["b"])])
        f, r = flat(gf), flat(gr)
        d = f @ r
        assert d < 0
        pf, pr, cos = self.variant(project_gradients)(jax.tree.map(jnp.asarray, gf), jax.tree.map(jnp.asarray, gr))
        np.testing.assert_allclose(flat(pf), f - d / (r @ r) * r, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(flat(pr), r - d / (f @ f) * f, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(flat(pf) @ r, 0.0, atol=1e-5)
        np.testing.assert_allclose(cos, d / np.sqrt((f @ f) * (r @ r)), rtol=1e-5)
        # agreeing gradients are left alone
        pf2, pr2, _ = self.variant(project_gradients)(jax.tree.map(jnp.asarray, gf), jax.tree.map(jnp.asarray, gf))
        np.testing.assert_allclose(flat(pf2), f, rtol=1e-6)


def cvae_data(n=12):
    """Training data of the tiny CVAE: 6 features in [0, 1], labels 0, 1, 2, 0, 1, 2, ..."""
    return jax.random.uniform(jax.random.key(7), (n, 6)), jnp.arange(n) % NC


pytestmark = pytest.mark.xdist_group("amnesia_method")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def sa_setup():
    """One configured unlearner (compiled once for the whole module) and its state on the tiny CVAE."""
    module, params = tiny()
    data = cvae_data()
    un = selective_amnesia(module, num_steps=12, batch_size=16, num_fisher_samples=20, fisher_chunk_size=8,
                           optimizer=optax.adam(1e-2), progress=False)
    return module, params, data, un, un.init(params, data, key=jax.random.key(0))


def test_unlearner_forgets_sequentially_and_keeps_theta_star(sa_setup):
    module, params, (x, y), un, state = sa_setup
    assert isinstance(state, SAState) and not np.asarray(state.forgotten).any()
    p1, state, info = un.update(params, class_request(y, 1), state, key=jax.random.key(1))
    assert isinstance(info, SAInfo) and isinstance(info.total, jax.Array)
    assert np.asarray(state.forgotten).tolist() == [False, True, False]
    np.testing.assert_array_equal(state.store.alive, np.asarray(y) != 1)
    assert info.total.shape == (12,) and np.all(np.isnan(info.cosine))
    # the loss falls: the surrogate (noise) term is what the optimiser pushes down
    assert info.forget[-3:].mean() < info.forget[:3].mean()
    p2, state, _ = un.update(p1, class_request(y, 0), state, key=jax.random.key(2))
    assert np.asarray(state.forgotten).tolist() == [True, True, False]
    np.testing.assert_array_equal(state.store.alive, np.asarray(y) == 2)
    chex.assert_trees_all_equal(state.params_star, params)
    with pytest.raises(ValueError, match="all 3 classes"):
        un.update(p2, class_request(y, 2), state, key=jax.random.key(3))


def test_init_fisher_is_the_configured_fisher_compiled_once(sa_setup):
    module, params, _, _, state = sa_setup
    fisher = make_sa_fisher(module, num_samples=20, chunk_size=8)
    chex.assert_trees_all_close(state.fisher, fisher(params, jax.random.key(0)), rtol=1e-6)
    assert ref.compilations(lambda: fisher(params, jax.random.key(4))) == 0  # the configuration's one program


def test_a_request_forgets_the_classes_of_its_examples(sa_setup):
    _, params, (_, y), un, state = sa_setup
    _, after, _ = un.update(params, jnp.array([3, 5]), state, key=jax.random.key(1))  # labels 0 and 2
    assert np.asarray(after.forgotten).tolist() == [True, False, True]
    np.testing.assert_array_equal(class_request(y, [0, 2]), np.flatnonzero(np.isin(np.asarray(y), [0, 2])))
    with pytest.raises(ValueError, match="nothing to forget"):
        class_request(y, 5)


@pytest.mark.parametrize("jit", [False, True])
def test_forgotten_index_again_or_every_class_raises_value_error(sa_setup, jit):
    _, params, (_, y), un, state = sa_setup
    p1, state, _ = un.update(params, class_request(y, 1), state, key=jax.random.key(1))
    update = ju.jit(un.update) if jit else un.update
    with pytest.raises(ValueError, match="forgotten by an earlier request"):
        update(p1, jnp.array([0, 1]), state, key=jax.random.key(2))
    with pytest.raises(ValueError, match="in \\[0, N\\)"):
        update(p1, jnp.array([2, 99]), state, key=jax.random.key(2))
    with pytest.raises(ValueError, match="all 3 classes"):
        update(p1, jnp.array([0, 2]), state, key=jax.random.key(2))  # classes 0 and 2 join 1: none left


def test_init_checks_data_and_key(sa_setup):
    module, params, (x, y), un, _ = sa_setup
    with pytest.raises(ValueError, match="labels"):
        un.init(params, (x, y + 1), key=jax.random.key(0), fisher=params)
    with pytest.raises(ValueError, match="x_dim"):
        un.init(params, (x[:, :4], y), key=jax.random.key(0), fisher=params)
    with pytest.raises(TypeError, match="key"):
        un.init(params, (x, y), key=None)
    with pytest.raises(ValueError, match="fisher"):
        un.init(params, (x, y), key=jax.random.key(0), fisher={"wrong": jnp.zeros(2)})


def test_projection_variants_run_and_bad_config_raises():
    module, params = tiny()
    data = cvae_data()
    fisher = jax.tree.map(jnp.ones_like, params)
    key = jax.random.key(1)
    # the alternating variant (the symmetric one feeds the sum of the same projections: TestProjection)
    un = selective_amnesia(module, num_steps=4, batch_size=8, variant="alternating_projection", progress=False)
    state = un.init(params, data, key=key, fisher=fisher)
    p, _, info = un.update(params, class_request(data[1], 2), state, key=key)
    assert np.all(np.isfinite(info.cosine)) and np.all(np.abs(info.cosine) <= 1.0 + 1e-5)
    assert np.all(np.isfinite(info.grad_norm)) and not np.allclose(p["fc6"]["bias"], params["fc6"]["bias"])
    with pytest.raises(ValueError, match="variant"):
        selective_amnesia(module, variant="pcgrad")
    with pytest.raises(ValueError, match="lmbda"):
        selective_amnesia(module, lmbda=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        selective_amnesia(module, num_steps=-1)
