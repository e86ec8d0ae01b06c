"""A typed client of the HTTP risk gate (``sizeguard serve``), sync and async, on httpx.

A bot asks before it trades, reserves what it was granted, reports the fill and the close::

    from sizeguard.client import GateClient

    with GateClient("http://127.0.0.1:8080", token) as gate:
        d = gate.reserve("BTC/USDT:USDT", "long", 90_000, equity=10_000, stop_pct=2,
                         key="sig-2026-11-21T10:00-BTC")
        if d.accepted:
            ...  # set d.leverage, place d.amount on the exchange
            pos = gate.fill(d.reservation_id, amount=d.amount, price=90_010, fee=0.9)
            ...
            gate.close(pos.id, price=91_500, fee=0.9)

Retries: a request that failed on the way (connection refused or reset, timeout) or was
answered 503, 429 or 409-in-progress is sent again, after the server's ``Retry-After`` when it
gives one, else after a short exponential backoff. Every write carries an ``Idempotency-Key``
(the ``key`` you give, best derived from the signal so even a restarted bot repeats it, else a
fresh one per call that all its retries share): the service answers a repeated key with the
first answer, so a retry never decides, reserves, fills or closes twice.

Errors: every 4xx/5xx answer raises :class:`GateError` (``status``, ``title``, ``field``,
``errors``, ``retry_after``) once retries are spent. A business "no" is not an error: it is a
:class:`GateDecision` with ``accepted`` False and its ``reasons``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from sizeguard.core.decision import Decision
from sizeguard.errors import SizeguardError

__all__ = [
    "AsyncGateClient",
    "GateClient",
    "GateClosed",
    "GateDecision",
    "GateError",
    "GatePosition",
    "GateReservation",
    "RetryPolicy",
    "intent_key",
]

Side = Literal["long", "short"]
Number = float | int
RETRY_STATUSES = frozenset({429, 503})


class GateError(SizeguardError):
    """The gate answered an error (problem+json), or could not be reached at all (``status`` 0).

    ``field`` names the invalid field for a 422; ``retry_after`` is the server's hint (seconds)
    for a 503/429/409."""

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 field: str | None = None, errors: list[dict[str, Any]] | None = None,
                 retry_after: float | None = None, body: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.errors = errors or []
        self.retry_after = retry_after
        self.body = dict(body or {})
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {title}{where}: {detail}" if detail else f"{status} {title}{where}")

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in RETRY_STATUSES or (
            self.status == 409 and self.retry_after is not None)


# ------------------------------------------------------------------------------- results


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class GateReservation:
    """Margin, notional and a slot held for a decision until filled, released or expired."""

    id: str
    symbol: str
    side: str
    amount: str
    notional: float
    margin: float
    leverage: float
    status: str
    expires_at: float
    client_order_id: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateReservation:
        return cls(id=str(d["id"]), symbol=str(d["symbol"]), side=str(d["side"]),
                   amount=str(d["amount"]), notional=float(d["notional"]),
                   margin=float(d["margin"]), leverage=float(d["leverage"]),
                   status=str(d["status"]), expires_at=float(d["expires_at"]),
                   client_order_id=str(d["client_order_id"]), raw=dict(d))


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer to ``POST /v1/decisions``: the core decision plus its reservation.

    ``amount`` is the exact order quantity (a decimal string, on the market's lot step);
    ``leverage`` is what to set on the exchange before ordering; ``stop_price`` is where the
    stop goes, ``liquidation_price`` where the position would be liquidated."""

    status: str
    reasons: tuple[str, ...]
    symbol: str
    side: str
    amount: str
    lots: int
    notional: float | None
    margin: float | None
    leverage: float | None
    risk: float | None
    entry_price: float
    stop_price: float | None
    liquidation_price: float | None
    reservation: GateReservation | None
    journal_id: int | None
    client_order_id: str | None
    bound_by: str | None
    duplicate: bool
    replayed: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def reservation_id(self) -> str:
        """The held reservation's id (raises when the decision reserved nothing)."""
        if self.reservation is None:
            raise GateError(0, "no reservation", f"the decision is {self.status} "
                            f"({', '.join(self.reasons) or 'not reserved'})")
        return self.reservation.id

    def decision(self) -> Decision:
        """The answer as the core's :class:`~sizeguard.core.decision.Decision` (with its trace)."""
        return Decision.from_dict(self.raw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], replayed: bool = False) -> GateDecision:
        res = d.get("reservation")
        jid = d.get("journal_id")
        return cls(status=str(d["status"]), reasons=tuple(str(r) for r in d.get("reasons") or ()),
                   symbol=str(d["symbol"]), side=str(d["side"]), amount=str(d["amount"]),
                   lots=int(d.get("lots") or 0), notional=_f(d.get("notional")),
                   margin=_f(d.get("margin")), leverage=_f(d.get("leverage")),
                   risk=_f(d.get("risk")), entry_price=float(d["entry_price"]),
                   stop_price=_f(d.get("stop_price")),
                   liquidation_price=_f(d.get("liquidation_price")),
                   reservation=GateReservation.from_dict(res) if res else None,
                   journal_id=None if jid is None else int(jid),
                   client_order_id=d.get("client_order_id"), bound_by=d.get("bound_by"),
                   duplicate=bool(d.get("duplicate")), replayed=replayed, raw=dict(d))


