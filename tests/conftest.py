"""Shared test fixtures: small exact problems for the curvature routines."""

import os

import pytest

# Multi-device code is tested on 8 fake CPU devices; must be set before jax initialises.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402  (after XLA_FLAGS)


#: ``JAXUNLEARN_PAPER_SMOKE=all ./run test`` runs every ``jaxunlearn paper`` setting end to end under ``--smoke``
#: (about 5 more minutes of CPU); the default suite runs one (``bif-sgld-fashion_mnist``), within its budget.
PAPER_SMOKE_ALL = os.environ.get("JAXUNLEARN_PAPER_SMOKE") == "all"


class CompileCounter:
    """Counts XLA backend compilations while active (``jax.monitoring`` duration events); tests import it
    with ``from conftest import CompileCounter``."""

    count = 0
    active = False

    @classmethod
    def listener(cls, event, duration, **kwargs):
        if cls.active and event == "/jax/core/compile/backend_compile_duration":
            cls.count += 1


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Model and row caches of the CLI go to a fresh folder: no test reads results of an earlier run."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


jax.monitoring.register_event_duration_secs_listener(CompileCounter.listener)
