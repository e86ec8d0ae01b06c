"""The backtest bench runs on a small input and skips a competitor that is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_skips_absent_competitors_cleanly() -> None:
    code = ("import sys, runpy; sys.modules['vectorbt'] = None; sys.modules['backtrader'] = None; "
            "sys.argv = ['bench', '--bars', '3000', '--ema', '10/40', '--repeat', '1']; "
            f"runpy.run_path({str(ROOT / 'bench' / 'bench_backtest.py')!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "vectorbt    skipped: not installed" in out.stdout
    assert "backtrader  skipped: not installed" in out.stdout
    assert "sizeguard" in out.stdout and "decide() calls" in out.stdout