@dataclass(frozen=True, slots=True)
class GatePosition:
    """An open (or closed) position as the gate records it."""

    id: str
    symbol: str
    side: str
    amount: str
    entry_price: float
    notional: float
    margin: float
    leverage: float
    stop_price: float | None
    status: str
    exit_price: float | None
    pnl: float | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GatePosition:
        return cls(id=str(d["id"]), symbol=str(d["symbol"]), side=str(d["side"]),
                   amount=str(d["amount"]), entry_price=float(d["entry_price"]),
                   notional=float(d["notional"]), margin=float(d["margin"]),
                   leverage=float(d["leverage"]), stop_price=_f(d.get("stop_price")),
                   status=str(d.get("status") or "open"), exit_price=_f(d.get("exit_price")),
                   pnl=_f(d.get("pnl")), raw=dict(d))


@dataclass(frozen=True, slots=True)
class GateClosed:
    """A reported close: the closed position and the account's risk state after it."""

    position: GatePosition
    state: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class GatePositions:
    scope: str
    positions: tuple[GatePosition, ...]
    reservations: tuple[GateReservation, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GatePositions:
        return cls(scope=str(d.get("scope") or "bot"),
                   positions=tuple(GatePosition.from_dict(p) for p in d.get("positions") or ()),
                   reservations=tuple(GateReservation.from_dict(r)
                                      for r in d.get("reservations") or ()), raw=dict(d))


# ------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry. ``max_delay`` caps any wait, Retry-After included."""

    attempts: int = 4
    backoff: float = 0.25
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # jitter: bots that failed together do not retry together
        return min(self.backoff * 2.0 ** attempt * (0.5 + random.random() / 2), self.max_delay)


def intent_key(*parts: object) -> str:
    """An Idempotency-Key from what identifies a trade intent (bot, symbol, signal time...):
    the same intent always gives the same key, so a bot restarted mid-request cannot reserve
    twice. At most 200 printable characters, as the service requires."""
    text = "-".join(str(p) for p in parts)
    text = "".join(c if c.isprintable() and not c.isspace() else "_" for c in text)
    if len(text) > 200:
        text = text[:160] + "-" + uuid.uuid5(uuid.NAMESPACE_URL, text).hex
    return text or uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    body: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None
    key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.key} if self.key else {}


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        try:  # an HTTP date
            return max(parsedate_to_datetime(raw).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def _error(response: httpx.Response) -> GateError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return GateError(response.status_code, str(body.get("title") or response.reason_phrase),
                     body.get("detail"), field=body.get("field"), errors=body.get("errors"),
                     retry_after=_retry_after(response), body=body)


def _outcome(response: httpx.Response) -> tuple[Any, bool] | GateError:
    """The decoded body and whether it was replayed, or the error it stands for."""
    if response.status_code >= 400:
        return _error(response)
    return response.json(), response.headers.get("Idempotent-Replayed") == "true"


def _num(value: Number | None) -> float | None:
    return None if value is None else float(value)


def _decision_body(symbol: str, side: str, price: Number, fields: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"symbol": symbol, "side": side, "price": float(price)}
    for k, v in fields.items():
        if v is None:
            continue
        if isinstance(v, bool) or k in ("regime", "volatility", "preset"):
            body[k] = v
        else:
            body[k] = float(v)  # the gate wants JSON numbers, never strings
    return body


def _amount(value: str | Number) -> str:
    """An amount as the gate's exact decimal string (no exponent)."""
    if isinstance(value, str):
        return value
    text = format(value, "f") if isinstance(value, int) else repr(float(value))
    if "e" in text or "E" in text:
        text = f"{float(value):.18f}".rstrip("0").rstrip(".")
    return text


class _Base:
    """What the sync and async clients share: building requests and reading answers."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0,
                 retry: RetryPolicy | None = None, key_prefix: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.key_prefix = key_prefix
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                         "User-Agent": "sizeguard-client/1"}

    def _key(self, key: str | None) -> str:
        return intent_key(self.key_prefix, key) if self.key_prefix and key else (
            key or uuid.uuid4().hex)

    # -- request builders (one per endpoint) -------------------------------------------------
    def _rq_decision(self, symbol: str, side: str, price: Number, *, reserve: bool,
                     key: str | None, **fields: Any) -> _Request:
        body = _decision_body(symbol, side, price, fields)
        body["reserve"] = reserve
        return _Request("POST", "/v1/decisions", body, key=self._key(key))

    def _rq_order(self, symbol: str, side: str, price: Number, key: str | None,
                  **fields: Any) -> _Request:
        return _Request("POST", "/v1/orders", _decision_body(symbol, side, price, fields),
                        key=self._key(key))

    def _rq_fill(self, reservation_id: str, amount: str | Number, price: Number, fee: Number,
                 stop_price: Number | None, take_profit: Number | None, order_id: str | None,
                 key: str | None) -> _Request:
        body: dict[str, Any] = {"reservation_id": reservation_id, "amount": _amount(amount),
                                "price": float(price), "fee": float(fee)}
        for k, v in (("stop_price", stop_price), ("take_profit", take_profit)):
            if v is not None:
                body[k] = float(v)
        if order_id is not None:
            body["order_id"] = str(order_id)
        return _Request("POST", "/v1/fills", body, key=self._key(key or f"fill-{reservation_id}"))

    def _rq_close(self, position_id: str, price: Number, fee: Number, key: str | None) -> _Request:
        return _Request("POST", "/v1/closes", {"position_id": position_id, "price": float(price),
                                               "fee": float(fee)},
                        key=self._key(key or f"close-{position_id}"))

    def _rq_release(self, reservation_id: str, key: str | None) -> _Request:
        return _Request("DELETE", f"/v1/reservations/{reservation_id}",
                        key=self._key(key or f"release-{reservation_id}"))

    @staticmethod
    def _rq_get(path: str, **params: Any) -> _Request:
        return _Request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def _send_args(self, rq: _Request) -> dict[str, Any]:
        return {"method": rq.method, "url": self.base_url + rq.path,
                "content": None if rq.body is None else json.dumps(rq.body).encode(),
                "params": rq.params,
                "headers": {**self._headers, **rq.headers(),
                            **({"Content-Type": "application/json"} if rq.body is not None else {})}}

    def _should_retry(self, attempt: int, failure: GateError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempt + 1 >= self.retry.attempts or not failure.retryable:
            return None
        return self.retry.delay(attempt, failure.retry_after)


class GateClient(_Base):
    """The blocking client. Use as a context manager (or call :meth:`close_client`).

    ``transport`` is httpx's (tests pass a mock or an ASGI transport); ``sleep`` is how a retry
    waits."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0,
                 retry: RetryPolicy | None = None, key_prefix: str = "",
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(base_url, token, timeout=timeout, retry=retry, key_prefix=key_prefix)
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._sleep = sleep

    def __enter__(self) -> GateClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close_client()

    def close_client(self) -> None:
        self._http.close()

    def _call(self, rq: _Request) -> tuple[Any, bool]:
        attempt = 0
        while True:
            try:
                out = _outcome(self._http.request(**self._send_args(rq)))
            except httpx.TransportError as exc:
                out = GateError(0, "unreachable", f"{type(exc).__name__}: {exc}")
            if not isinstance(out, GateError):
                return out
            wait = self._should_retry(attempt, out)
            if wait is None:
                raise out
            self._sleep(wait)
            attempt += 1

    # -- endpoints --------------------------------------------------------------------------
    def decide(self, symbol: str, side: Side, price: Number, *, reserve: bool = False,
               key: str | None = None, equity: Number | None = None,
               available: Number | None = None, stop: Number | None = None,
               stop_pct: Number | None = None, atr: Number | None = None,
               atr_mult: Number | None = None, stop_roe: Number | None = None,
               confidence: Number | None = None, regime: str | None = None,
               volatility: str | None = None, preset: str | None = None,
               leverage: Number | None = None, ttl: Number | None = None) -> GateDecision:
        """``POST /v1/decisions``: size a trade; ``reserve=True`` also holds it."""
        data, replayed = self._call(self._rq_decision(
            symbol, side, price, reserve=reserve, key=key, equity=equity, available=available,
            stop=stop, stop_pct=stop_pct, atr=atr, atr_mult=atr_mult, stop_roe=stop_roe,
            confidence=confidence, regime=regime, volatility=volatility, preset=preset,
            leverage=leverage, ttl=ttl))
        return GateDecision.from_dict(data, replayed)

    def reserve(self, symbol: str, side: Side, price: Number, **kw: Any) -> GateDecision:
        """``decide(..., reserve=True)``: the decision and, when accepted, its reservation."""
        return self.decide(symbol, side, price, reserve=True, **kw)

    def order(self, symbol: str, side: Side, price: Number, *, key: str | None = None,
              **fields: Any) -> dict[str, Any]:
        """``POST /v1/orders``: size, reserve and place through the service's own exchange."""
        data, _ = self._call(self._rq_order(symbol, side, price, key, **fields))
        return dict(data)

    def fill(self, reservation_id: str, *, amount: str | Number, price: Number, fee: Number = 0.0,
             stop_price: Number | None = None, take_profit: Number | None = None,
             order_id: str | None = None, key: str | None = None) -> GatePosition:
        """``POST /v1/fills``: the reservation filled; it becomes a position."""
        data, _ = self._call(self._rq_fill(reservation_id, amount, price, fee, stop_price,
                                           take_profit, order_id, key))
        return GatePosition.from_dict(data["position"])

    def close(self, position_id: str, *, price: Number, fee: Number = 0.0,
              key: str | None = None) -> GateClosed:
        """``POST /v1/closes``: the position closed at ``price``."""
        data, _ = self._call(self._rq_close(position_id, price, fee, key))
        return GateClosed(GatePosition.from_dict(data["position"]), dict(data.get("state") or {}))

    def release(self, reservation_id: str, *, key: str | None = None) -> bool:
        """``DELETE /v1/reservations/{id}``: give a held reservation back. True if released."""
        data, _ = self._call(self._rq_release(reservation_id, key))
        return bool(data.get("released"))

    def positions(self, scope: Literal["bot", "account"] = "bot") -> GatePositions:
        data, _ = self._call(self._rq_get("/v1/positions", scope=scope))
        return GatePositions.from_dict(data)

    def state(self) -> dict[str, Any]:
        data, _ = self._call(self._rq_get("/v1/state"))
        return dict(data)

    def journal(self, symbol: str | None = None, last: int = 100,
                kind: str | None = None) -> list[dict[str, Any]]:
        data, _ = self._call(self._rq_get("/v1/journal", symbol=symbol, last=last, kind=kind))
        return list(data["entries"])

    def market(self, symbol: str) -> dict[str, Any]:
        data, _ = self._call(self._rq_get(f"/v1/markets/{symbol}"))
        return dict(data)

    def health(self) -> dict[str, Any]:
        data, _ = self._call(self._rq_get("/healthz"))
        return dict(data)


class AsyncGateClient(_Base):
    """The asyncio client: the same methods as :class:`GateClient`, awaited."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0,
                 retry: RetryPolicy | None = None, key_prefix: str = "",
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        super().__init__(base_url, token, timeout=timeout, retry=retry, key_prefix=key_prefix)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._sleep = sleep

    async def __aenter__(self) -> AsyncGateClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, rq: _Request) -> tuple[Any, bool]:
        attempt = 0
        while True:
            try:
                out = _outcome(await self._http.request(**self._send_args(rq)))
            except httpx.TransportError as exc:
                out = GateError(0, "unreachable", f"{type(exc).__name__}: {exc}")
            if not isinstance(out, GateError):
                return out
            wait = self._should_retry(attempt, out)
            if wait is None:
                raise out
            await self._sleep(wait)
            attempt += 1

    async def decide(self, symbol: str, side: Side, price: Number, *, reserve: bool = False,
                     key: str | None = None, **fields: Any) -> GateDecision:
        """``POST /v1/decisions`` (the fields of :meth:`GateClient.decide`)."""
        data, replayed = await self._call(self._rq_decision(symbol, side, price, reserve=reserve,
                                                            key=key, **fields))
        return GateDecision.from_dict(data, replayed)

    async def reserve(self, symbol: str, side: Side, price: Number, **kw: Any) -> GateDecision:
        return await self.decide(symbol, side, price, reserve=True, **kw)

    async def order(self, symbol: str, side: Side, price: Number, *, key: str | None = None,
                    **fields: Any) -> dict[str, Any]:
        data, _ = await self._call(self._rq_order(symbol, side, price, key, **fields))
        return dict(data)

    async def fill(self, reservation_id: str, *, amount: str | Number, price: Number,
                   fee: Number = 0.0, stop_price: Number | None = None,
                   take_profit: Number | None = None, order_id: str | None = None,
                   key: str | None = None) -> GatePosition:
        data, _ = await self._call(self._rq_fill(reservation_id, amount, price, fee, stop_price,
                                                 take_profit, order_id, key))
        return GatePosition.from_dict(data["position"])

    async def close(self, position_id: str, *, price: Number, fee: Number = 0.0,
                    key: str | None = None) -> GateClosed:
        data, _ = await self._call(self._rq_close(position_id, price, fee, key))
        return GateClosed(GatePosition.from_dict(data["position"]), dict(data.get("state") or {}))

    async def release(self, reservation_id: str, *, key: str | None = None) -> bool:
        data, _ = await self._call(self._rq_release(reservation_id, key))
        return bool(data.get("released"))

    async def positions(self, scope: Literal["bot", "account"] = "bot") -> GatePositions:
        data, _ = await self._call(self._rq_get("/v1/positions", scope=scope))
        return GatePositions.from_dict(data)

    async def state(self) -> dict[str, Any]:
        data, _ = await self._call(self._rq_get("/v1/state"))
        return dict(data)

    async def journal(self, symbol: str | None = None, last: int = 100,
                      kind: str | None = None) -> list[dict[str, Any]]:
        data, _ = await self._call(self._rq_get("/v1/journal", symbol=symbol, last=last, kind=kind))
        return list(data["entries"])

    async def market(self, symbol: str) -> dict[str, Any]:
        data, _ = await self._call(self._rq_get(f"/v1/markets/{symbol}"))
        return dict(data)

    async def health(self) -> dict[str, Any]:
        data, _ = await self._call(self._rq_get("/healthz"))
        return dict(data)
