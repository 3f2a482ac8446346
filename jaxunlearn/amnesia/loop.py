"""A jitted training loop: ``lax.scan`` over steps in chunks, with a tqdm bar between chunks.

``step(carry, key) -> (carry, log)`` is any pure step (an optimiser update,
an attack step). :func:`scan_loop` splits ``key`` into one key per step, runs
``chunk_size`` steps at a time inside one compiled ``lax.scan`` and stacks the
per-step logs, so the Python loop only runs ``ceil(num_steps / chunk_size)``
times (the last, shorter chunk compiles once more). Compilations are cached
by JAX on the identity of ``step``: pass the same function object to reuse them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

StepFn = Callable[[Any, jax.Array], tuple[Any, Any]]


@functools.partial(jax.jit, static_argnums=0)
def _run_chunk(step: StepFn, carry: Any, keys: jax.Array) -> tuple[Any, Any]:
    return jax.lax.scan(step, carry, keys)


def scan_loop(
    step: StepFn,
    carry: Any,
    num_steps: int,
    *,
    key: jax.Array,
    chunk_size: int = 500,
    progress: bool = True,
    desc: str = "train",
    postfix: Callable[[Any], dict] | None = None,
) -> tuple[Any, Any]:
    """Run ``num_steps`` of ``step``; returns ``(carry, logs)`` with logs stacked over steps (numpy, leading axis num_steps).

    Args:
      step: pure ``(carry, key) -> (carry, log)``; ``log`` a pytree of scalars.
      carry: initial carry (parameters, optimiser state, ...).
      num_steps: number of steps, ``>= 0``.
      key: PRNG key, split into ``num_steps`` keys.
      chunk_size: steps per compiled scan.
      progress: show a tqdm bar (updated between chunks).
      postfix: maps the last step's log to the bar's postfix.
    """
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative int, got {num_steps!r}.")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    num_steps = int(num_steps)
    if num_steps == 0:
        return carry, None
    run_chunk = functools.partial(_run_chunk, step)
    keys = jax.random.split(key, num_steps)
    logs = []
    with tqdm(total=num_steps, desc=desc, disable=not progress, leave=False) as bar:
        for start in range(0, num_steps, chunk_size):
            carry, log = run_chunk(carry, keys[start : start + chunk_size])
            log = jax.tree.map(np.asarray, log)
            logs.append(log)
            bar.update(min(chunk_size, num_steps - start))
            if postfix is not None:
                bar.set_postfix(postfix(jax.tree.map(lambda a: a[-1], log)))
    return carry, jax.tree.map(lambda *a: np.concatenate(a), *logs)
