"""Unlearning methods, one module each, every one an :class:`Unlearner` (init/update pair)."""

from jaxunlearn.methods.base import Unlearner, unlearn

__all__ = ["Unlearner", "unlearn"]
