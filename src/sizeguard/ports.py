"""Ports: what the trader needs from the outside world, as Protocols, and the plain data that
crosses them. Adapters (SQL stores, the paper and ccxt exchanges, market snapshots) implement
these; the trader and the entry points depend only on this module and the core.

Money is in the account's quote (settle) currency. Amounts cross as exact decimal strings, the
way :class:`~sizeguard.core.decision.Decision` gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sizeguard.core.account import Account, Position
from sizeguard.core.decision import Decision
from sizeguard.core.market import MarketBook

# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    total: float  # wallet balance (+ unrealised PnL where the exchange reports equity)
    free: float
    used: float = 0.0


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """A position as an exchange reports it."""

    symbol: str
    side: str  # "long" | "short"
    amount: float  # contracts (swaps) or base units (spot)
    entry_price: float
    notional: float
    margin: float
    leverage: float = 1.0
    unrealised_pnl: float = 0.0


@dataclass(frozen=True, slots=True)
class OrderResult:
    id: str
    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    kind: str  # "entry" | "stop" | "take_profit" | "close"
    amount: str
    status: str  # "filled" | "open" | "canceled"
    filled: float = 0.0
    average: float | None = None
    fee: float = 0.0
    trigger_price: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredPosition:
    id: str
    account_id: str
    symbol: str
    side: str
    amount: str
    entry_price: float
    notional: float
    margin: float
    leverage: float
    stop_price: float | None
    take_profit: float | None
    client_order_id: str | None
    source: str  # "engine" (opened by sizeguard) | "exchange" (found by sync)
    opened_at: float
    status: str = "open"
    exit_price: float | None = None
    pnl: float | None = None
    closed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    account_id: str
    symbol: str
    side: str
    amount: str
    notional: float
    margin: float
    leverage: float
    client_order_id: str
    journal_id: int
    created_at: float
    expires_at: float
    status: str  # "held" | "filled" | "released" | "expired"
    release_reason: str | None = None
    entry_price: float | None = None  # the price it was decided at (None: stored before v4)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Reserved:
    """A decision as the store recorded it (:meth:`StateStore.record_decision`, or the earlier
    answer :meth:`StateStore.decided` finds).

    ``reservation`` is None for a skipped decision; ``duplicate`` is True when the client order
    id had been decided before and this is that earlier answer (nothing new was decided,
    reserved or journaled).
    """

    decision: Decision
    journal_id: int
    reservation: Reservation | None
    duplicate: bool = False
    # the decision as journaled (``decision.to_dict()``), when the store made it: an answer
    # reuses it instead of rendering the trace a second time
    data: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def accepted(self) -> bool:
        return self.decision.accepted


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    account_id: str
    at: float
    kind: str  # "decision" | an event: "order", "fill", "reject", "release", "close", "sync", ...
    symbol: str | None
    side: str | None
    status: str | None
    reasons: tuple[str, ...]
    client_order_id: str | None
    snapshot_id: str | None
    data: Mapping[str, Any]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["reasons"] = list(self.reasons)
        out["data"] = dict(self.data)
        return out


@dataclass(frozen=True, slots=True)
class RiskState:
    account_id: str
    exchange: str
    quote: str
    equity: float
    peak_equity: float
    realised_pnl_today: float
    day: str
    losing_streak: int
    symbol_stats: Mapping[str, tuple[int, int]]  # symbol -> (trades, wins)
    open_positions: int
    live_reservations: int
    margin_in_use: float
    gross_exposure: float
    halted: str | None = None  # the admin's halt reason; None: trading
    presets: tuple[str, ...] | None = None  # the admin's preset allow-list; None: the service's

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["presets"] = list(self.presets) if self.presets is not None else None
        out["symbol_stats"] = {s: {"trades": t, "wins": w, "win_rate": (w / t if t else 0.0)}
                               for s, (t, w) in self.symbol_stats.items()}
        return out


# --------------------------------------------------------------------------- ports


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class MarketSource(Protocol):
    """Where the market rules come from: a saved snapshot, the built-in examples, or live."""

    @property
    def snapshot_id(self) -> str:
        """Identifies the exact market data used (recorded with every decision)."""
        ...

    def markets(self) -> MarketBook: ...


class Exchange(Protocol):
    """An account on an exchange: the paper exchange or a live one through ccxt.

    Errors raised are sizeguard's own (:mod:`sizeguard.errors`): InsufficientFunds,
    InvalidOrder (with ``rule`` and ``minimum``), RateLimited and NetworkError (retryable).
    """

    @property
    def name(self) -> str: ...

    def balance(self) -> Balance: ...

    def positions(self) -> Sequence[ExchangePosition]: ...

    def set_margin_mode(self, symbol: str, mode: str) -> None: ...

    def set_leverage(self, symbol: str, leverage: float) -> None: ...

    def place_entry(self, symbol: str, side: str, amount: str, price: float,
                    client_order_id: str) -> OrderResult:
        """Open (or add to) a position: ``side`` is the position side, "long" or "short"."""
        ...

    def place_stop(self, symbol: str, side: str, amount: str, stop_price: float,
                   client_order_id: str) -> OrderResult:
        """A reduce-only stop-loss for the ``side`` position."""
        ...

    def place_take_profit(self, symbol: str, side: str, amount: str, price: float,
                          client_order_id: str) -> OrderResult: ...

    def close_position(self, symbol: str, side: str, amount: str, price: float | None,
                       client_order_id: str) -> OrderResult: ...

    def find_order(self, symbol: str, client_order_id: str, conditional: bool = False
                   ) -> OrderResult | None:
        """The order with this client order id, if the exchange knows it (idempotency).
        ``conditional``: a stop-loss or take-profit, which some venues keep apart."""
        ...


DecideFn = Callable[[Account], Decision]
OwnDecideFn = Callable[[Account, tuple[Position, ...]], Decision]


class Owners(Protocol):
    """Who decided what: the bots of the HTTP service (adapters/bots.py). Both calls join the
    unit of work open on the thread."""

    def own_positions(self, owner: str, account_id: str) -> tuple[Position, ...]:
        """The owner's open positions and live reservations, as the core counts them."""
        ...

    def record_owner(self, client_order_id: str, owner: str, account_id: str) -> None: ...


