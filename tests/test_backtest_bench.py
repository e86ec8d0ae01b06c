"""The backtest bench runs on a small input and skips a competitor that is not installed; its
``--json`` lines feed the README's performance table (``bench/perf_table.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_skips_absent_competitors_cleanly() -> None:
    code = ("import sys, runpy; sys.modules['vectorbt'] = None; sys.modules['backtrader'] = None; "
            "sys.argv = ['bench', '--bars', '3000', '--ema', '10/40', '--repeat', '1', '--json']; "
            f"runpy.run_path({str(ROOT / 'bench' / 'bench_backtest.py')!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr
    # with --json the report goes to stderr and stdout holds one JSON object per case
    assert "vectorbt    skipped: not installed" in out.stderr
    assert "backtrader  skipped: not installed" in out.stderr
    assert "sizeguard" in out.stderr and "decide() calls" in out.stderr
    (line,) = out.stdout.splitlines()
    row = json.loads(line)
    assert row["bench"] == "backtest" and row["unit"] == "ms" and row["value"] > 0
    assert row["case"] == f"0.003M bars, {row['entries']:,} entries"
    assert "baseline" not in row  # no alternative ran


def test_perf_table_from_json_lines(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import perf_table
    finally:
        sys.path.pop(0)
    lines = [
        json.dumps({"bench": "backtest", "case": "1M bars, 2,617 entries", "value": 80.0,
                    "unit": "ms", "baseline": "vectorbt from_signals", "baseline_value": 100.0,
                    "ratio": 1.25, "per_entry_us": 25.0, "time": "CPU", "wall": 90.0,
                    "backtrader_value": 66_000.0,
                    "backtrader_ratio": 825.0, "goal": ">= 1.0x vectorbt", "met": True,
                    "cpus": 2, "load": 1.5}),
        "",
        json.dumps({"bench": "decide", "case": "decide, tiers + guard", "value": 12.5,
                    "unit": "us", "wall": 13.0, "goal": "<= 10 us CPU", "met": False,
                    "cpus": 2, "load": 2.0}),
        json.dumps({"bench": "http", "case": "reserved decisions", "value": 1500.0,
                    "unit": "decisions/s", "baseline": "bare FastAPI endpoint",
                    "baseline_value": 10_000.0, "ratio": 0.15, "p50_ms": 9.0, "p99_ms": 20.0}),
        json.dumps({"bench": "decide", "case": "decide, no tiers", "value": 40.0, "unit": "us",
                    "baseline": "bare formula", "baseline_value": 0.2, "ratio": 0.005}),
    ]
    text = perf_table.table(perf_table.read(lines))
    rows = text.splitlines()
    # ordered decide, backtest, http (in input order within a bench); ratios as given; goals
    # reached or not
    assert rows[2] == ("| `bench_decide.py` | decide, tiers + guard | 12.5 us CPU (13.0 wall) | - "
                       "| <= 10 us CPU: **not reached** |")
    assert rows[4] == ("| `bench_backtest.py` | 1M bars, 2,617 entries | 80.0 ms CPU (90.0 wall); "
                       "25.0 us per entry "
                       "| vectorbt from_signals 100 ms (sizeguard **1.25x**); backtrader 66,000 ms "
                       "(sizeguard **825x**) | >= 1.0x vectorbt: reached |")
    assert rows[5].startswith("| `bench_http.py` | reserved decisions | 1,500 decisions/s; p50 9.00 "
                              "ms, p99 20.0 ms | bare FastAPI endpoint 10,000 decisions/s "
                              "(sizeguard 0.15x)")
    assert rows[3].endswith("| bare formula 0.20 us (sizeguard 200x slower) | - |")
    assert "load average 1.50-2.00" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{perf_table.START}\nold\n{perf_table.END}\n\nafter\n")
    perf_table.rewrite(readme, text)
    body = readme.read_text()
    assert "old" not in body and text in body and body.endswith("after\n")
    with pytest.raises(SystemExit, match=r"-:1: needs the keys"):
        perf_table.read(['{"bench": "x"}'])
