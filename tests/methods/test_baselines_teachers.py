"""Bad Teacher and SCRUB: teachers frozen in init, students pulled to the incompetent teacher / pushed off the teacher."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _baselines_testbed import NUM_CLASSES, REQUEST, acc, init_fn, logits_fn, train_data, trained_setup

from jaxunlearn.methods.bad_teacher import bad_teacher
from jaxunlearn.methods.scrub import SUBCLASS_RANDOM_WEIGHTS, scrub, scrub_losses
from jaxunlearn.train import distill_kl, kl_to_target


def kl_from(target_logits, params, x, t=1.0):
    return float(kl_to_target(logits_fn(params, x), jax.nn.softmax(target_logits / t), temperature=t))


def test_bad_teacher_pulls_the_forget_set_to_the_incompetent_teacher():
    params, forget, retain, _ = trained_setup()
    un = bad_teacher(logits_fn, init_fn, optax.adam(3e-3), num_epochs=3, batch_size=48)
    state = un.init(params, train_data(), key=jax.random.key(0))
    # init froze the competent teacher's logits on the data and drew the incompetent teacher from init_fn(key)
    np.testing.assert_allclose(state.extra.teacher_logits, logits_fn(params, train_data()[0]), rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 state.extra.incompetent_params, init_fn(jax.random.key(0)))
    new, _, _ = un.update(params, REQUEST, state, key=jax.random.key(1))
    bad = logits_fn(state.extra.incompetent_params, forget[0])
    assert kl_from(bad, new, forget[0]) < 0.5 * kl_from(bad, params, forget[0])
    assert acc(new, forget) < 0.5 and acc(new, retain) > 0.9


def test_bad_teacher_mean_reduction_is_batchmean_over_num_classes():
    """The reference's F.kl_div 'mean' divides the KL by C: with plain SGD that is lr / C."""
    params, forget, retain, _ = trained_setup()
    runs = []
    for reduction, lr in (("mean", 0.5), ("batchmean", 0.5 / NUM_CLASSES)):
        un = bad_teacher(logits_fn, init_fn, optax.sgd(lr), retain_fraction=1 / 3, batch_size=48, kl_reduction=reduction)
        state = un.init(params, train_data(), key=jax.random.key(0))
        runs.append(un.update(params, REQUEST, state, key=jax.random.key(1))[0])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *runs)
    assert not np.allclose(runs[0]["head"]["w"], params["head"]["w"])


def test_scrub_losses_match_their_formulas():
    params, forget, retain, _ = trained_setup()
    max_loss, min_loss = scrub_losses(logits_fn, alpha=0.3, gamma=0.7, temperature=4.0)
    teacher = logits_fn(init_fn(jax.random.key(5)), retain[0])
    z = np.asarray(logits_fn(params, retain[0]), np.float64)
    ce = np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(len(z)), retain[1]])
    d = float(distill_kl(jnp.asarray(z), teacher, 4.0))
    np.testing.assert_allclose(min_loss(params, (*retain, teacher)), 0.7 * ce + 0.3 * d, rtol=1e-4)
    np.testing.assert_allclose(max_loss(params, (retain[0], teacher)), -d, rtol=1e-5)


def test_scrub_max_steps_push_the_student_off_the_teacher_on_the_forget_set():
    params, forget, retain, _ = trained_setup()
    teacher_forget = logits_fn(params, forget[0])
    d = {}
    for msteps in (0, 2):
        un = scrub(logits_fn, optax.sgd(0.05, momentum=0.9), num_epochs=2, msteps=msteps, batch_size=144,
                   forget_batch_size=48, **SUBCLASS_RANDOM_WEIGHTS)
        new, _, _ = un.update(params, REQUEST, un.init(params, train_data(), key=jax.random.key(0)),
                              key=jax.random.key(0))
        d[msteps] = float(distill_kl(logits_fn(new, forget[0]), teacher_forget))
        assert acc(new, retain) > 0.9
    assert d[2] > 2.0 * d[0] and d[2] > 0.1, d


def test_scrub_zero_epochs_is_identity_and_errors():
    params, *_ = trained_setup()
    un = scrub(logits_fn, num_epochs=0)
    new, _, info = un.update(params, REQUEST, un.init(params, train_data(), key=jax.random.key(0)),
                             key=jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, new, params)
    assert info.loss.shape == (0,)
    with pytest.raises(ValueError, match="temperature"):
        scrub(logits_fn, temperature=0.0)
