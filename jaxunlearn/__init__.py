"""jaxunlearn: machine unlearning in JAX.

Layers, imports pointing downwards only: ``curvature`` (HVPs, inverse-HVPs,
Fisher diagonals), ``data``/``models``/``train`` (the testbed), ``metrics``,
``methods`` (one module per unlearning method), ``experiments`` (wiring) and
the ``jaxunlearn`` console command. Subpackages are imported on first use
(``ju.methods``), so ``import jaxunlearn`` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "amnesia", "bayes", "curvature", "data", "experiments", "io", "loops", "methods", "metrics", "models",
    "sharding", "train",
)
_ERRORS = ("jit", "keep_errors")
__all__ = [*_SUBPACKAGES, *_ERRORS, "__version__"]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"jaxunlearn.{name}")
    if name in _ERRORS:  # jaxunlearn.jit / jaxunlearn.keep_errors: jit that keeps our error classes
        return getattr(importlib.import_module("jaxunlearn._validation"), name)
    raise AttributeError(f"module 'jaxunlearn' has no attribute {name!r}")
