"""Shared test fixtures: small exact problems for the curvature routines."""

import importlib.metadata
import os
import shutil
import tempfile

import pytest

# Multi-device code is tested on 8 fake CPU devices; must be set before jax initialises. Compiling is most of the
# suite's time (test_contract.py and test_curvature_products.py at -O0: 121 of their 168 s), so the suite compiles
# with XLA:CPU's classic loop emitters instead of its MLIR fusion emitters and with LLVM's -O1: the same HLO passes
# and operations (float32 results may differ in the last bits: FMA contraction, vectorised reductions). Not -O0:
# with the classic emitters it miscompiles comparisons, float32 and float64 (jnp.searchsorted in a larger program
# gave wrong counts; seen in jax 0.10.2).
# Eigen's matrix and convolution kernels run on one thread per process: the suite's two workers already keep both
# cores busy (whole suite 604 s -> 559 s here).
# LLVM's code generation is most of each compilation (a ResNet gradient: 40 ms of HLO passes, 650 ms of LLVM), so
# XLA:CPU's backend options also turn off LLVM's loop unrolling and SLP vectorizer and optimise for size: compile
# time only, no change to the operations or their order (test_contract.py with test_curvature_products.py: 173 ->
# 148 s of CPU time, 94 -> 81 s wall).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=1 "
                      "--xla_cpu_use_fusion_emitters=false --xla_cpu_multi_thread_eigen=false "
                      "--xla_backend_extra_options=xla_cpu_disable_loop_unrolling,xla_cpu_disable_slp_vectorizer,"
                      "xla_cpu_optimize_for_size")

# One persistent compilation cache for the whole run, shared by the xdist workers and the subprocesses (the CLI,
# the notebooks, the README examples): a program compiled by one process is loaded by the next. The controller
# creates it (workers and subprocesses inherit the variable) and removes it at the end (pytest_unconfigure).
# Every program is cached, however short its compile: each subprocess otherwise recompiles the same hundreds of
# small eager operations (whole suite, same code, same day: 498 and 500 s with 0, 563 s with the 0.2 s threshold
# used before; user CPU 15.2 against 17.0 min).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxunlearn-tests-xla-cache-")
    os.environ["JAXUNLEARN_TESTS_OWN_XLA_CACHE"] = str(os.getpid())
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402  (after XLA_FLAGS)


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


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def pytest_configure(config):
    """Refuse ``--dist loadgroup`` where it ignores the ``xdist_group`` marks (pytest 9.2 with pytest-xdist up to
    3.8: pytest-dev/pytest-xdist#1386): every module fixture would run once per worker, silently."""
    if getattr(config.option, "dist", None) != "loadgroup":
        return
    xdist = importlib.metadata.version("pytest-xdist")
    if _release(pytest.__version__) >= (9, 2) and _release(xdist) <= (3, 8):
        raise pytest.UsageError(f"pytest {pytest.__version__} with pytest-xdist {xdist} ignores xdist_group marks "
                                "(pytest-dev/pytest-xdist#1386): reinstall the test extra, pip install -e '.[test]', "
                                "which asks for pytest<9.2.")


def pytest_unconfigure(config):
    """The process that created the run's compilation cache removes it."""
    if os.environ.get("JAXUNLEARN_TESTS_OWN_XLA_CACHE") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
