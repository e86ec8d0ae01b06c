"""Sizing-policy sweeps: every cell equals the same backtest run alone, on a real 2-worker Dask
cluster on loopback; a resumed sweep computes only the missing cells; the CLI's contracts."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_path
from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest import sweep as sw
from sizeguard.backtest.candles import align, load_candles
from sizeguard.backtest.engine import run_backtest
from sizeguard.backtest.results import metrics
from sizeguard.backtest.signals import build_signals
from sizeguard.cli.main import app
from sizeguard.config.settings import load_policy
from sizeguard.errors import InvalidInput

GRID = ["sizing.risk=0.005,0.02", "limits.max_notional=800,5000"]


def write_walk(path: Path, n: int = 3_000, seed: int = 7) -> Path:
    """A random-walk hourly BTC-like candle file (the sweep must not need the shared data)."""
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    op = np.concatenate([[close[0]], close[:-1]])
    hi = np.maximum(op, close) * (1 + rng.uniform(0, 0.006, n))
    lo = np.minimum(op, close) * (1 - rng.uniform(0, 0.006, n))
    ts = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 3_600_000
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{t},{o!r},{h!r},{lo_!r},{c!r},1.0" for t, o, h, lo_, c
              in zip(ts.tolist(), op.tolist(), hi.tolist(), lo.tolist(), close.tolist(),
                                     strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_walk(tmp_path_factory.mktemp("sweep") / "BTC_USD-1h.csv")


@pytest.fixture(scope="module")
def candle_set(candles: Path) -> sw.CandleSet:
    book = load_markets()
    return sw.CandleSet.build("walk", align([load_candles(candles)]), [book["BTC/USDT:USDT"]])


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    c = sw.local_client(2)
    try:
        yield c
    finally:
        cluster = c.cluster
        c.close()
        cluster.close()


def cells_for(cs: sw.CandleSet, grid: list[str] = GRID, **opts: Any) -> list[sw.Cell]:
    params = sw.param_sets(sw.parse_grid(grid))
    return sw.expand([load_policy("ai-atr-risk")], params, [cs], ["ema-cross"],
                     sw.EngineOptions(mc_paths=300, **opts))


def test_every_cell_equals_the_backtest_run_alone(candle_set: sw.CandleSet, client: Any) -> None:
    cells = cells_for(candle_set)
    assert len(cells) == 4  # 2 x 2 grid
    result = sw.run_sweep(cells, [candle_set], client=client)
    assert result.workers == 2 and result.computed == 4
    sig = build_signals(candle_set.panel, "ema-cross")
    for cell, got in zip(cells, result.metrics, strict=True):
        # the policy built the way a user would: the preset plus --set for each swept key
        pol = load_policy("ai-atr-risk", None, [f"{k}={v}" for k, v in cell.params.items()])
        alone = metrics(run_backtest(candle_set.panel, sig, list(candle_set.markets), pol))
        for key, value in alone.items():
            if isinstance(value, float) and not math.isfinite(value):
                assert got[key] is None
            else:
                assert got[key] == value, (cell.label(), key)
        assert 0.0 <= got["probability_of_ruin"] <= 1.0
    # the swept keys really change the outcome (a sweep of identical cells proves nothing)
    assert len({m["final_equity"] for m in result.metrics}) == 4


def test_resumed_sweep_computes_only_the_missing_cells(candle_set: sw.CandleSet, client: Any,
                                                       tmp_path: Path) -> None:
    cache = sw.CellCache(tmp_path / "cache")
    cells = cells_for(candle_set)
    seen: list[int] = []

    def interrupt(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            raise KeyboardInterrupt  # the user's Ctrl-C after two cells landed

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(cells, [candle_set], client=client, cache=cache, progress=interrupt)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2
    again = sw.run_sweep(cells, [candle_set], client=client, cache=cache)
    assert again.computed == 2
    fresh = sw.run_sweep(cells, [candle_set])  # no cache, plain loop
    assert again.metrics == fresh.metrics
    # a wider grid reuses the four finished cells and computes the two new ones
    wider = cells_for(candle_set, ["sizing.risk=0.005,0.02,0.01", "limits.max_notional=800,5000"])
    assert sw.run_sweep(wider, [candle_set], client=client, cache=cache).computed == 2
    # another engine option is another cell
    other = cells_for(candle_set, intrabar="ordered")
    assert {c.key for c in other}.isdisjoint(c.key for c in cells)


def test_a_candle_set_with_tiers_travels_to_workers(candle_set: sw.CandleSet) -> None:
    """Regression: a compiled (mypyc) frozen Tier could not be unpickled on a Dask worker."""
    import pickle

    import cloudpickle

    assert candle_set.markets[0].tiers  # the built-in BTC perpetual carries Binance's brackets
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        back = loads(dumps(candle_set))
        assert back.markets == candle_set.markets and back.digest == candle_set.digest


def test_grid_sample_and_ranges() -> None:
    grid = sw.parse_grid(["sizing.risk=0.005,0.01,0.02", "leverage.max=10,20,30"])
    assert grid == {"sizing.risk": [0.005, 0.01, 0.02], "leverage.max": [10, 20, 30]}
    assert len(sw.param_sets(grid)) == 9
    r = sw.parse_range("sizing.risk=0.002:0.03:log")
    pts = sw.param_sets({}, [r], sample=50, seed=3)
    assert pts == sw.param_sets({}, [r], sample=50, seed=3)  # reproducible
    assert all(0.002 <= p["sizing.risk"] <= 0.03 for p in pts)
    ints = sw.param_sets({}, [sw.parse_range("leverage.max=5:30:int")], sample=20)
    assert all(isinstance(p["leverage.max"], int) and 5 <= p["leverage.max"] <= 30 for p in ints)
    for bad in ("sizing.risk=0.03:0.002", "sizing.risk=a:b", "risk=1:2", "sizing.risk=0:1:log"):
        with pytest.raises(InvalidInput, match="--range"):
            sw.parse_range(bad)
    with pytest.raises(InvalidInput, match="--grid"):
        sw.parse_grid(["sizing.risk"])
    with pytest.raises(InvalidInput, match="ranges need --sample"):
        sw.param_sets({}, [r])


def test_leverage_max_below_a_fixed_value_lowers_the_value() -> None:
    base = load_policy("ai-atr-risk")  # fixed 30x
    assert base.leverage.value == 30
    p = sw.apply_params(base, {"leverage.max": 10})
    assert (p.leverage.value, p.leverage.max) == (10, 10)
    assert sw.apply_params(base, {"leverage.max": 50}).leverage.value == 30
    with pytest.raises(InvalidInput, match=r"sizing\.nope"):
        sw.apply_params(base, {"sizing.nope": 1})


def test_fold_windows_and_walk_forward(candle_set: sw.CandleSet) -> None:
    plan = sw.fold_windows(1_000, 4)
    # parts of 250 bars: fold k chooses on [0, 250k) and reports on [250k, 250(k+1))
    assert plan == [((0, 250), (250, 500)), ((0, 500), (500, 750)), ((0, 750), (750, 1000))]
    with pytest.raises(InvalidInput, match="--folds"):
        sw.fold_windows(1_000, 1)
    plan = sw.fold_windows(candle_set.panel.n_bars, 3)
    windows = list(dict.fromkeys(w for pair in plan for w in pair))
    params = sw.param_sets(sw.parse_grid(["sizing.risk=0.005,0.02"]))
    cells = sw.expand([load_policy("ai-atr-risk")], params, [candle_set], ["ema-cross"],
                      sw.EngineOptions(mc_paths=0), windows)
    result = sw.run_sweep(cells, [candle_set])
    folds = sw.walk_forward(plan, result, "total_return")
    assert len(folds) == 2
    for f, (train, test) in zip(folds, plan, strict=True):
        on_train = [i for i, c in enumerate(cells) if c.window == train]
        best = max(on_train, key=lambda i: result.metrics[i]["total_return"])
        assert f.chosen == best and f.in_sample == result.metrics[best]
        twin = next(i for i, c in enumerate(cells)
                    if c.window == test and c.params == cells[best].params)
        assert f.out_of_sample == result.metrics[twin]


runner = CliRunner()


def test_cli_json_contract_and_outputs(candles: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "cells.csv", tmp_path / "sweep.html"
    args = ["sweep", "--candles", str(candles), "--preset", "ai-atr-risk",
            "--grid", "sizing.risk=0.005,0.02", "--workers", "0", "--montecarlo", "200",
            "--cache", str(tmp_path / "c"), "--out", str(out), "--report", str(report),
            "--folds", "2", "--rank", "total_return", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert all({"params", "metrics"} <= set(c) for c in doc["cells"])
    assert {tuple(c["params"].items()) for c in doc["cells"]} == {
        (("sizing.risk", 0.005),), (("sizing.risk", 0.02),)}
    returns = [c["metrics"]["total_return"] for c in doc["cells"]]
    assert returns == sorted(returns, reverse=True)  # ranked
    bt = runner.invoke(app, ["backtest", "--candles", str(candles), "--preset", "ai-atr-risk",
                             "--set", "sizing.risk=0.02", "--json"])
    assert bt.exit_code == 0, bt.output
    alone = json.loads(bt.stdout)[0]
    cell = next(c for c in doc["cells"] if c["params"] == {"sizing.risk": 0.02})
    assert set(alone) <= set(cell["metrics"])
    assert cell["metrics"]["final_equity"] == alone["final_equity"]
    assert len(doc["walk_forward"]["BTC_USD-1h"]) == 1
    assert out.read_text().splitlines()[0].startswith("key,policy,candles,strategy,window")
    page = report.read_text()
    assert "Frontier" in page and "Walk-forward" in page and "<svg" in page
    again = runner.invoke(app, args)
    assert json.loads(again.stdout)["computed"] == 0  # everything from the cache


def test_cli_sends_the_sweep_to_a_running_scheduler(candles: Path, client: Any,
                                                    tmp_path: Path) -> None:
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    plot = tmp_path / "frontier.svg"
    res = runner.invoke(app, ["sweep", "--candles", str(candles), "--grid",
                              "sizing.risk=0.005,0.02", "--scheduler", address, "--montecarlo",
                              "100", "--no-cache", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert "2 cell(s) computed on 2 Dask worker(s)" in res.stdout
    assert plot.read_text().startswith("<svg")
    res = runner.invoke(app, ["sweep", "--candles", str(candles), "--scheduler",
                              "tcp://127.0.0.1:9", "--no-cache"])
    assert res.exit_code == 2 and "--scheduler" in res.stderr


@pytest.mark.parametrize(("extra", "named"), [
    (["--grid", "sizing.nope=1,2"], "sizing.nope"),
    (["--grid", "sizing.risk"], "--grid"),
    (["--rank", "sharp"], "did you mean 'sharpe'"),
    (["--folds", "1"], "--folds"),
    (["--strategy", "file"], "--strategy"),
    (["--out", "nodir/x.csv"], "--out"),
    (["--out", "cells.xlsx"], "--out"),
    (["--range", "sizing.risk=1:2"], "--range"),
    (["--preset", "ai-atr-rsk"], "did you mean 'ai-atr-risk'"),
])
def test_cli_bad_input_is_one_line_exit_2(candles: Path, tmp_path: Path, extra: list[str],
                                          named: str) -> None:
    res = runner.invoke(app, ["sweep", "--candles", str(candles), "--workers", "0",
                              "--montecarlo", "0", "--no-cache", *extra])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert named in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_candles_quoted_in_another_currency_are_refused_as_in_backtest(tmp_path: Path) -> None:
    eth_btc = write_walk(tmp_path / "ETH_BTC-1h.csv", n=300)
    res = runner.invoke(app, ["sweep", "--candles", str(eth_btc), "--workers", "0",
                              "--no-cache"])
    assert res.exit_code == 2, res.output
    assert "quoted in BTC" in res.stderr and "--symbol" in res.stderr
    bt = runner.invoke(app, ["backtest", "--candles", str(eth_btc)])
    assert bt.exit_code == 2 and bt.stderr.strip().split(": ", 1)[1] == \
        res.stderr.strip().split(": ", 1)[1]


@pytest.mark.shared_data
def test_real_candles_sweep(tmp_path: Path) -> None:
    btc = shared_path("ohlcv", "coinbase", "BTC_USD-1d.csv")
    res = runner.invoke(app, ["sweep", "--candles", str(btc), "--preset", "ai-atr-risk",
                              "--preset", "quantum-4x30", "--grid", "leverage.max=5,20",
                              "--workers", "0", "--montecarlo", "200", "--no-cache", "--json"])
    assert res.exit_code == 0, res.output
    cells = json.loads(res.stdout)["cells"]
    assert len(cells) == 4 and {c["policy"] for c in cells} == {"ai-atr-risk", "quantum-4x30"}
    for c in cells:  # leverage never above the swept cap
        assert c["metrics"]["avg_leverage"] <= c["params"]["leverage.max"] + 1e-9


def test_bench_prints_one_json_object_per_case() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "bench" / "bench_sweep.py"), "--cells", "2",
                          "--bars", "1500", "--paths", "20", "--json"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["case"] for r in rows] == ["plain loop", "dask, 1 worker", "dask, 2 workers",
                                         "dask overhead per cell (1 worker)"]
    for r in rows[1:3]:
        assert r["unit"] == "cells/s" and r["baseline"] == "plain loop"
        assert r["ratio"] == round(r["value"] / r["baseline_value"], 3) or \
            abs(r["ratio"] - r["value"] / r["baseline_value"]) < 0.01
    assert "vs loop" in out.stderr  # the human report