class UnitOfWork(Protocol):
    """One transaction over the store: ``with store.unit_of_work(account): ...; uow.commit()``.
    Every store call made inside the block (on this thread) joins it; leaving the block without
    :meth:`commit`, or by an exception, rolls all of it back. With an account id, the account
    is locked for the whole block (two units of work on one account never interleave)."""

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class StateStore(Protocol):
    """Accounts, positions, reservations, risk state, the decision journal, learned minimums."""

    @property
    def url(self) -> str: ...

    def close(self) -> None: ...

    def schema_version(self) -> int: ...

    def ensure_account(self, account_id: str, *, exchange: str, equity: float,
                       quote: str = "USDT") -> None: ...

    def set_equity(self, account_id: str, equity: float, *, peak: float | None = None) -> None:
        """The account's equity (its peak follows it up; ``peak`` sets the peak itself)."""
        ...

    def set_halt(self, account_id: str, reason: str | None) -> None:
        """Halt trading on the account (every decision skips HALTED_BY_ADMIN); None resumes."""
        ...

    def set_presets(self, account_id: str, presets: Sequence[str] | None) -> None:
        """The presets a request may name (None: only the service's own policy)."""
        ...

    def account(self, account_id: str) -> Account:
        """The core Account: equity, open positions and live reservations (both count toward
        every limit), peak equity, today's realised PnL, streak, symbol stats, learned minimums."""
        ...

    def risk_state(self, account_id: str) -> RiskState: ...

    def unit_of_work(self, account_id: str | None = None) -> UnitOfWork: ...

    def decided(self, account_id: str, client_order_id: str) -> Reserved | None:
        """The earlier answer for ``client_order_id`` (``duplicate``), or None."""
        ...

    def record_decision(self, account_id: str, decision: Decision, *, client_order_id: str,
                        snapshot_id: str | None = None, ttl: float = 300.0,
                        claim: float = 60.0) -> Reserved:
        """Journal ``decision`` and, when accepted, hold its reservation (claimed ``claim``
        seconds by the caller). Inside a unit of work that locked the account and loaded it,
        this is the write half of decide-and-reserve (:mod:`sizeguard.app.services`)."""
        ...

    def claim_reservation(self, reservation_id: str, claim: float = 60.0) -> bool:
        """Take over a held reservation whose claim lapsed; False while another holds it."""
        ...

    def journal_decision(self, account_id: str, decision: Decision, *,
                         client_order_id: str | None = None,
                         snapshot_id: str | None = None) -> int: ...

    def journal_event(self, account_id: str, kind: str, *, symbol: str | None = None,
                      client_order_id: str | None = None, note: str | None = None,
                      data: Mapping[str, Any] | None = None) -> int: ...

    def last_price(self, account_id: str, symbol: str) -> float | None:
        """The latest price the journal holds for ``symbol`` (decision, fill or close)."""
        ...

    def journal(self, account_id: str | None = None, *, symbol: str | None = None,
                last: int | None = None, kind: str | None = None) -> list[JournalEntry]: ...

    def reservation(self, reservation_id: str) -> Reservation | None: ...

    def reservations(self, account_id: str, *, live_only: bool = True) -> list[Reservation]: ...

    def release_reservation(self, reservation_id: str, reason: str) -> bool: ...

    def expire_reservations(self, account_id: str | None = None) -> int: ...

    def fill_reservation(self, reservation_id: str, *, amount: str, entry_price: float,
                         notional: float, margin: float, fee: float = 0.0,
                         stop_price: float | None = None, take_profit: float | None = None,
                         order_id: str | None = None) -> StoredPosition: ...

    def position(self, position_id: str) -> StoredPosition | None: ...

    def positions(self, account_id: str, *, open_only: bool = True) -> list[StoredPosition]: ...

    def close_position(self, position_id: str, *, exit_price: float, fee: float = 0.0,
                       note: str | None = None) -> StoredPosition: ...

    def sync_positions(self, account_id: str, found: Sequence[ExchangePosition]
                       ) -> dict[str, list[str]]: ...

    def learn_minimum(self, exchange: str, symbol: str, *, min_cost: float | None = None,
                      min_amount: float | None = None, source: str = "") -> None: ...

    def learned_minimums(self, exchange: str) -> dict[str, dict[str, float]]: ...

    def record_snapshot(self, snapshot_id: str, *, exchange: str, fetched_at: str,
                        path: str) -> None: ...


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator must hear about. ``key`` identifies the condition: the same key
    again within the dedup window is the same alert (not sent twice)."""

    kind: str  # "halt" | "liquidation_guard" | "exchange_reject" | "store_down" | "store_up" | "budget_used"
    title: str
    body: str
    key: str
    level: str = "warning"  # "info" | "success" | "warning" | "failure"
    at: float = 0.0  # epoch seconds

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Notifier(Protocol):
    """Where alerts go (chat, push, webhooks). ``notify`` must not block the caller for long and
    never raises: a notification that cannot be delivered is logged and dropped."""

    def notify(self, alert: Alert) -> None: ...
