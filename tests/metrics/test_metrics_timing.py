"""Stopwatch: blocks on JAX outputs, accumulates only timed sections; speed-up ratio."""

import math

import jax
import jax.numpy as jnp
import pytest

from jaxunlearn.metrics import Stopwatch, speedup, timed


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Ready:
    """Stands in for a jax.Array: records that block_until_ready waited on it."""

    def __init__(self):
        self.blocked = False

    def block_until_ready(self):
        self.blocked = True
        return self


def test_stopwatch_accumulates_sections_and_blocks_on_outputs():
    clock = _FakeClock()
    sw = Stopwatch(clock)

    def work(seconds):
        clock.now += seconds
        return _Ready()

    out = sw(work, 2.0)
    assert out.blocked
    clock.now += 100.0  # evaluation between method calls is not timed
    with sw.section() as section:
        second = section.wait(work(0.5))
    assert second.blocked
    assert sw.laps == [2.0, 0.5] and sw.total == 2.5
    sw.reset()
    assert sw.total == 0.0


def test_timed_returns_jax_result():
    out, seconds = timed(jax.jit(lambda x: x * 2), jnp.arange(3.0))
    assert list(out) == [0.0, 2.0, 4.0] and seconds >= 0.0


def test_speedup():
    assert speedup(2.0, 10.0) == 5.0
    assert speedup(0.0, 1.0) == math.inf
    with pytest.raises(ValueError, match="non-negative"):
        speedup(-1.0, 1.0)
