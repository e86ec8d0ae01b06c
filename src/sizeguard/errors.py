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


class StoreError(SizeguardError):
    """The state store failed: it cannot be opened, migrated, or a write did not commit."""


class ExchangeError(SizeguardError):
    """An exchange (paper or live) refused or failed a request. ``retryable`` says whether the
    same request may succeed if sent again later (rate limits, network trouble)."""

    retryable = False

    def __init__(self, message: str, *, exchange: str = "", symbol: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.exchange = exchange
        self.symbol = symbol
        self.code = code


class InsufficientFunds(ExchangeError):
    """Not enough margin or balance for the order."""


class InvalidOrder(ExchangeError):
    """The exchange's rules refuse the order (step, minimum, leverage, ...).

    ``rule`` names the rule ("step", "min_amount", "min_cost", "max_amount", "leverage",
    "symbol", "price"); ``minimum`` is the minimum the exchange named (or implied), when the rule
    is a minimum, so callers can learn it.
    """

    def __init__(self, message: str, *, exchange: str = "", symbol: str | None = None,
                 code: str | None = None, rule: str | None = None,
                 minimum: float | None = None) -> None:
        super().__init__(message, exchange=exchange, symbol=symbol, code=code)
        self.rule = rule
        self.minimum = minimum


class RateLimited(ExchangeError):
    """The exchange throttled us; retry after a pause."""

    retryable = True


class NetworkError(ExchangeError):
    """The request did not get a usable answer (timeout, connection, 5xx); retry."""

    retryable = True


class DuplicateOrder(ExchangeError):
    """An order with this client order id already exists."""
