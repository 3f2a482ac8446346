"""jaxunlearn: machine unlearning in JAX.

Layers, imports pointing downwards only: ``curvature`` (HVPs, inverse-HVPs,
Fisher diagonals), ``data``/``models``/``train`` (the testbed), ``metrics``,
``methods`` (one module per unlearning method), ``experiments`` (wiring) and
the ``jaxunlearn`` console command.
"""

from jaxunlearn import curvature

__version__ = "0.1.0"
__all__ = ["curvature", "__version__"]
