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
    "amnesia", "bayes", "curvature", "data", "experiments", "io", "methods", "metrics", "models", "train",
)
__all__ = [*_SUBPACKAGES, "__version__"]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"jaxunlearn.{name}")
    raise AttributeError(f"module 'jaxunlearn' has no attribute {name!r}")
