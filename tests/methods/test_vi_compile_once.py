"""Compile once: the Bayesian entry points users call in a loop compile nothing on a second call of the same shapes.

Counted with the contract battery's ``CompileCounter`` (XLA backend compilations, ``jax.monitoring``):
``vi_forgetting.vi_influence``, ``bayes.fit_vi``, ``bayes.run_chain``, the samplers' ``step`` and the
minibatch draws (the battery itself checks ``vi_forgetting``'s un-jitted ``update``). The second calls of ``fit_vi`` and
``run_chain`` are also replayed by a numpy loop on the documented ``shuffled_batches`` and keys.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.util import generate_gaussian_noise
from conftest import CompileCounter

from jaxunlearn import bayes
from jaxunlearn.data.minibatch import draw_batches, shuffled_batches
from jaxunlearn.methods.vi_forgetting import vi_influence

N, B, T, LR = 24, 4, 9, 1e-3
X = jnp.arange(N, dtype=jnp.float32)[:, None] / N


def compiles(fn):
    """The value of ``fn()`` (run to completion) and the number of compilations it took."""
    CompileCounter.count, CompileCounter.active = 0, True
    try:
        out = jax.block_until_ready(fn())
    finally:
        CompileCounter.active = False
    return out, CompileCounter.count


def grad_energy(theta, batch, n):
    """d/dtheta of F_hat = theta^2 / 2 + n mean_b (x_b - theta)^2 / 2, by hand."""
    return theta + n * (theta - batch.mean())


def test_second_calls_compile_nothing_and_replay_the_documented_draws():
    energy = bayes.Energy(lambda t: jnp.sum(t**2) / 2, lambda t, x, key: 0.5 * jnp.sum((x - t) ** 2, axis=1))
    alive = jnp.arange(N) % 5 != 0
    n, x = int(alive.sum()), np.asarray(X)[:, 0]
    theta = jnp.zeros(1)
    sgld, sghmc = bayes.sgld(energy.energy), bayes.sghmc(energy.energy, alpha=0.5)
    opt = optax.sgd(LR)
    calls = {
        "vi_influence": lambda k: vi_influence(energy, theta, X[:2], X, jnp.ones((4, B), jnp.int32), 20, k,
                                               scaling0=0.1, bbp_T=2).ihvp,
        "fit_vi": lambda k: bayes.fit_vi(energy, theta, X, optimizer=opt, num_steps=T, batch_size=B, key=k,
                                         alive=alive),
        "run_chain": lambda k: bayes.run_chain(sgld, k, sgld.init(theta), X, lr=LR, num_steps=T, batch_size=B,
                                               schedule=bayes.power_decay(-0.5), alive=alive),
        "sgld.step": lambda k: sgld.step(k, sgld.init(theta), X[:B], N, LR).position,
        "sghmc.step": lambda k: sghmc.step(k, sghmc.init(theta), X[:B], N, LR, 0.5).position,
        "draw_batches": lambda k: draw_batches(k, alive, T, B),
        "shuffled_batches": lambda k: shuffled_batches(k, alive, T, B),
    }
    second = {}
    for name, call in calls.items():
        call(jax.random.key(1))
        second[name], count = compiles(functools.partial(call, jax.random.key(2)))
        assert count == 0, f"{name}: the second call compiled {count} time(s)"

    def again(rate):  # a new schedule object is no new program either: schedules are evaluated outside it
        return bayes.run_chain(sgld, jax.random.key(3), sgld.init(theta), X, lr=LR, num_steps=T, batch_size=B,
                               schedule=bayes.step_decay(rate, 3), alive=~alive)

    again(0.5)
    assert compiles(functools.partial(again, 0.25))[1] == 0

    # replay key 2: batches = shuffled_batches(k_batches), per-step keys from k_steps (the documented split)
    k_batches, k_steps = jax.random.split(jax.random.key(2))
    batches = x[np.asarray(shuffled_batches(k_batches, alive, T, B))]
    th, losses = 0.0, []
    for b in batches:  # plain SGD on F_hat
        losses.append(th**2 / 2 + n * np.mean((b - th) ** 2) / 2)
        th -= LR * grad_energy(th, b, n)
    np.testing.assert_allclose(second["fit_vi"].losses, losses, rtol=1e-5)
    np.testing.assert_allclose(second["fit_vi"].params[0], th, rtol=1e-5)
    chain_state, trace = second["run_chain"]
    th, keys = jnp.zeros(1), jax.random.split(k_steps, T)
    etas = LR * np.arange(1, T + 1, dtype=np.float64) ** -0.5
    for t, b in enumerate(batches):  # theta - eta grad F_hat + sqrt(2 eta) xi, as the seeds
        th = th - etas[t] * grad_energy(th, b, n) + np.sqrt(2 * etas[t]) * generate_gaussian_noise(keys[t], th)
    np.testing.assert_allclose(trace.step_sizes, etas, rtol=1e-5)
    np.testing.assert_allclose(chain_state.position, th, rtol=1e-4, atol=1e-6)
    assert int(chain_state.count) == T
