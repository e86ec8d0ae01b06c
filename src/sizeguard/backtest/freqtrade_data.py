"""freqtrade's files, read without freqtrade: candles, and the trades of a backtest export.

Candles (``user_data/data/<exchange>/``): ``<PAIR>-<tf>.<ext>`` for spot and
``futures/<PAIR>-<tf>-<candle type>.<ext>`` for futures, where the pair's ``/`` and ``:``
become ``_`` (``BTC_USDT_USDT-5m-futures.feather`` is ``BTC/USDT:USDT``). Formats: ``json``
(an array of ``[ms, open, high, low, close, volume]`` rows), ``jsongz`` (the same, gzipped),
``feather`` and ``parquet`` (a ``date`` column, UTC). They become sizeguard's candle frame:
``timestamp`` (epoch ms) and the five prices.

A backtest export (``backtest-result-*.zip``, or its ``.json``) holds each strategy's trades:
pair, open and close time, side, amount, open rate, stake, leverage, stop, profit.
"""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from sizeguard.errors import InvalidInput

PRICES = ("open", "high", "low", "close", "volume")
CANDLE_TYPES = ("futures", "mark", "index", "premiumIndex", "funding_rate", "spot")
_NAME = re.compile(r"^(?P<pair>.+?)-(?P<tf>\d+[smhdwM])(?:-(?P<type>[A-Za-z_]+))?"
                   r"\.(?P<ext>json|json\.gz|jsongz|feather|parquet)$")
F64 = npt.NDArray[np.float64]


def parse_name(path: str | Path) -> tuple[str, str, str] | None:
    """``BTC_USDT_USDT-5m-futures.feather`` -> ("BTC/USDT:USDT", "5m", "futures");
    ``ETH_BTC-5m.json`` -> ("ETH/BTC", "5m", "spot"); None for any other name."""
    m = _NAME.match(Path(path).name)
    if m is None:
        return None
    kind = m.group("type") or "spot"
    if kind not in CANDLE_TYPES:
        return None
    parts = m.group("pair").split("_")
    if kind != "spot" and len(parts) == 3:
        pair = f"{parts[0]}/{parts[1]}:{parts[2]}"
    elif len(parts) == 2:
        pair = f"{parts[0]}/{parts[1]}"
    else:
        pair = m.group("pair")
    return pair, m.group("tf"), kind


def is_freqtrade_candles(path: str | Path) -> bool:
    """A file in one of freqtrade's candle formats (by suffix), or named like freqtrade's."""
    name = Path(path).name.lower()
    return name.endswith((".feather", ".json", ".json.gz", ".jsongz")) or parse_name(path) is not None


