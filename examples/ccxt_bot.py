"""A custom ccxt bot that asks the sizeguard gate before every trade.

The bot does what the seed bots do (an EMA cross with an ATR stop, one position at a time),
with sizing left to the gate: it reserves a decision, sets the decided leverage, places the
decided amount, reports the fill (the reservation becomes a position), places the stop, and
reports the close. A refused order releases its reservation.

Offline (the default) it trades a paper exchange with ccxt's method names, on a candle CSV;
``--exchange binanceusdm`` (with API keys in CCXT_API_KEY / CCXT_SECRET) would trade a real
ccxt exchange the same way::

    sizeguard bots add demo                                   # prints the token
    sizeguard serve --port 8080 &
    python examples/ccxt_bot.py --gate http://127.0.0.1:8080 --token sg_... \\
        --candles BTC_USD-1h.csv --symbol BTC/USDT:USDT
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from sizeguard.client import GateClient, GateError, intent_key


class PaperCcxt:
    """sizeguard's paper exchange behind ccxt's method names (market orders, reduce-only stop
    market orders), moved by :meth:`tick` with each candle."""

    def __init__(self, balance: float, markets: str | None = None) -> None:
        from sizeguard.adapters.market_files import load_markets
        from sizeguard.adapters.paper import PaperExchange

        self.book = load_markets(markets)
        self.x = PaperExchange(self.book, balance=balance)
        self._ids = itertools.count(1)
        self.markets: dict[str, Any] = {}

    def load_markets(self) -> dict[str, Any]:
        self.markets = {s: {"symbol": s} for s in self.book}
        return self.markets

    def fetch_balance(self) -> dict[str, Any]:
        b = self.x.balance()
        return {"total": {b.currency: b.total}, "free": {b.currency: b.free}}

    def set_leverage(self, leverage: float, symbol: str) -> None:
        self.x.set_leverage(symbol, leverage)

    def create_order(self, symbol: str, type: str, side: str, amount: str | float,
                     price: float | None = None, params: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
        params = params or {}
        cid = params.get("clientOrderId") or f"bot-{next(self._ids)}"
        qty = amount if isinstance(amount, str) else format(Decimal(repr(amount)), "f")
        if "stopPrice" in params:  # a reduce-only stop on the open position
            pos_side = "long" if side == "sell" else "short"
            o = self.x.place_stop(symbol, pos_side, qty, float(params["stopPrice"]), cid)
        elif params.get("reduceOnly"):
            pos_side = "long" if side == "sell" else "short"
            o = self.x.close_position(symbol, pos_side, qty, price, cid)
        else:
            o = self.x.place_entry(symbol, "long" if side == "buy" else "short", qty,
                                   float(price or 0.0), cid)
        return {"id": o.id, "clientOrderId": o.client_order_id, "symbol": symbol,
                "status": "closed" if o.status == "filled" else o.status, "filled": o.filled,
                "amount": o.amount, "average": o.average, "fee": {"cost": o.fee}}

    def tick(self, symbol: str, low: float, high: float) -> list[dict[str, Any]]:
        """The candle's range passes: stops it crosses fill. Returns them as ccxt orders."""
        filled = [*self.x.mark(symbol, low), *self.x.mark(symbol, high)]
        return [{"id": o.id, "clientOrderId": o.client_order_id, "average": o.average,
                 "filled": o.filled, "fee": {"cost": o.fee}} for o in filled]


def ema(values: list[float], n: int) -> list[float]:
    out, k = [], 2 / (n + 1)
    for v in values:
        out.append(v if not out else out[-1] + k * (v - out[-1]))
    return out


def atr(high: list[float], low: list[float], close: list[float], n: int = 14) -> list[float]:
    out: list[float] = []
    for i in range(len(close)):
        tr = high[i] - low[i] if i == 0 else max(high[i] - low[i], abs(high[i] - close[i - 1]),
                                                 abs(low[i] - close[i - 1]))
        out.append(tr if not out else out[-1] + (tr - out[-1]) / n)
    return out


