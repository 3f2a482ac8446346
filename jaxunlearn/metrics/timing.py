"""Wall-clock timing of JAX work that waits for the results (JAX dispatches asynchronously).

A call like ``params = update(...)`` returns as soon as the work is queued; the
time is only meaningful once ``jax.block_until_ready`` has waited for the
outputs. :class:`Stopwatch` accumulates such times over several calls, so a
method's time can be measured *excluding* the evaluation done between calls
(the SSD repository's ``MethodTime`` includes its metrics, and its comment asks
to subtract them), and :func:`speedup` compares it with retraining.

    sw = Stopwatch()
    state = sw(unlearner.init, params, retain)           # timed, blocks on the result
    params, state = sw(unlearner.update, params, forget, state)
    acc = accuracy(...)                                  # not timed
    print(sw.total, speedup(sw.total, retrain_seconds))

or, for a block of code, ``with sw.section() as s: ...; s.wait(outputs)``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Iterator

import jax


class _Section:
    """Handle yielded by :meth:`Stopwatch.section`; ``wait(x)`` marks ``x`` to be blocked on before the clock stops."""

    def __init__(self) -> None:
        self.pending: list[Any] = []

    def wait(self, x: Any) -> Any:
        self.pending.append(x)
        return x


class Stopwatch:
    """Accumulates wall-clock seconds of timed calls; ``total`` (float) and ``laps`` (list of floats)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.laps: list[float] = []

    @property
    def total(self) -> float:
        return float(sum(self.laps))

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)``, block until its outputs are ready, add the elapsed time; return the outputs."""
        with self.section() as section:
            out = section.wait(fn(*args, **kwargs))
        return out

    @contextlib.contextmanager
    def section(self) -> Iterator[_Section]:
        """Time a ``with`` block; outputs passed to the yielded handle's ``wait`` are blocked on at exit."""
        handle = _Section()
        start = self.clock()
        try:
            yield handle
        finally:
            jax.block_until_ready(handle.pending)
            self.laps.append(self.clock() - start)

    def reset(self) -> None:
        self.laps.clear()


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``, the time measured until the outputs are ready."""
    sw = Stopwatch()
    out = sw(fn, *args, **kwargs)
    return out, sw.total


def speedup(method_seconds: float, retrain_seconds: float) -> float:
    """``retrain_seconds / method_seconds``: how many times faster than retraining (``inf`` for a zero-time method)."""
    if method_seconds < 0 or retrain_seconds < 0 or math.isnan(method_seconds) or math.isnan(retrain_seconds):
        raise ValueError(
            f"times must be non-negative numbers of seconds, got method_seconds={method_seconds}, "
            f"retrain_seconds={retrain_seconds}."
        )
    return math.inf if method_seconds == 0 else retrain_seconds / method_seconds
