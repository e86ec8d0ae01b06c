"""Candle CSVs (timestamp ms,open,high,low,close,volume) -> freqtrade futures feather files.

``python convert_data.py OUTDIR/data/binance CSV:PAIR[:RESAMPLE] ...``: each CSV becomes
``futures/<PAIR with / and : as _>-<tf>-futures.feather`` (a ``date`` column, UTC). With a
resample timeframe the candles are aggregated (first open, highest high, lowest low, last
close, summed volume); only complete buckets are kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

TF_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def tf_ms(tf: str) -> int:
    return int(tf[:-1]) * TF_MS[tf[-1]]


def convert(csv: Path, pair: str, tf: str, outdir: Path) -> Path:
    df = pd.read_csv(csv)
    step = int(df["timestamp"].diff().dropna().min())
    if tf_ms(tf) != step:
        per = tf_ms(tf) // step
        df["bucket"] = df["timestamp"] // tf_ms(tf) * tf_ms(tf)
        g = df.groupby("bucket")
        df = pd.DataFrame({"timestamp": g["timestamp"].first().index,
                           "open": g["open"].first().values, "high": g["high"].max().values,
                           "low": g["low"].min().values, "close": g["close"].last().values,
                           "volume": g["volume"].sum().values, "n": g.size().values})
        df = df[df["n"] == per].drop(columns="n")
    out = pd.DataFrame({"date": pd.to_datetime(df["timestamp"], unit="ms", utc=True)})
    for c in ("open", "high", "low", "close", "volume"):
        out[c] = df[c].astype("float64").values
    name = pair.replace("/", "_").replace(":", "_")
    path = outdir / "futures" / f"{name}-{tf}-futures.feather"
    path.parent.mkdir(parents=True, exist_ok=True)
    out.reset_index(drop=True).to_feather(path)
    return path


def main() -> None:
    outdir = Path(sys.argv[1])
    for spec in sys.argv[2:]:
        csv, pair, tf = spec.split("=")
        print(convert(Path(csv), pair, tf, outdir))


if __name__ == "__main__":
    main()
