"""Independent numpy references for the Selective Amnesia tests: the CVAE forward pass and its loss; and a
compilation count (the contract battery's ``CompileCounter`` lives in ``tests/methods``, not importable here)."""

import jax
import numpy as np


def compilations(fn) -> int:
    """How many XLA backend compilations running ``fn()`` to completion takes (``jax.monitoring`` events)."""
    events = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.block_until_ready(fn())
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(events)


def _dense(p, x):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def relu(x):
    return np.maximum(x, 0.0)


def cvae_loss_numpy(params, x, cond, eps):
    """Summed BCE(sigmoid(logits), x) + KL by hand, float64, with the BCE in its textbook log form."""
    x, cond, eps = (np.asarray(a, np.float64) for a in (x, cond, eps))
    h = relu(_dense(params["fc1"], np.concatenate([x, cond], 1)))
    h = relu(_dense(params["fc2"], h))
    mu, logvar = _dense(params["fc31"], h), _dense(params["fc32"], h)
    z = mu + np.exp(0.5 * logvar) * eps
    h = relu(_dense(params["fc4"], np.concatenate([z, cond], 1)))
    h = relu(_dense(params["fc5"], h))
    x_hat = 1.0 / (1.0 + np.exp(-_dense(params["fc6"], h)))
    bce = -np.sum(x * np.log(x_hat) + (1 - x) * np.log(1 - x_hat))
    kl = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar))
    return bce, kl


def decode_numpy(params, z, cond):
    h = relu(_dense(params["fc4"], np.concatenate([np.asarray(z, np.float64), np.asarray(cond, np.float64)], 1)))
    h = relu(_dense(params["fc5"], h))
    return 1.0 / (1.0 + np.exp(-_dense(params["fc6"], h)))
