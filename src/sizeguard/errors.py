"""The exception tree.

Invalid input is a programming or data error and raises; a business "no" is never an exception
but a skipped :class:`~sizeguard.core.decision.Decision` with reason codes.
"""

from __future__ import annotations

from typing import Any


class SizeguardError(Exception):
    """Base of every error sizeguard raises on purpose."""


class InvalidInput(SizeguardError, ValueError):
    """A value is unusable: the message names the field, the value and why."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


class UnknownSymbol(InvalidInput, KeyError):
    """The symbol is not in the loaded markets."""

    def __init__(self, symbol: str, suggestions: tuple[str, ...] = ()) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__("symbol", symbol, f"unknown symbol{hint}")
        self.suggestions = suggestions

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return ValueError.__str__(self)


class PolicyError(InvalidInput):
    """A policy file or setting has a bad key or value."""
