"""A process-wide choice among named options, set for good or for a block (the loop and convolution policies).

Held in a ``contextvars.ContextVar``, so a ``with`` block in one thread or task leaves the others unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator


class Policy:
    """One policy: ``get()``, ``set(choice)`` (returns the previous one), ``with use(choice): ...``.

    Args:
      name: what the policy is called in error messages (``"loop policy"``).
      choices: the allowed values; the first is the default.
    """

    def __init__(self, name: str, choices: tuple[str, ...]):
        self.name, self.choices = name, choices
        self._var: contextvars.ContextVar[str] = contextvars.ContextVar(f"jaxunlearn {name}", default=choices[0])

    def check(self, choice: Any) -> str:
        """``choice`` if it is one of :attr:`choices`, else ``ValueError``."""
        if choice not in self.choices:
            raise ValueError(f"policy must be one of {self.choices}, got {choice!r} (the {self.name}).")
        return choice

    def get(self) -> str:
        return self._var.get()

    def set(self, choice: str) -> str:
        previous = self._var.get()
        self._var.set(self.check(choice))
        return previous

    @contextlib.contextmanager
    def use(self, choice: str) -> Iterator[None]:
        token = self._var.set(self.check(choice))
        try:
            yield
        finally:
            self._var.reset(token)