def _from_rows(rows: Any, where: str) -> pl.DataFrame:
    if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) < 6 for r in rows[:1]):
        raise InvalidInput("candles", where, "a freqtrade json candle file holds an array of "
                           "[ms, open, high, low, close, volume] rows")
    if not rows:
        return pl.DataFrame({"timestamp": [], **{c: [] for c in PRICES}},
                            schema={"timestamp": pl.Int64, **dict.fromkeys(PRICES, pl.Float64)})
    try:
        arr = np.asarray([r[:6] for r in rows], dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("candles", where, "a row holds something other than numbers") from None
    return pl.DataFrame({"timestamp": arr[:, 0].astype(np.int64),
                         **{c: arr[:, i + 1] for i, c in enumerate(PRICES)}})


def with_timestamp(df: pl.DataFrame) -> pl.DataFrame:
    """A frame with freqtrade's ``date`` column (datetime or epoch ms) as ``timestamp``."""
    if "timestamp" in df.columns or "date" not in df.columns:
        return df
    col = df["date"]
    if col.dtype in (pl.Datetime, pl.Date) or isinstance(col.dtype, pl.Datetime):
        ms = col.cast(pl.Datetime("ms", "UTC") if getattr(col.dtype, "time_zone", None)
                      else pl.Datetime("ms")).dt.epoch("ms")
    elif col.dtype == pl.Utf8:
        ms = col.str.to_datetime(time_zone="UTC").dt.epoch("ms")
    else:
        ms = col
    return df.with_columns(ms.alias("timestamp")).drop("date")


def read_freqtrade_candles(path: str | Path) -> pl.DataFrame:
    """A freqtrade candle file as sizeguard's frame (``timestamp`` ms + the five prices)."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput("candles", str(p), "no such file")
    name = p.name.lower()
    try:
        if name.endswith((".json.gz", ".jsongz")):
            with gzip.open(p, "rt", encoding="utf-8") as fh:
                return _from_rows(json.load(fh), str(p))
        if name.endswith(".json"):
            with p.open(encoding="utf-8") as fh:
                return _from_rows(json.load(fh), str(p))
        if name.endswith(".feather"):
            return with_timestamp(pl.read_ipc(p))
        if name.endswith((".parquet", ".pq")):
            return with_timestamp(pl.read_parquet(p))
        return with_timestamp(pl.read_csv(p, infer_schema_length=10_000))
    except (json.JSONDecodeError, OSError, EOFError, pl.exceptions.PolarsError) as exc:
        raise InvalidInput("candles", str(p), f"cannot be read as freqtrade candles: {exc}") from None


def pair_files(datadir: str | Path, pairs: Sequence[str] = (), timeframe: str | None = None,
               candle_type: str = "futures") -> list[tuple[Path, str]]:
    """The candle files of ``pairs`` (all when empty) under a freqtrade data dir, with their
    pairs: futures files under ``futures/`` first, then spot files at the top."""
    root = Path(datadir)
    if not root.is_dir():
        raise InvalidInput("candles", str(root), "no such data directory")
    found: dict[str, list[tuple[str, Path]]] = {}
    for f in sorted([*root.glob("futures/*"), *root.glob("*")]):
        parsed = parse_name(f)
        if parsed is None or not f.is_file():
            continue
        pair, tf, kind = parsed
        if kind not in (candle_type, "spot") or (timeframe and tf != timeframe):
            continue
        found.setdefault(pair, []).append((tf, f))
    wanted = list(pairs) or sorted(found)
    out = []
    for pair in wanted:
        files = found.get(pair)
        if not files:
            raise InvalidInput("symbol", pair, f"no freqtrade candles for it under {root}"
                               + (f" at {timeframe}" if timeframe else ""))
        tfs = sorted({tf for tf, _ in files})
        if len(tfs) > 1:
            raise InvalidInput("symbol", pair, f"candles at several timeframes ({', '.join(tfs)}) "
                               f"under {root}: name the file")
        out.append((files[0][1], pair))
    return out


def expand_candle_paths(paths: Sequence[str | Path], symbols: Sequence[str] = ()) -> list[Path]:
    """Candle files, a freqtrade data dir standing for its files of ``symbols`` (all pairs
    when none are given)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(f for f, _ in pair_files(p, symbols)) if p.is_dir() else out.append(p)
    return out


# ------------------------------------------------------------------------------ exports


def is_freqtrade_export(path: str | Path) -> bool:
    p = Path(path)
    if p.suffix.lower() == ".zip":
        return True
    if p.suffix.lower() != ".json" or not p.exists():
        return False
    with p.open(encoding="utf-8") as fh:
        head = fh.read(64)
    return head.lstrip().startswith('{"strategy"') or '"strategy"' in head


def read_export(path: str | Path) -> dict[str, Any]:
    """The result document of a freqtrade backtest export (zip or json)."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput("export", str(p), "no such file")
    try:
        if p.suffix.lower() == ".zip":
            with zipfile.ZipFile(p) as z:
                names = [n for n in z.namelist() if n.endswith(".json")
                         and not n.endswith(("_config.json", ".meta.json"))]
                if not names:
                    raise InvalidInput("export", str(p), "holds no backtest result json")
                doc = json.loads(z.read(names[0]))
        else:
            doc = json.loads(p.read_text(encoding="utf-8"))
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError) as exc:
        raise InvalidInput("export", str(p), f"not a freqtrade backtest export: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("strategy"), Mapping):
        raise InvalidInput("export", str(p), "not a freqtrade backtest export (no 'strategy')")
    return dict(doc)


def export_trades(path: str | Path, strategy: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each strategy's trades (one strategy when named), sorted by open time."""
    doc = read_export(path)
    strategies = doc["strategy"]
    if strategy is not None and strategy not in strategies:
        raise InvalidInput("strategy", strategy, f"not in the export ({', '.join(strategies)})")
    out: dict[str, list[dict[str, Any]]] = {}
    for name, result in strategies.items():
        if strategy is not None and name != strategy:
            continue
        trades = list(result.get("trades") or ())
        for k, t in enumerate(trades):
            for key in ("pair", "open_timestamp", "amount", "open_rate"):
                if key not in t:
                    raise InvalidInput(f"{path} {name} trades[{k}]", sorted(t), f"missing {key!r}")
        out[name] = sorted(trades, key=lambda t: int(t["open_timestamp"]))
    return out


def export_returns(path: str | Path) -> list[tuple[str, F64, float]]:
    """Per strategy: each trade's profit as a fraction of the equity when it opened (the
    starting balance plus the profit of the trades closed before), and the starting balance."""
    doc = read_export(path)
    out = []
    for name, trades in export_trades(path).items():
        start = float(doc["strategy"][name].get("starting_balance")
                      or doc["strategy"][name].get("dry_run_wallet") or 0.0)
        if start <= 0:
            raise InvalidInput(f"{path} {name}", start, "no starting_balance in the export")
        closes = sorted((int(t.get("close_timestamp") or 0), float(t.get("profit_abs") or 0.0))
                        for t in trades)
        rets = []
        for t in trades:
            opened = int(t["open_timestamp"])
            equity = start + sum(p for c, p in closes if c <= opened)
            rets.append(float(t.get("profit_abs") or 0.0) / equity)
        out.append((name, np.asarray(rets, dtype=np.float64), start))
    return out


def export_signals(path: str | Path, timestamps: Any, strategy: str | None = None,
                   symbols: Sequence[str] = ()) -> pl.DataFrame:
    """The entries of an export as a signal frame for :func:`signals_from_file`: at the candle
    before each trade's open (the signal candle; it acts at the open), its pair, side and stop
    distance (``atr`` = |open rate - stop|, ``atr_mult`` 1), and at the candle before a
    signal exit, that exit. The stop is the one freqtrade held (``stop_loss_abs``, else the
    initial one). One pair on one candle series (``symbols``, e.g. ``BTC_USD``) is that
    series whatever its name."""
    ts = np.asarray(timestamps, dtype=np.int64)
    per = export_trades(path, strategy)
    if strategy is None and len(per) > 1:
        raise InvalidInput("signals", str(path), f"the export holds {len(per)} strategies "
                           f"({', '.join(per)}): keep one")
    # one row per (candle, pair): an exit and the next entry often share a candle
    merged: dict[tuple[int, str], list[Any]] = {}

    def add(at: int, symbol: str, entry: int, exit_code: int, atr: float | None) -> None:
        k = int(np.searchsorted(ts, at)) - 1  # the candle before: its close is the signal
        if k < 0:
            return
        row = merged.setdefault((int(ts[k]), symbol), [0, 0, None])
        if entry:
            row[0], row[2] = entry, atr
        row[1] |= exit_code

    for trades in per.values():
        for t in trades:
            short = bool(t.get("is_short"))
            stop = t.get("stop_loss_abs") or t.get("initial_stop_loss_abs")
            dist = abs(float(t["open_rate"]) - float(stop)) if stop else None
            add(int(t["open_timestamp"]), str(t["pair"]), -1 if short else 1, 0, dist or None)
            if t.get("exit_reason") == "exit_signal" and t.get("close_timestamp"):
                add(int(t["close_timestamp"]), str(t["pair"]), 0, 2 if short else 1, None)
    pairs = {k[1] for k in merged}
    if len(symbols) == 1 and len(pairs) == 1 and symbols[0] not in pairs:
        merged = {(k[0], symbols[0]): v for k, v in merged.items()}
    keys = sorted(merged)
    rows = {"timestamp": [k[0] for k in keys], "symbol": [k[1] for k in keys],
            "entry": [merged[k][0] for k in keys], "exit": [merged[k][1] for k in keys],
            "atr": [merged[k][2] for k in keys],
            "atr_mult": [1.0 if merged[k][2] is not None else None for k in keys]}
    return pl.DataFrame(rows, schema={"timestamp": pl.Int64, "symbol": pl.Utf8, "entry": pl.Int64,
                                      "exit": pl.Int64, "atr": pl.Float64,
                                      "atr_mult": pl.Float64})
