"""Small problems with exact references: a tiny MLP and a 2-D Gaussian-mixture energy (float64)."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np


def mlp_params(key, sizes=(3, 5, 4)):
    keys = jax.random.split(key, len(sizes) - 1)
    return {
        f"layer{i}": {
            "w": jax.random.normal(k, (a, b)) / np.sqrt(a),
            "b": 0.1 * jax.random.normal(jax.random.fold_in(k, 1), (b,)),
        }
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))
    }


def mlp_apply(params, x):
    h = x
    n = len(params)
    for i in range(n):
        layer = params[f"layer{i}"]
        h = h @ layer["w"] + layer["b"]
        if i < n - 1:
            h = jnp.tanh(h)
    return h


def mlp_loss(params, batch, weight_decay=0.1):
    x, y = batch
    logits = mlp_apply(params, x)
    ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    l2 = sum(jnp.sum(p**2) for p in jax.tree.leaves(params))
    return ce + 0.5 * weight_decay * l2


def classification_data(key, n=40, d=3, k=4):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, d)), jax.random.randint(ky, (n,), 0, k)


def gmm_energy(means, batch, prior_var=1.0):
    """-log prior + sum_i -log( (1/K) sum_k N(x_i; m_k, I) ), the MCMC GMM of the Bayesian seeds (scaled to the batch)."""
    (x,) = batch
    sq = jnp.sum((x[:, None, :] - means[None]) ** 2, axis=-1)
    log_mix = jax.scipy.special.logsumexp(-0.5 * sq, axis=1) - jnp.log(means.shape[0]) - jnp.log(2 * jnp.pi)
    return -jnp.mean(log_mix) + 0.5 * jnp.sum(means**2) / prior_var / x.shape[0]


def gmm_data(key, n=200):
    centres = jnp.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
    ks, kn = jax.random.split(key)
    idx = jax.random.randint(ks, (n,), 0, 3)
    return (centres[idx] + 0.7 * jax.random.normal(kn, (n, 2)),)


def flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def dense_hessian(loss_fn, params, batch):
    """The exact Hessian as a matrix over the flattened parameters."""
    flat_p, unravel = jax.flatten_util.ravel_pytree(params)
    return jax.jit(jax.hessian(lambda f, b: loss_fn(unravel(f), b)))(flat_p, batch), unravel
