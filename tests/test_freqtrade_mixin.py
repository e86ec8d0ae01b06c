"""SizeguardMixin's callbacks on freqtrade-shaped fakes (wallets, data provider, trades), driven
in the order freqtrade calls them (leverage, custom_stake_amount, freqtrade's own truncation of
stake / rate x leverage to the lot, confirm_trade_entry, order_filled, custom_stoploss), plus
the gate mode against the REAL server. The real freqtrade run is tests/test_freqtrade_backtest.py;
these cover what one backtest cannot show: several positions at once, refusals, failures,
spot, and the shared gate. Runtime ~10 s."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from httpfix import add_bot, auth, serving
from sizeguard.config import load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.core.market import market_rules_from_ccxt
from sizeguard.integrations.freqtrade import SizeguardMixin, stake_for, stop_ratio

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
SPOT = "BTC/USDT"
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
DOC = json.loads(resources.files("sizeguard").joinpath("data/example_markets.json").read_text())


class Row(dict[str, Any]):
    @property
    def index(self) -> list[str]:
        return list(self)


class Frame:
    """The last analyzed candle, as freqtrade's dataframe shows it to a strategy."""

    def __init__(self, **columns: Any) -> None:
        self.row = Row(columns)
        self.iloc = self

    def __getitem__(self, i: int) -> Row:
        return self.row

    def __len__(self) -> int:
        return 1


class Exchange:
    precisionMode = 4  # noqa: N815 - ccxt's name
    # freqtrade's parsed tiers (LeverageTier: maintAmt beside the rate)
    _leverage_tiers: ClassVar[dict[str, list[dict[str, Any]]]] = {
        s: [{"minNotional": t["minNotional"], "maxNotional": t["maxNotional"],
             "maintenanceMarginRate": t["maintenanceMarginRate"], "maxLeverage": t["maxLeverage"],
             "maintAmt": t["info"]["cum"]} for t in rows] for s, rows in DOC["tiers"].items()}


class DataProvider:
    def __init__(self) -> None:
        self._exchange = Exchange()
        self.frames: dict[str, Frame] = {}

    def market(self, pair: str) -> dict[str, Any] | None:
        m: dict[str, Any] | None = DOC["markets"].get(pair)
        return m

    def get_analyzed_dataframe(self, pair: str, timeframe: str) -> tuple[Frame, datetime]:
        return self.frames.get(pair, Frame()), T0


@dataclass
class Wallets:
    total: float = 10_000.0
    free: float = 10_000.0

    def get_total(self, currency: str) -> float:
        return self.total

    def get_free(self, currency: str) -> float:
        return self.free


@dataclass
class Trade:
    pair: str
    is_short: bool
    amount: float
    open_rate: float
    stake_amount: float
    leverage: float
    open_date: datetime = T0
    id: int = 1
    is_open: bool = True
    close_date: datetime | None = None
    close_profit_abs: float | None = None
    amount_requested: float = 0.0
    liquidation_price: float | None = None
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def entry_side(self) -> str:
        return "sell" if self.is_short else "buy"

    @property
    def exit_side(self) -> str:
        return "buy" if self.is_short else "sell"

    def set_custom_data(self, key: str, value: Any) -> None:
        self.custom[key] = value

    def get_custom_data(self, key: str) -> Any:
        return self.custom.get(key)


@dataclass
class Order:
    ft_order_side: str
    safe_filled: float
    safe_price: float
    safe_fee_base: float = 0.0
    order_id: str = "ex-1"


class Strategy(SizeguardMixin):
    timeframe = "5m"

    def __init__(self, tmp: Path, **sizeguard: Any) -> None:
        self.config = {"stake_currency": "USDT", "runmode": "backtest",
                       "exchange": {"name": "binance"},
                       "sizeguard": {"decision_log": str(tmp / "decisions.jsonl"), **sizeguard}}
        self.dp = DataProvider()
        self.wallets = Wallets()
        self.open: list[Trade] = []
        self.closed: list[Trade] = []

    def sizeguard_trades(self, *, is_open: bool) -> list[Any]:
        return list(self.open if is_open else self.closed)


