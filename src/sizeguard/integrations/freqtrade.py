"""sizeguard inside a freqtrade strategy: ``class MyStrategy(SizeguardMixin, IStrategy)``.

The mixin sizes every entry with :func:`sizeguard.core.decide.decide` and implements the
callbacks freqtrade asks a strategy for:

* ``leverage``: the decision's leverage (futures; freqtrade never asks for spot);
* ``custom_stake_amount``: the decision's margin, chosen so that freqtrade's amount
  (stake / rate x leverage, truncated to the market's precision) is sizeguard's rounded amount
  exactly; 0 (no trade) for a skipped decision;
* ``confirm_trade_entry``: refuses an amount other than the decided one; in gate mode it
  reserves the trade on the HTTP gate (several bots, one account);
* ``custom_stoploss``: the decision's stop price, placed after the fill, as freqtrade's ratio
  (relative to the current rate, times the leverage);
* ``order_filled`` / ``confirm_trade_exit``: records fills and closes (gate mode: reports them);
* ``check_entry_timeout``: cancels an entry whose reservation expired, and releases it.

**Fail closed**: any error (no market, bad policy, the gate unreachable, an amount freqtrade
changed) means no trade, logged with its reason. Exits are never blocked.

**Modes**: in-process (backtesting, hyperopt, dry-run, or live without a gate): ``decide()`` on
an account built from freqtrade's wallets and trades, with freqtrade's own markets and leverage
tiers. Gate (``url`` and ``token`` set, live and dry-run): the service decides on the shared
account, reserves on confirm, records fills and closes, releases on timeout.

Settings come from the ``"sizeguard"`` section of freqtrade's config, else the strategy's
``sizeguard`` class attribute, else the environment (``SIZEGUARD_PRESET``, ``SIZEGUARD_CONFIG``,
``SIZEGUARD_GATE_URL``, ``SIZEGUARD_GATE_TOKEN``, ``SIZEGUARD_DECISION_LOG``)::

    "sizeguard": {"preset": "ai-atr-risk", "config": "policy.toml",
                  "overrides": {"limits.max_positions": 3},
                  "decision_log": "user_data/decisions.jsonl",
                  "url": "http://127.0.0.1:8080", "token": "sg_..."}

The stop (and the other intent fields) come from the signal candle: columns ``sizeguard_stop``
(a price), ``sizeguard_stop_pct``, ``sizeguard_atr``, ``sizeguard_confidence``,
``sizeguard_regime``; override :meth:`SizeguardMixin.sizeguard_intent` for anything else.

Every decision is appended to ``decisions.jsonl`` (one JSON object per line: pair, time, side,
status, reasons, amount, leverage, stop_price, liquidation_price, stake and the account it was
decided on); fills, stops placed and closes go to ``events.jsonl`` beside it.

freqtrade (GPL-3.0) is imported only here, lazily, and only for its trade list.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sizeguard.core.account import Account, Position, SymbolStats
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.lots import DECIMAL_PLACES, TICK_SIZE
from sizeguard.core.market import MarketRules, market_rules_from_ccxt
from sizeguard.core.policy import Policy
from sizeguard.core.tiers import tiers_from_ccxt

log = logging.getLogger("sizeguard.freqtrade")

INTENT_COLUMNS = {"sizeguard_stop": "stop", "sizeguard_stop_pct": "stop_pct",
                  "sizeguard_atr": "atr", "sizeguard_atr_mult": "atr_mult",
                  "sizeguard_confidence": "confidence", "sizeguard_regime": "regime",
                  "sizeguard_volatility": "volatility"}
# a hundredth of a lot on top of the exact margin: freqtrade's amount (stake / rate x leverage)
# then truncates to sizeguard's amount whatever the float rounding of that division
_NUDGE_LOTS = 0.01


def stop_ratio(stop: float, rate: float, is_short: bool, leverage: float) -> float:
    """freqtrade's stop ratio for an absolute stop price: the loss to the stop on the margin,
    relative to ``rate`` (a 0.5% price move at 10x is 0.05). 0 when the stop is already hit."""
    if rate <= 0:
        return 1.0
    move = (stop / rate - 1.0) if is_short else (1.0 - stop / rate)
    return max(move, 0.0) * leverage


def stake_for(amount: str, market: MarketRules, rate: float, leverage: float) -> float:
    """The stake (margin) that makes freqtrade order exactly ``amount`` (ccxt units) at ``rate``.

    freqtrade computes ``stake / rate x leverage`` in base units, converts to contracts and
    truncates to the lot; the exact margin could land a float hair under the lot and lose it, so
    a hundredth of a lot is added (freqtrade books the margin of the truncated amount)."""
    base = float(Decimal(amount) * Decimal(repr(market.contract_size)))
    step_base = market.amount_step * market.contract_size
    return (base + _NUDGE_LOTS * step_base) * rate / leverage


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())
    return float(value)


def _iso(value: Any) -> str | None:
    t = _ts(value)
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _side(side: str) -> str:
    return "short" if str(side).lower() in ("short", "sell") else "long"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class _Pending:
    """An entry being decided: from ``leverage`` to the fill."""

    decision: Decision
    rate: float
    time: float | None
    reservation_id: str | None = None
    expires_at: float | None = None


@dataclass
class _State:
    policy: Policy | None = None
    markets: dict[str, MarketRules] = field(default_factory=dict)
    pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)
    stops: dict[str, float] = field(default_factory=dict)  # trade key -> stop price
    positions: dict[str, str] = field(default_factory=dict)  # trade key -> gate position id
    peak: float = 0.0
    client: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class SizeguardMixin:
    """Sizes a freqtrade strategy's entries with sizeguard. Put it first:
    ``class MyStrategy(SizeguardMixin, IStrategy)``.

    Class attributes (the config's ``"sizeguard"`` section wins): ``sizeguard`` (a dict of the
    settings above)."""

    sizeguard: Mapping[str, Any] = {}
    # freqtrade's own stop: a backstop the decision's stop replaces after the fill
    use_custom_stoploss = True

    config: Any  # provided by IStrategy
    dp: Any
    wallets: Any
    timeframe: str

    # -- settings ---------------------------------------------------------------------
    def _sg(self) -> _State:
        state: _State | None = self.__dict__.get("_sizeguard_state")
        if state is None:
            state = _State()
            self.__dict__["_sizeguard_state"] = state
        return state

    def sizeguard_setting(self, key: str, env: str | None = None) -> Any:
        section = (getattr(self, "config", None) or {}).get("sizeguard") or {}
        if key in section:
            return section[key]
        if key in self.sizeguard:
            return self.sizeguard[key]
        return os.environ.get(env) if env else None

    @property
    def sizeguard_runmode(self) -> str:
        mode = (getattr(self, "config", None) or {}).get("runmode")
        return str(getattr(mode, "value", mode) or "backtest")

    @property
    def sizeguard_gate_mode(self) -> bool:
        """True when the HTTP gate decides: a url and token are set and freqtrade trades (live
        or dry-run); backtesting and hyperopt always decide in-process."""
        if self.sizeguard_runmode not in ("live", "dry_run"):
            return False
        return bool(self.sizeguard_setting("url", "SIZEGUARD_GATE_URL")
                    and self.sizeguard_setting("token", "SIZEGUARD_GATE_TOKEN"))

    def sizeguard_policy(self) -> Policy:
        st = self._sg()
        if st.policy is None:
            from sizeguard.config import load_policy  # noqa: PLC0415 - config is I/O

            overrides = self.sizeguard_setting("overrides") or ()
            sets: list[str] = []
            if isinstance(overrides, Mapping):
                sets = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
            elif isinstance(overrides, Sequence) and not isinstance(overrides, str):
                sets = [str(s) for s in overrides]
            st.policy = load_policy(self.sizeguard_setting("preset", "SIZEGUARD_PRESET"),
                                    self.sizeguard_setting("config", "SIZEGUARD_CONFIG"), sets)
        return st.policy

    def _exchange(self) -> Any:
        dp = getattr(self, "dp", None)
        return getattr(dp, "_exchange", None)

    def sizeguard_market(self, pair: str) -> MarketRules:
        """The pair's rules from freqtrade's own markets and leverage tiers."""
        st = self._sg()
        cached = st.markets.get(pair)
        if cached is not None:
            return cached
        market = self.dp.market(pair)
        if not market:
            raise LookupError(f"freqtrade has no market {pair}")
        ex = self._exchange()
        mode = getattr(ex, "precisionMode", None)
        mode = int(mode) if mode in (DECIMAL_PLACES, TICK_SIZE) else TICK_SIZE
        name = str(((getattr(self, "config", None) or {}).get("exchange") or {}).get("name") or "")
        rules = market_rules_from_ccxt(market, mode, name)
        tiers = (getattr(ex, "_leverage_tiers", None) or {}).get(pair) if rules.is_contract else None
        if tiers:
            rows = [{"minNotional": t["minNotional"], "maxNotional": t["maxNotional"],
                     "maintenanceMarginRate": t["maintenanceMarginRate"],
                     "maxLeverage": t["maxLeverage"],
                     "info": {"cum": t.get("maintAmt") or 0.0}} for t in tiers]
            rules = rules.with_tiers(tiers_from_ccxt(rows, pair), "freqtrade")
        st.markets[pair] = rules
        return rules

    # -- freqtrade's trades -------------------------------------------------------------
    def sizeguard_trades(self, *, is_open: bool) -> list[Any]:
        """freqtrade's trades (backtest or database)."""
        from freqtrade.persistence import Trade  # noqa: PLC0415 - GPL, imported only here

        return list(Trade.get_trades_proxy(is_open=is_open))

    def sizeguard_account(self, current_time: datetime | None = None) -> Account:
        """The account as freqtrade sees it: its wallet (total and free stake currency), its
        open trades as positions, today's realised PnL, the losing streak and per-pair record
        from its closed trades, and the equity's peak since the strategy started."""
        st = self._sg()
        stake = str(self.config.get("stake_currency") or "USDT")
        equity = float(self.wallets.get_total(stake))
        free = float(self.wallets.get_free(stake))
        positions = tuple(
            Position(str(t.pair), "short" if t.is_short else "long",
                     float(t.amount or t.amount_requested or 0.0) * float(t.open_rate),
                     float(t.stake_amount), entry=float(t.open_rate))
            for t in self.sizeguard_trades(is_open=True))
        closed = sorted(self.sizeguard_trades(is_open=False),
                        key=lambda t: _ts(t.close_date) or 0.0)
        now = _ts(current_time) if current_time is not None else time.time()
        day = (now or 0.0) - (now or 0.0) % 86_400
        pnl_today = sum(float(t.close_profit_abs or 0.0) for t in closed
                        if (_ts(t.close_date) or 0.0) >= day)
        streak = 0
        for t in reversed(closed):
            if float(t.close_profit_abs or 0.0) >= 0:
                break
            streak += 1
        stats: dict[str, tuple[int, int]] = {}
        last: dict[str, float] = {}
        for t in closed:
            n, w = stats.get(t.pair, (0, 0))
            stats[t.pair] = (n + 1, w + (float(t.close_profit_abs or 0.0) > 0))
            last[t.pair] = _ts(t.close_date) or 0.0
        st.peak = max(st.peak, equity)
        return Account(equity=equity, available=max(free, 0.0), positions=positions,
                       peak_equity=st.peak, realised_pnl_today=pnl_today, losing_streak=streak,
                       symbol_stats={p: SymbolStats(n, w) for p, (n, w) in stats.items()},
                       last_trade_at=last)

    def sizeguard_intent(self, pair: str, side: str, rate: float, current_time: datetime,
                         entry_tag: str | None) -> dict[str, Any]:
        """The intent's stop and hints, from the signal candle's ``sizeguard_*`` columns."""
        df = None
        try:
            df, _ = self.dp.get_analyzed_dataframe(pair, self.timeframe)
        except Exception:  # a strategy without a dataframe has no hints
            return {}
        if df is None or len(df) == 0:
            return {}
        row = df.iloc[-1]
        out: dict[str, Any] = {}
        for column, key in INTENT_COLUMNS.items():
            if column in row.index:
                value = row[column]
                if isinstance(value, str):
                    out[key] = value
                elif value is not None and math.isfinite(float(value)):
                    out[key] = float(value)
        return out

    # -- deciding ---------------------------------------------------------------------
    def _decision_log(self) -> Path | None:
        """Where decisions go; None when switched off (``"decision_log": false`` or "off",
        e.g. for hyperopt's many epochs)."""
        path = self.sizeguard_setting("decision_log", "SIZEGUARD_DECISION_LOG")
        if path is False or str(path).lower() in ("off", "false", "none"):
            return None
        if path:
            return Path(path)
        base = (getattr(self, "config", None) or {}).get("user_data_dir") or "."
        return Path(base) / "sizeguard" / "decisions.jsonl"

    def _write(self, name: str | None, record: Mapping[str, Any]) -> None:
        path = self._decision_log()
        if path is None:
            return
        if name is not None:
            path = path.with_name(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._sg().lock, path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=str, allow_nan=False) + "\n")
        except (OSError, ValueError) as exc:  # the log never stops trading decisions
            log.warning("sizeguard: could not write %s: %s", path, exc)

    def _log_decision(self, pair: str, side: str, when: Any, d: Decision | None,
                      account: Account | None, intent: Intent | None, *, stage: str,
                      stake: float | None = None, note: str | None = None,
                      status: str | None = None, reasons: Sequence[str] = ()) -> None:
        rec: dict[str, Any] = {
            "pair": pair, "time": _iso(when), "side": side, "stage": stage,
            "mode": "gate" if self.sizeguard_gate_mode else "in-process",
            "status": status or (str(d.status) if d else "error"),
            "reasons": list(reasons) if reasons or d is None else [str(r) for r in d.reasons],
            "amount": d.amount if d else None, "lots": d.lots if d else None,
            "leverage": _plain(d.leverage) if d else None,
            "notional": _plain(d.notional) if d else None,
            "margin": _plain(d.margin) if d else None, "stake": stake,
            "price": d.entry_price if d else (intent.price if intent else None),
            "stop_price": d.stop_price if d else None,
            "liquidation_price": d.liquidation_price if d else None,
            "risk": _plain(d.risk) if d else None, "tier": d.tier if d else None,
            "policy": d.policy if d else None, "note": note}
        if intent is not None:
            rec["intent"] = {k: getattr(intent, k) for k in (
                "price", "stop", "stop_pct", "atr", "atr_mult", "stop_roe", "confidence",
                "regime", "volatility", "leverage", "time") if getattr(intent, k) is not None}
        if account is not None:
            rec["account"] = {
                "equity": account.equity, "available": account.available,
                "peak_equity": account.peak_equity,
                "realised_pnl_today": account.realised_pnl_today,
                "losing_streak": account.losing_streak,
                "positions": [{"symbol": p.symbol, "side": p.side, "notional": p.notional,
                               "margin": p.margin} for p in account.positions],
                "symbol_stats": {s: [v.trades, v.wins] for s, v in account.symbol_stats.items()},
                "last_trade_at": dict(account.last_trade_at)}
        self._write(None, rec)

    def _refuse(self, pair: str, side: str, when: Any, stage: str, why: str,
                d: Decision | None = None, code: str = "FREQTRADE_REFUSED") -> None:
        log.warning("sizeguard: no trade %s %s at %s (%s): %s", side, pair, _iso(when), stage, why)
        self._log_decision(pair, side, when, d, None, None, stage=stage, note=why,
                           status="refused", reasons=[code])

    def _client(self) -> Any:
        st = self._sg()
        if st.client is None:
            from sizeguard.client import GateClient  # noqa: PLC0415 - httpx only in gate mode

            st.client = GateClient(str(self.sizeguard_setting("url", "SIZEGUARD_GATE_URL")),
                                   str(self.sizeguard_setting("token", "SIZEGUARD_GATE_TOKEN")))
        return st.client

    def _decide(self, pair: str, side: str, rate: float, when: datetime,
                entry_tag: str | None, leverage: float | None, stage: str) -> Decision | None:
        """Decide (in-process or on the gate, as a quote); None after an error (logged)."""
        account: Account | None = None
        intent: Intent | None = None
        try:
            market = self.sizeguard_market(pair)
            hints = self.sizeguard_intent(pair, side, rate, when, entry_tag)
            if leverage is not None and market.is_contract:
                hints["leverage"] = leverage
            intent = Intent(symbol=pair, side=side, price=float(rate), time=_ts(when), **hints)
            account = self.sizeguard_account(when)
            if self.sizeguard_gate_mode:
                d = self._gate_quote(intent, account, market)
            else:
                d = decide(intent, account, market, self.sizeguard_policy())
        except Exception as exc:  # fail closed: any error means no trade
            log.warning("sizeguard: no trade %s %s at %s: %s: %s", side, pair, _iso(when),
                        type(exc).__name__, exc)
            self._log_decision(pair, side, when, None, account, intent, stage=stage,
                               note=f"{type(exc).__name__}: {exc}", reasons=["ERROR"])
            return None
        self._log_decision(pair, side, when, d, account, intent, stage=stage)
        return d

    def _gate_quote(self, intent: Intent, account: Account, market: MarketRules) -> Decision:
        answer = self._client().decide(
            intent.symbol, intent.side, intent.price, equity=account.equity,
            available=account.available, **_intent_fields(intent))
        return Decision.from_dict(answer.raw)

    # -- freqtrade callbacks ----------------------------------------------------------
    def bot_start(self, **kwargs: Any) -> None:
        st = self._sg()
        st.pending.clear()
        st.stops.clear()
        st.markets.clear()
        st.policy = None
        st.peak = 0.0
        parent = getattr(super(), "bot_start", None)
        if parent is not None:
            parent(**kwargs)

    def leverage(self, pair: str, current_time: datetime, current_rate: float,
                 proposed_leverage: float, max_leverage: float, entry_tag: str | None,
                 side: str, **kwargs: Any) -> float:
        side = _side(side)
        d = self._decide(pair, side, current_rate, current_time, entry_tag, None, "leverage")
        if d is not None and d.accepted and d.leverage > max_leverage:
            # freqtrade would cap the leverage: decide at its cap so the amount stays ours
            d = self._decide(pair, side, current_rate, current_time, entry_tag,
                             float(math.floor(max_leverage)), "leverage")
        if d is None or not d.accepted:
            self._sg().pending.pop((pair, side), None)
            return 1.0  # custom_stake_amount then answers 0: no trade
        self._sg().pending[(pair, side)] = _Pending(d, float(current_rate), _ts(current_time))
        return float(d.leverage)

    def custom_stake_amount(self, pair: str, current_time: datetime, current_rate: float,
                            proposed_stake: float, min_stake: float | None, max_stake: float,
                            leverage: float, entry_tag: str | None, side: str,
                            **kwargs: Any) -> float:
        side = _side(side)
        st = self._sg()
        try:
            market = self.sizeguard_market(pair)
        except Exception as exc:
            self._refuse(pair, side, current_time, "stake", f"no market: {exc}")
            return 0.0
        p = st.pending.get((pair, side))
        lev = float(leverage) if market.is_contract else 1.0
        if (p is None or p.time != _ts(current_time) or p.rate != float(current_rate)
                or not math.isclose(p.decision.leverage, lev)):
            d = self._decide(pair, side, current_rate, current_time, entry_tag,
                             lev if market.is_contract else None, "stake")
            if d is None or not d.accepted:
                st.pending.pop((pair, side), None)
                return 0.0
            p = _Pending(d, float(current_rate), _ts(current_time))
            st.pending[(pair, side)] = p
        d = p.decision
        if not d.accepted:
            return 0.0
        if market.is_contract and not math.isclose(d.leverage, lev):
            self._refuse(pair, side, current_time, "stake",
                         f"freqtrade set leverage {lev:g}, sizeguard decided {d.leverage:g}", d)
            st.pending.pop((pair, side), None)
            return 0.0
        stake = stake_for(d.amount, market, float(current_rate), lev)
        if min_stake is not None and stake < min_stake:
            self._refuse(pair, side, current_time, "stake", f"stake {stake:.6g} is under "
                         f"freqtrade's minimum stake {min_stake:.6g}", d, "FREQTRADE_MIN_STAKE")
            st.pending.pop((pair, side), None)
            return 0.0
        if stake > max_stake:
            self._refuse(pair, side, current_time, "stake", f"stake {stake:.6g} is above "
                         f"freqtrade's maximum {max_stake:.6g}", d, "FREQTRADE_MAX_STAKE")
            st.pending.pop((pair, side), None)
            return 0.0
        return stake

    def confirm_trade_entry(self, pair: str, order_type: str, amount: float, rate: float,
                            time_in_force: str, current_time: datetime, entry_tag: str | None,
                            side: str, **kwargs: Any) -> bool:
        side = _side(side)
        st = self._sg()
        p = st.pending.get((pair, side))
        if p is None or not p.decision.accepted:
            self._refuse(pair, side, current_time, "confirm", "no accepted sizeguard decision "
                         "for this entry (custom_stake_amount was bypassed)")
            return False
        try:
            market = self.sizeguard_market(pair)
            want = float(Decimal(p.decision.amount) * Decimal(repr(market.contract_size)))
            if not math.isclose(float(amount), want, rel_tol=1e-9):
                self._refuse(pair, side, current_time, "confirm", f"freqtrade's amount {amount!r} "
                             f"is not sizeguard's {want!r}", p.decision, "AMOUNT_CHANGED")
                st.pending.pop((pair, side), None)
                return False
            if self.sizeguard_gate_mode:
                return self._gate_reserve(pair, side, p, current_time, market)
        except Exception as exc:  # fail closed
            self._refuse(pair, side, current_time, "confirm", f"{type(exc).__name__}: {exc}",
                         p.decision, "ERROR")
            st.pending.pop((pair, side), None)
            return False
        return True

    def _gate_reserve(self, pair: str, side: str, p: _Pending, when: datetime,
                      market: MarketRules) -> bool:
        from sizeguard.client import intent_key  # noqa: PLC0415

        d = p.decision
        account = self.sizeguard_account(when)
        intent = Intent(pair, side, d.entry_price, stop=d.stop_price,
                        leverage=d.leverage if market.is_contract else None)
        bot = str(self.sizeguard_setting("bot") or type(self).__name__)
        answer = self._client().reserve(
            pair, side, d.entry_price, equity=account.equity, available=account.available,
            key=intent_key(bot, pair, side, _iso(when)), **_intent_fields(intent))
        if not answer.accepted or answer.amount != d.amount:
            self._refuse(pair, side, when, "reserve", f"the gate answered {answer.status} "
                         f"{list(answer.reasons)} amount {answer.amount} (quoted {d.amount})",
                         d, "GATE_REFUSED")
            st = self._sg()
            st.pending.pop((pair, side), None)
            if answer.reservation is not None:
                self._client().release(answer.reservation_id)
            return False
        p.reservation_id = answer.reservation_id
        p.expires_at = answer.reservation.expires_at if answer.reservation else None
        self._event("reserved", pair, side, when, reservation_id=p.reservation_id,
                    amount=answer.amount)
        return True

    @staticmethod
    def _trade_key(trade: Any) -> str:
        return f"{trade.pair}|{_iso(trade.open_date)}|{getattr(trade, 'id', '')}"

    def _event(self, event: str, pair: str, side: str, when: Any, **data: Any) -> None:
        self._write("events.jsonl", {"event": event, "pair": pair, "side": side,
                                     "time": _iso(when), **data})

    def order_filled(self, pair: str, trade: Any, order: Any, current_time: datetime,
                     **kwargs: Any) -> None:
        st = self._sg()
        side = "short" if trade.is_short else "long"
        key = self._trade_key(trade)
        try:
            if order.ft_order_side == trade.entry_side:
                p = st.pending.pop((pair, side), None)
                if p is not None and key not in st.stops and p.decision.stop_price is not None:
                    st.stops[key] = float(p.decision.stop_price)
                    _set_custom(trade, "sizeguard_stop", p.decision.stop_price)
                self._event("filled", pair, side, current_time, amount=float(order.safe_filled),
                            price=float(order.safe_price), stake=float(trade.stake_amount),
                            leverage=float(trade.leverage or 1.0), trade_id=getattr(trade, "id", None),
                            stop_price=st.stops.get(key))
                if self.sizeguard_gate_mode and p is not None and p.reservation_id:
                    market = self.sizeguard_market(pair)
                    contracts = Decimal(repr(float(order.safe_filled))) / Decimal(
                        repr(market.contract_size))
                    pos = self._client().fill(
                        p.reservation_id, amount=format(contracts.normalize(), "f"),
                        price=float(order.safe_price), fee=float(order.safe_fee_base or 0.0)
                        * float(order.safe_price), stop_price=p.decision.stop_price,
                        order_id=str(getattr(order, "order_id", "") or "") or None)
                    st.positions[key] = pos.id
                    _set_custom(trade, "sizeguard_position", pos.id)
            elif not trade.is_open or math.isclose(float(order.safe_filled),
                                                   float(trade.amount or 0.0)):
                self._event("closed", pair, side, current_time, price=float(order.safe_price),
                            profit=_profit(trade, float(order.safe_price)),
                            exit_reason=getattr(trade, "exit_reason", None),
                            trade_id=getattr(trade, "id", None))
                position = st.positions.pop(key, None) or _get_custom(trade, "sizeguard_position")
                if self.sizeguard_gate_mode and position:
                    self._client().close(str(position), price=float(order.safe_price),
                                         fee=float(order.safe_fee_base or 0.0)
                                         * float(order.safe_price))
                st.stops.pop(key, None)
        except Exception as exc:  # a report that failed is logged, never raised
            log.warning("sizeguard: could not record the %s fill of %s: %s: %s",
                        order.ft_order_side, pair, type(exc).__name__, exc)

    def custom_stoploss(self, pair: str, trade: Any, current_time: datetime, current_rate: float,
                        current_profit: float, after_fill: bool, **kwargs: Any) -> float | None:
        key = self._trade_key(trade)
        stop = self._sg().stops.get(key)
        if stop is None:
            raw = _get_custom(trade, "sizeguard_stop")
            stop = float(raw) if raw is not None else None
        if stop is None:
            return None  # no decided stop: freqtrade's own stoploss stays
        lev = float(trade.leverage or 1.0)
        if after_fill:
            self._event("stop", pair, "short" if trade.is_short else "long", current_time,
                        stop_price=stop, liquidation_price=getattr(trade, "liquidation_price", None),
                        open_rate=float(trade.open_rate), leverage=lev,
                        trade_id=getattr(trade, "id", None))
        return -stop_ratio(stop, float(current_rate), bool(trade.is_short), lev)

    def confirm_trade_exit(self, pair: str, trade: Any, order_type: str, amount: float,
                           rate: float, time_in_force: str, exit_reason: str,
                           current_time: datetime, **kwargs: Any) -> bool:
        """Exits are never blocked (refusing one would add risk); the close is reported when
        its order fills."""
        self._event("exit", pair, "short" if trade.is_short else "long", current_time,
                    rate=float(rate), amount=float(amount), exit_reason=exit_reason,
                    trade_id=getattr(trade, "id", None))
        return True

    def check_entry_timeout(self, pair: str, trade: Any, order: Any, current_time: datetime,
                            **kwargs: Any) -> bool:
        """Cancel an unfilled entry whose reservation expired, and release the reservation."""
        side = "short" if trade.is_short else "long"
        p = self._sg().pending.get((pair, side))
        if p is None or p.reservation_id is None or p.expires_at is None:
            return False
        if (_ts(current_time) or time.time()) < p.expires_at:
            return False
        self._sg().pending.pop((pair, side), None)
        try:
            self._client().release(p.reservation_id)
        except Exception as exc:  # it expires by itself anyway
            log.warning("sizeguard: could not release %s: %s", p.reservation_id, exc)
        self._event("released", pair, side, current_time, reservation_id=p.reservation_id)
        return True


def _intent_fields(intent: Intent) -> dict[str, Any]:
    return {k: getattr(intent, k) for k in ("stop", "stop_pct", "atr", "atr_mult", "stop_roe",
                                            "confidence", "regime", "volatility", "leverage")
            if getattr(intent, k) is not None}


def _profit(trade: Any, rate: float) -> float | None:
    """The trade's profit at ``rate`` as freqtrade computes it (None when it cannot)."""
    try:
        return float(trade.calc_profit(rate))
    except Exception:  # an older or fake trade object: the profit is only informative
        return None


def _set_custom(trade: Any, key: str, value: Any) -> None:
    setter = getattr(trade, "set_custom_data", None)
    if setter is not None:
        try:
            setter(key, value)
        except Exception as exc:  # a memo only
            log.debug("sizeguard: set_custom_data(%s) failed: %s", key, exc)


def _get_custom(trade: Any, key: str) -> Any:
    getter = getattr(trade, "get_custom_data", None)
    if getter is None:
        return None
    try:
        return getter(key)
    except Exception:  # a memo only
        return None


__all__ = ["SizeguardMixin", "stake_for", "stop_ratio"]