def read_candles(path: Path, bars: int | None) -> list[dict[str, float]]:
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    rows = [dict(zip(head, map(float, ln.split(",")), strict=True)) for ln in lines[1:] if ln]
    return rows[:bars] if bars else rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.exchange == "paper":
        ex: Any = PaperCcxt(args.equity, args.markets)
    else:  # a real exchange, through ccxt
        import ccxt

        ex = getattr(ccxt, args.exchange)({"apiKey": os.environ.get("CCXT_API_KEY"),
                                           "secret": os.environ.get("CCXT_SECRET")})
    ex.load_markets()
    candles = read_candles(Path(args.candles), args.bars)
    close = [c["close"] for c in candles]
    fast, slow = ema(close, 20), ema(close, 50)
    vol = atr([c["high"] for c in candles], [c["low"] for c in candles], close)
    sym = args.symbol
    stats = {"accepted": 0, "skipped": 0, "refused": 0, "trades": 0, "stopped": 0, "closed": 0}
    position: dict[str, Any] | None = None
    with GateClient(args.gate, args.token) as gate:
        for i in range(51, len(candles)):
            bar = candles[i]
            if position is not None and args.exchange == "paper":  # stops inside the bar
                for o in ex.tick(sym, bar["low"], bar["high"]):
                    if o["clientOrderId"] == position["stop_id"]:
                        gate.close(position["id"], price=o["average"], fee=o["fee"]["cost"])
                        position = None
                        stats["stopped"] += 1
            up = fast[i - 1] > slow[i - 1]  # the signal of the last closed candle
            crossed = up != (fast[i - 2] > slow[i - 2])
            if not crossed:
                continue
            side = "long" if up else "short"
            price = bar["open"]  # the order goes in at this candle's open
            if position is not None:  # the cross exits the open position first
                o = ex.create_order(sym, "market", "sell" if position["side"] == "long" else "buy",
                                    position["amount"], price, {"reduceOnly": True})
                gate.close(position["id"], price=o["average"], fee=o["fee"]["cost"])
                position, stats["closed"] = None, stats["closed"] + 1
            balance = ex.fetch_balance()
            equity = float(next(iter(balance["total"].values())))
            d = gate.reserve(sym, side, price, equity=equity, atr=vol[i - 1],
                             key=intent_key("ccxt_bot", sym, side, int(bar["timestamp"])))
            if not d.accepted:
                stats["skipped"] += 1
                continue
            stats["accepted"] += 1
            try:
                ex.set_leverage(d.leverage, sym)
                o = ex.create_order(sym, "market", "buy" if side == "long" else "sell", d.amount,
                                    price, {"clientOrderId": d.client_order_id})
            except Exception as exc:  # the exchange said no: give the reservation back
                gate.release(d.reservation_id)
                stats["refused"] += 1
                print(f"order refused: {exc}", file=sys.stderr)
                continue
            pos = gate.fill(d.reservation_id, amount=d.amount, price=o["average"],
                            fee=o["fee"]["cost"], stop_price=d.stop_price, order_id=o["id"])
            stop = ex.create_order(sym, "market", "sell" if side == "long" else "buy", d.amount,
                                   None, {"stopPrice": d.stop_price, "reduceOnly": True,
                                          "clientOrderId": f"{d.client_order_id}-sl"})
            position = {"id": pos.id, "side": side, "amount": d.amount,
                        "stop_id": stop["clientOrderId"]}
            stats["trades"] += 1
        final = ex.fetch_balance()
        stats["open"] = len(gate.positions().positions)
    stats["balance"] = float(next(iter(final["total"].values())))
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gate", default=os.environ.get("SIZEGUARD_GATE_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("SIZEGUARD_GATE_TOKEN"))
    p.add_argument("--candles", required=True, help="CSV: timestamp,open,high,low,close,volume")
    p.add_argument("--symbol", default="BTC/USDT:USDT")
    p.add_argument("--exchange", default="paper", help="paper, or a ccxt exchange id")
    p.add_argument("--markets", default=None, help="markets of the paper exchange (default: "
                   "the built-in ones, as the gate's)")
    p.add_argument("--equity", type=float, default=10_000.0)
    p.add_argument("--bars", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not args.token:
        p.error("--token (or SIZEGUARD_GATE_TOKEN) is required: `sizeguard bots add NAME`")
    try:
        stats = run(args)
    except GateError as exc:
        print(f"the gate answered: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats) if args.json else "  ".join(
        f"{k} {v:,.2f}" if isinstance(v, float) and not math.isnan(v) else f"{k} {v}"
        for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
