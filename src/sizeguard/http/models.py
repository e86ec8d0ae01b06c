"""Request and response bodies (pydantic lives here, never in the core).

A decision request carries ``sizeguard size``'s options in snake_case; its answer is the
core's decision object (``Decision.to_dict()``, the CLI's ``--json``) with the reservation and
journal references added beside it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sizeguard.config.loader import PRESETS

# Bounds keep every number inside what the arithmetic handles exactly; the core checks the
# rest (stop side, unknown regime, ...) and answers 422 naming the field.
PRICE_MAX = 1e12
MONEY_MAX = 1e15


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Side = Annotated[Literal["long", "short"], BeforeValidator(_lower)]
Price = Annotated[float, Field(gt=0, le=PRICE_MAX, allow_inf_nan=False)]
Money = Annotated[float, Field(gt=0, le=MONEY_MAX, allow_inf_nan=False)]
Symbol = Annotated[str, Field(min_length=1, max_length=64, examples=["BTC/USDT:USDT"])]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Amount = Annotated[str, Field(pattern=r"^[0-9]{1,15}(\.[0-9]{1,18})?$", examples=["0.125"])]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class _Body(BaseModel):
    # strict: JSON types as they are (``true`` is not a number, ``"3_100"`` not 3100, ``"yes"``
    # not true); an integer is still a valid float. Unknown fields are refused.
    model_config = ConfigDict(extra="forbid", strict=True)


class DecisionFields(_Body):
    symbol: Symbol
    side: Side
    price: Price
    equity: Money | None = Field(None, description="Account equity (quote). Needed once to open "
                                 "the account; later values update it.")
    available: Annotated[float, Field(ge=0, le=MONEY_MAX, allow_inf_nan=False)] | None = Field(
        None, description="Available margin as the exchange reports it (default: equity minus "
        "the margin of open positions and live reservations).")
    stop: Price | None = Field(None, description="Stop price.")
    stop_pct: Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)] | None = Field(
        None, description="Stop distance, % of entry.")
    atr: Price | None = Field(None, description="ATR in price units: stop = atr_mult x ATR.")
    atr_mult: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None = None
    stop_roe: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)] | None = Field(
        None, description="Stop as % loss on margin.")
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    regime: Name | None = None
    volatility: Name | None = None
    preset: Literal[PRESETS] | None = Field(  # type: ignore[valid-type]
        None, description="Sizing of this preset; the account-wide limits stay the service's.")
    leverage: Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)] | None = None


class DecisionRequest(DecisionFields):
    reserve: bool = Field(False, description="Hold the margin, notional and slot (atomically "
                          "with the decision) until filled, released or expired.")
    ttl: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] | None = Field(
        None, description="Reservation lifetime, seconds (default: the service's).")


class OrderRequest(DecisionFields):
    take_profit: Price | None = None
    ttl: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] | None = None


class FillRequest(_Body):
    reservation_id: Id
    amount: Amount
    price: Price
    fee: Annotated[float, Field(ge=0, le=MONEY_MAX, allow_inf_nan=False)] = 0.0
    stop_price: Price | None = None
    take_profit: Price | None = None
    order_id: Annotated[str, Field(max_length=128)] | None = None


class CloseRequest(_Body):
    position_id: Id
    price: Price
    fee: Annotated[float, Field(ge=0, le=MONEY_MAX, allow_inf_nan=False)] = 0.0


# ---------------------------------------------------------------- responses (documentation)


class ReservationOut(BaseModel):
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
    status: str
    release_reason: str | None = None


class DecisionOut(BaseModel):
    """The core decision object plus where it was kept."""

    model_config = ConfigDict(extra="allow")
    status: Literal["accepted", "skipped"]
    reasons: list[str]
    symbol: str
    side: str
    amount: str
    lots: int
    notional: float | None
    margin: float | None
    leverage: float | None
    risk: float | None
    risk_pct: float | None
    entry_price: float
    stop_price: float | None
    liquidation_price: float | None
    policy: str
    trace: list[dict[str, Any]]
    reservation: ReservationOut | None = None
    journal_id: int | None = None
    client_order_id: str | None = None
    bound_by: Literal["account", "bot"] | None = Field(
        None, description="Which view was stricter: the account-wide one or the bot's budget.")


class ProblemOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str | None = None
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


class TradeOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["filled", "skipped", "rejected", "failed"]
    client_order_id: str
    journal_id: int
    decision: dict[str, Any]
    position: dict[str, Any] | None = None
    orders: list[dict[str, Any]] = []
    error: str | None = None
    retryable: bool = False
