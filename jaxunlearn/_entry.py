"""The ``jaxunlearn`` console command: what must be set before JAX starts, then :func:`jaxunlearn.cli.main`.

``jaxunlearn paper ... --smoke`` runs tiny data through the real programs, so
compiling them is nearly all of its time; it compiles them without XLA's
backend optimisations (:data:`SMOKE_XLA_FLAG`, about a third less compile
time on CPU). XLA reads its flags when JAX creates its first backend, which
importing the library already does (blackjax computes at import), so the flag
is set here, before any import of JAX. A user's ``XLA_FLAGS`` win: the flag is
not added when they set an optimisation level already, nor when they switch
XLA:CPU to its classic emitters (``--xla_cpu_use_fusion_emitters=false``), with
which -O0 miscompiles comparisons (seen with jax 0.10.2).
"""

from __future__ import annotations

import os
import sys

#: Added to ``XLA_FLAGS`` for ``jaxunlearn paper --smoke``.
SMOKE_XLA_FLAG = "--xla_backend_optimization_level=0"


def main(argv: list[str] | None = None) -> int:
    """Run the command (``argv`` default ``sys.argv[1:]``); see :func:`jaxunlearn.cli.main`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["paper"] and "--smoke" in argv:
        flags = os.environ.get("XLA_FLAGS", "")
        if not any(f in flags for f in ("--xla_backend_optimization_level", "--xla_cpu_use_fusion_emitters=false")):
            os.environ["XLA_FLAGS"] = f"{flags} {SMOKE_XLA_FLAG}".strip()
    from jaxunlearn.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
