"""The side-by-side table of docs/freqtrade.md from freqtrade's own exports:
``python compare.py OUTDIR [STRATEGY ...]`` (after backtest.sh OUTDIR STRATEGY ...)."""

from __future__ import annotations

import json
import statistics
import sys
import zipfile
from pathlib import Path
from typing import Any


def result(out: Path, strategy: str) -> dict[str, Any]:
    (archive,) = sorted((out / strategy).glob("backtest-result-*.zip"))[-1:]
    with zipfile.ZipFile(archive) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".json") and not n.endswith("_config.json")]
        doc: dict[str, Any] = json.loads(z.read(name))["strategy"][strategy]
    return doc


def row(strategy: str, r: dict[str, Any]) -> str:
    trades = r["trades"]
    stakes = [t["stake_amount"] for t in trades]
    notional = [t["amount"] * t["open_rate"] for t in trades]
    exits = [t["exit_reason"] for t in trades]
    levs = sorted({t["leverage"] for t in trades})
    lev = f"{levs[0]:g}x" if len(levs) == 1 else f"{levs[0]:g}-{levs[-1]:g}x"
    return (f"| {strategy} | {len(trades)} | {exits.count('liquidation')} | "
            f"{exits.count('stop_loss')} | {r['final_balance']:,.0f} | "
            f"{r['max_drawdown_account']:.1%} | {min(t['profit_abs'] for t in trades):,.0f} | "
            f"{statistics.median(stakes):,.0f} / {max(stakes):,.0f} | "
            f"{statistics.median(notional):,.0f} / {max(notional):,.0f} | {lev} |")


def main() -> None:
    out = Path(sys.argv[1])
    names = sys.argv[2:] or ["PlainTrend", "PlainTrendNoStop", "SizeguardTrend"]
    print("| strategy | trades | liquidations | stopped | final balance | max drawdown | "
          "worst trade | stake per trade (median / max) | notional (median / max) | leverage |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in names:
        print(row(s, result(out, s)))


if __name__ == "__main__":
    main()
