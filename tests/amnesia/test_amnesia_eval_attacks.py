"""Evaluation (8-bit quantisation, prob/entropy), training the CVAE and its judge, the attacks and the pictures;
training and the optimisation attack compile once (a second call of the same shapes compiles nothing)."""

import os

import amnesia_reference as ref

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunlearn.amnesia import (
    class_centroids, class_scores, latent_walk_attack, noisy_condition_attack, optimization_attack, quantize_8bit,
    random_latent_attack, score_samples, train_cvae, train_sa_classifier,
)
from jaxunlearn.amnesia import plots
from jaxunlearn.models.cvae import create_cvae
from jaxunlearn.models.sa_classifier import create_sa_classifier

NC = 3


def linear_judge(d=6, seed=0):
    """A fixed linear softmax classifier over flat images: log_probs(x) = log_softmax(x W + b)."""
    w = jax.random.normal(jax.random.key(seed), (d, NC))
    return lambda x: jax.nn.log_softmax(x @ w, axis=-1)


class TestScores(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_quantize_is_the_png_round_trip(self):
        x = jnp.array([0.0, 0.001, 0.00197, 0.5, 0.99999, 1.0, 1.3, -0.2])
        expected = np.clip(np.floor(np.clip(np.asarray(x), 0, 1) * 255 + 0.5), 0, 255).astype(np.uint8) / 255.0
        np.testing.assert_allclose(self.variant(quantize_8bit)(x), expected, atol=1e-7)

    def test_score_samples_against_numpy(self):
        judge = linear_judge()
        x = jax.random.uniform(jax.random.key(1), (50, 6))
        out = score_samples(judge, x, 2)
        lp = np.asarray(judge(quantize_8bit(x)), np.float64)
        p = np.exp(lp)
        np.testing.assert_allclose(out["prob"], p[:, 2].mean(), rtol=1e-5)
        np.testing.assert_allclose(out["entropy"], (-(p * lp).sum(1)).mean(), rtol=1e-5)
        np.testing.assert_allclose(out["accuracy"], (lp.argmax(1) == 2).mean())

    def test_uniform_classifier_has_max_entropy(self):
        out = score_samples(lambda x: jnp.full((x.shape[0], NC), -np.log(NC)), jnp.zeros((4, 6)), 0)
        np.testing.assert_allclose([out["prob"], out["entropy"]], [1 / NC, np.log(NC)], rtol=1e-6)


def test_training_lowers_the_loss_and_checks_labels():
    module, params = create_cvae(jax.random.key(0), x_dim=64, num_classes=NC, hidden=(16, 8), z_dim=2)
    x = jax.random.uniform(jax.random.key(1), (30, 8, 8, 1))
    y = jnp.arange(30) % NC
    key, opt = jax.random.key(2), optax.adam(1e-2)
    trained, losses = train_cvae(module, params, x, y, key=key, num_steps=40, batch_size=8, optimizer=opt,
                                 progress=True)
    assert isinstance(losses, np.ndarray) and losses.shape == (40,)
    assert losses[-5:].mean() < losses[:5].mean()
    assert jax.tree.structure(trained) == jax.tree.structure(params)
    assert ref.compilations(lambda: train_cvae(module, trained, x, y, key=jax.random.key(3), num_steps=40,
                                               batch_size=8, optimizer=opt, progress=True)) == 0
    with pytest.raises(ValueError, match="y hold values"):
        train_cvae(module, params, x, y + 1, key=key, num_steps=1)
    clf, variables = create_sa_classifier(jax.random.key(3), input_shape=(8, 8, 1))
    trained, clf_losses = train_sa_classifier(clf, variables, x, y, key=key, num_steps=30, batch_size=10,
                                              decay_every=10, progress=False)
    assert clf_losses.shape == (30,) and np.all(np.isfinite(clf_losses))
    assert set(trained) == {"params", "batch_stats"}
    assert not np.allclose(trained["batch_stats"]["bn1"]["mean"], variables["batch_stats"]["bn1"]["mean"])
    assert ref.compilations(lambda: train_sa_classifier(clf, trained, x, y, key=jax.random.key(3), num_steps=30,
                                                        batch_size=10, decay_every=10, progress=False)) == 0
    with pytest.raises(ValueError, match="y hold values"):
        train_sa_classifier(clf, variables, x, y - 1, key=key, num_steps=1)


def test_attacks_run_and_optimisation_raises_the_target_probability(tmp_path):
    module, params = create_cvae(jax.random.key(0), x_dim=6, num_classes=NC, hidden=(8, 8), z_dim=2)
    judge = linear_judge()
    key = jax.random.key(2)
    rl = random_latent_attack(module, params, judge, key, 1, num_samples=20)
    assert 0 <= rl["prob"] <= rl["max_prob"] <= 1
    x = jax.random.uniform(key, (12, 6))
    y = np.arange(12) % NC
    nc = noisy_condition_attack(module, params, params, judge, key, x[y == 1], 1, sigmas=(0.0, 0.5))
    assert set(nc) == {0.0, 0.5}
    cents = class_centroids(module, params, x, y)
    assert cents.shape == (NC, 2)
    walk = latent_walk_attack(module, params, cents, judge, 1, 0, 2, num_points=5)
    assert walk["triangular"]["images"].shape == (9, 6) and walk["double"]["prob"].shape == (5,)
    before = optimization_attack(module, params, judge, key, 1, num_restarts=8, num_steps=0)
    after = optimization_attack(module, params, judge, key, 1, num_restarts=8, num_steps=60, learning_rate=0.1,
                                judge_log_probs_fn=linear_judge(seed=5))
    assert after["prob"] > before["prob"] and "judge_prob" in after
    assert ref.compilations(lambda: optimization_attack(module, params, judge, jax.random.key(3), 1, num_restarts=8,
                                                        num_steps=60, learning_rate=0.1)) == 0
    masked = optimization_attack(module, params, judge, key, 1, num_restarts=4, num_steps=0, mask_forgotten=True)
    assert masked["condition_mass"] == 0.0
    with pytest.raises(ValueError, match="forget_class"):
        random_latent_attack(module, params, judge, key, 5)
    scores = class_scores(module, params, judge, key, num_samples=10)
    assert scores.prob.shape == (NC,)
    path = plots.sample_grids([np.zeros((NC, 4, 6)), np.ones((NC, 4, 6))], ["a", "b"], (2, 3),
                              os.path.join(tmp_path, "g.png"))
    lat = plots.latent_map({"a": np.asarray(x[:, :2]), "b": np.asarray(x[:, 2:4])}, y, os.path.join(tmp_path, "l.png"),
                           highlight=[1])
    assert os.path.getsize(path) > 0 and os.path.getsize(lat) > 0
    assert sorted(os.listdir(tmp_path)) == ["g.png", "l.png"]  # no temporary files left behind