def truncate(stake: float, rate: float, leverage: float, step: float) -> float:
    """freqtrade's amount: stake / rate x leverage, truncated to the lot step."""
    raw = Decimal(repr(stake / rate * leverage))
    lot = Decimal(repr(step))
    return float((raw / lot).to_integral_value(ROUND_FLOOR) * lot)


def enter(s: Strategy, pair: str, side: str, rate: float, when: datetime = T0,
          futures: bool = True) -> tuple[bool, float, float, float]:
    """freqtrade's entry sequence: (confirmed, amount, stake booked, leverage)."""
    lev = s.leverage(pair=pair, current_time=when, current_rate=rate, proposed_leverage=1.0,
                     max_leverage=125.0, entry_tag=None, side=side) if futures else 1.0
    lev = min(max(lev, 1.0), 125.0)
    stake = s.custom_stake_amount(pair=pair, current_time=when, current_rate=rate,
                                  proposed_stake=3333.0, min_stake=5.0, max_stake=10_000.0,
                                  leverage=lev, entry_tag=None, side=side)
    if not stake:
        return False, 0.0, 0.0, lev
    step = s.sizeguard_market(pair).amount_step
    amount = truncate(stake, rate, lev, step)
    ok = s.confirm_trade_entry(pair=pair, order_type="market", amount=amount, rate=rate,
                               time_in_force="GTC", current_time=when, entry_tag=None, side=side)
    return ok, amount, amount * rate / lev, lev


def log(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp / "decisions.jsonl").read_text().splitlines()]


