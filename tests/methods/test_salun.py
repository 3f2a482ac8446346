"""SalUn: the mask is the top fraction of |forget gradient|; only masked weights move (weight decay included)."""

import jax
import numpy as np
from _baselines_testbed import NUM_CLASSES, REQUEST, loss_fn, train_data, trained_setup

from jaxunlearn.methods.salun import saliency_mask, salun
from jaxunlearn.train.optim import torch_sgd

GRAD = jax.jit(jax.grad(loss_fn))


def top_fraction(grad, fraction):
    """numpy: the weights whose |gradient| reaches the floor(fraction * n)-th largest value (checked tie-free)."""
    flat = np.sort(np.concatenate([np.abs(g).ravel() for g in jax.tree.leaves(grad)]))[::-1]
    count = int(fraction * flat.size)
    assert flat[count] < flat[count - 1]  # no tie at the threshold: the top set is unique
    return jax.tree.map(lambda g: np.abs(g) >= flat[count - 1], grad), count


def test_mask_is_the_top_fraction_of_the_absolute_forget_gradient():
    params, forget, _, _ = trained_setup()
    mask = jax.jit(lambda p, f: saliency_mask(loss_fn, p, f, 0.3, chunk_size=20))(params, forget)  # 2 chunks + 8
    expected, count = top_fraction(GRAD(params, forget), 0.3)
    jax.tree.map(np.testing.assert_array_equal, mask, expected)
    assert sum(int(m.sum()) for m in jax.tree.leaves(mask)) == count


def test_random_label_steps_move_only_the_salient_weights():
    params, forget, retain, _ = trained_setup()
    lr, wd, key = 0.1, 0.01, jax.random.key(4)
    un = salun(loss_fn, torch_sgd(lr, weight_decay=wd), num_classes=NUM_CLASSES, fraction=0.5, num_epochs=1,
               batch_size=480)
    new, _, info = un.update(params, REQUEST, un.init(params, train_data(), key=key), key=key)
    mask, count = top_fraction(GRAD(params, forget), 0.5)
    labels = jax.jit(lambda k: jax.random.randint(
        jax.random.split(jax.random.fold_in(k, 0), 3)[0], (48,), 0, NUM_CLASSES))(key)

    def masked_step(p, batch):  # coupled weight decay, then the mask: unselected weights do not decay
        return jax.tree.map(lambda w, g, m: np.asarray(w) - lr * m * (np.asarray(g) + wd * np.asarray(w)),
                            p, GRAD(p, batch), mask)

    expected = masked_step(masked_step(params, (forget[0], labels)), retain)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new, expected)
    jax.tree.map(lambda a, b, m: np.testing.assert_array_equal(np.asarray(a)[~m], np.asarray(b)[~m]), new, params, mask)
    assert float(info.selected) == count / sum(a.size for a in jax.tree.leaves(params))