def test_futures_entry_is_the_decision(tmp_path: Path) -> None:
    s = Strategy(tmp_path, preset="ai-atr-risk")
    s.dp.frames[BTC] = Frame(sizeguard_stop=49_000.0, close=50_100.0)
    ok, amount, stake, lev = enter(s, BTC, "long", 50_000.0)
    want = decide(Intent(BTC, "long", 50_000.0, stop=49_000.0, time=T0.timestamp()),
                  Account(equity=10_000.0, available=10_000.0, peak_equity=10_000.0),
                  s.sizeguard_market(BTC), load_policy("ai-atr-risk"))
    assert ok and want.accepted
    assert amount == float(want.amount) and lev == want.leverage
    assert stake * lev == pytest.approx(amount * 50_000.0, rel=1e-12)
    (rec,) = log(tmp_path)
    assert rec["pair"] == BTC and rec["status"] == "accepted" and rec["amount"] == want.amount
    assert rec["stop_price"] == 49_000.0 and rec["liquidation_price"] == want.liquidation_price
    assert rec["intent"]["stop"] == 49_000.0 and rec["account"]["equity"] == 10_000.0
    # after the fill: the decision's stop as freqtrade's ratio (relative to the rate, x leverage)
    trade = Trade(BTC, False, amount, 50_000.0, stake, lev)
    s.order_filled(pair=BTC, trade=trade, order=Order("buy", amount, 50_000.0), current_time=T0)
    ratio = s.custom_stoploss(pair=BTC, trade=trade, current_time=T0, current_rate=50_500.0,
                              current_profit=0.0, after_fill=True)
    assert ratio is not None
    # freqtrade places the stop at rate x (1 - |ratio| / leverage): 49,000 again
    assert 50_500.0 * (1 - abs(ratio) / lev) == pytest.approx(49_000.0, rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(amount_lots=st.integers(1, 10**7), rate=st.floats(0.0001, 200_000, allow_nan=False),
       lev=st.integers(1, 125), step_exp=st.integers(-8, 1))
def test_stake_round_trips_through_freqtrades_truncation(amount_lots: int, rate: float, lev: int,
                                                         step_exp: int) -> None:
    """Whatever the float rounding of stake / rate x leverage, freqtrade truncates it back to
    exactly the decided amount."""
    step = float(Decimal(1).scaleb(step_exp))
    amount = format(Decimal(amount_lots) * Decimal(1).scaleb(step_exp), "f")
    market = market_rules_from_ccxt({"symbol": "X/USDT:USDT", "type": "swap", "contract": True,
                                     "linear": True, "contractSize": 1,
                                     "precision": {"amount": step, "price": 0.01}})
    stake = stake_for(amount, market, rate, float(lev))
    assert truncate(stake, rate, float(lev), step) == float(amount)


def test_spot_has_no_leverage(tmp_path: Path) -> None:
    s = Strategy(tmp_path, preset="ai-atr-risk")
    s.dp.frames[SPOT] = Frame(sizeguard_stop_pct=2.0)
    ok, amount, stake, lev = enter(s, SPOT, "long", 50_000.0, futures=False)
    assert ok and lev == 1.0 and stake == pytest.approx(amount * 50_000.0, rel=1e-12)
    rec = log(tmp_path)[-1]
    assert float(rec["amount"]) == amount and rec["leverage"] == 1.0


def test_max_positions_and_caps_refuse(tmp_path: Path) -> None:
    s = Strategy(tmp_path, preset="ai-atr-risk", overrides={"limits.max_positions": 1})
    s.dp.frames[ETH] = Frame(sizeguard_stop=2_900.0)
    s.open.append(Trade(BTC, False, 0.02, 50_000.0, 50.0, 20.0))
    s.wallets.free = 9_950.0
    ok, amount, _, _ = enter(s, ETH, "long", 3_000.0)
    assert not ok and amount == 0.0
    rec = log(tmp_path)[-1]
    assert rec["status"] == "skipped" and rec["reasons"] == ["MAX_POSITIONS"]
    assert rec["account"]["positions"] == [{"symbol": BTC, "side": "long", "notional": 1000.0,
                                            "margin": 50.0}]


def test_fail_closed(tmp_path: Path) -> None:
    s = Strategy(tmp_path, preset="ai-atr-risk")
    # no such market: no trade, the reason logged
    ok, *_ = enter(s, "NOPE/USDT:USDT", "long", 1.0)
    assert not ok and "no market" in (log(tmp_path)[-1]["note"] or "")
    # a stop on the wrong side (invalid input): no trade, logged with the error
    s.dp.frames[BTC] = Frame(sizeguard_stop=51_000.0)
    ok, *_ = enter(s, BTC, "long", 50_000.0)
    rec = log(tmp_path)[-1]
    assert not ok and rec["status"] == "error" and "stop" in rec["note"]
    # a bad policy: no trade
    bad = Strategy(tmp_path, preset="no-such-preset")
    bad.dp.frames[BTC] = Frame(sizeguard_stop=49_000.0)
    assert not enter(bad, BTC, "long", 50_000.0)[0]
    # freqtrade changed the amount (e.g. raised it to its minimum stake): refused
    s.dp.frames[BTC] = Frame(sizeguard_stop=49_000.0)
    assert s.leverage(pair=BTC, current_time=T0, current_rate=50_000.0, proposed_leverage=1.0,
                      max_leverage=125.0, entry_tag=None, side="long") > 1
    assert not s.confirm_trade_entry(pair=BTC, order_type="market", amount=123.0, rate=50_000.0,
                                     time_in_force="GTC", current_time=T0, entry_tag=None,
                                     side="long")
    assert log(tmp_path)[-1]["reasons"] == ["AMOUNT_CHANGED"]
    # a confirm freqtrade asks without any decision: refused
    assert not s.confirm_trade_entry(pair=ETH, order_type="market", amount=1.0, rate=3000.0,
                                     time_in_force="GTC", current_time=T0, entry_tag=None,
                                     side="long")


def test_decision_log_can_be_switched_off(tmp_path: Path) -> None:
    s = Strategy(tmp_path, preset="ai-atr-risk", decision_log=False)
    s.dp.frames[BTC] = Frame(sizeguard_stop=49_000.0)
    assert enter(s, BTC, "long", 50_000.0)[0]
    assert list(tmp_path.iterdir()) == []


def test_stop_ratio_by_hand() -> None:
    # a long at 100 with its stop at 99.5 at 10x: 0.5% of price, 5% of the margin
    assert stop_ratio(99.5, 100.0, False, 10.0) == pytest.approx(0.05)
    # a short at 100, stop 101, 20x: 1% x 20 = 20%
    assert stop_ratio(101.0, 100.0, True, 20.0) == pytest.approx(0.2)
    assert stop_ratio(101.0, 100.0, False, 5.0) == 0.0  # already through the stop


@pytest.mark.timeout(120)
def test_gate_mode_reserves_fills_closes_and_releases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with serving(url, tmp_path, env={"SIZEGUARD_PRESET": "ai-atr-risk"}) as server:
        token = add_bot(url, "freqtrade-a")
        s = Strategy(tmp_path, url=server.url, token=token, bot="ft-a")
        s.config["runmode"] = "dry_run"
        assert s.sizeguard_gate_mode
        s.dp.frames[BTC] = Frame(sizeguard_stop=49_000.0)
        ok, amount, stake, lev = enter(s, BTC, "long", 50_000.0)
        assert ok and amount > 0
        h = auth(token)
        held = httpx.get(f"{server.url}/v1/positions", headers=h, timeout=30).json()
        (res,) = held["reservations"]
        assert float(res["amount"]) == amount and res["leverage"] == lev
        trade = Trade(BTC, False, amount, 50_000.0, stake, lev)
        s.order_filled(pair=BTC, trade=trade, order=Order("buy", amount, 50_000.0, 0.0),
                       current_time=T0)
        (pos,) = httpx.get(f"{server.url}/v1/positions", headers=h, timeout=30).json()["positions"]
        assert float(pos["amount"]) == amount and pos["stop_price"] == 49_000.0
        trade.is_open = False
        s.order_filled(pair=BTC, trade=trade, order=Order("sell", amount, 51_000.0, 0.0),
                       current_time=T0 + timedelta(hours=1))
        state = httpx.get(f"{server.url}/v1/state", headers=h, timeout=30).json()
        assert state["open_positions"] == 0 and state["symbol_stats"][BTC]["wins"] == 1
        # an entry whose reservation expired before it filled: cancelled and released
        s.dp.frames[ETH] = Frame(sizeguard_stop=2_900.0)
        ok, amount, stake, lev = enter(s, ETH, "long", 3_000.0, T0 + timedelta(hours=2))
        assert ok
        eth = Trade(ETH, False, amount, 3_000.0, stake, lev)
        assert not s.check_entry_timeout(pair=ETH, trade=eth, order=None,
                                         current_time=datetime.now(UTC))
        late = datetime.now(UTC) + timedelta(seconds=400)  # past the 300 s reservation
        assert s.check_entry_timeout(pair=ETH, trade=eth, order=None, current_time=late)
        held = httpx.get(f"{server.url}/v1/positions", headers=h, timeout=30).json()
        assert held["reservations"] == [] and held["positions"] == []


@pytest.mark.timeout(120)
def test_two_bots_share_one_accounts_slots_through_the_gate(tmp_path: Path) -> None:
    """Two freqtrade bots on one account: each sees only its own trades, the gate sees both.
    With one slot account-wide, the second bot's entry is refused while the first holds it."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {"SIZEGUARD_PRESET": "ai-atr-risk", "SIZEGUARD_LIMITS__MAX_POSITIONS": "1"}
    with serving(url, tmp_path, env=env) as server:
        bots = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            s = Strategy(tmp_path / name, url=server.url, token=add_bot(url, f"ft-{name}"),
                         bot=f"ft-{name}")
            s.config["runmode"] = "live"
            s.dp.frames = {BTC: Frame(sizeguard_stop=49_000.0), ETH: Frame(sizeguard_stop=2_900.0)}
            bots.append(s)
        a, b = bots
        assert enter(a, BTC, "long", 50_000.0)[0]
        ok, amount, _, _ = enter(b, ETH, "long", 3_000.0)
        assert not ok and amount == 0.0
        assert log(tmp_path / "b")[-1]["reasons"] == ["MAX_POSITIONS"]
        assert log(tmp_path / "b")[-1]["mode"] == "gate"
