"""The compiled (mypyc) and the pure-Python decision core: identical answers, never a stale build.

The compiled comparison runs two subprocesses (about 5-10 s); it skips where no current compiled
build sits beside the sources (``pip install -e .`` on a machine with a C compiler makes one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sizeguard import _native

SRC = Path(__file__).resolve().parents[1] / "src"

# Decides a fixed pseudo-random set of intents over the built-in markets and presets and prints
# every decision as JSON, with the build that answered.
_DECIDE_MANY = """
import json, random, sys
from sizeguard import Account, Intent, InvalidInput, _native, decide
from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Position
book = load_markets(None)
markets = list(book.values())
presets = ["ai-atr-risk", "viper-fixed-margin", "viper-50x", "quantum-4x30", "kraken-micro"]
guards = ["lower_leverage", "shrink", "refuse", "off"]
# every path of the pipeline: cross margin, adds, raises to the minimum, auto and fractional
# leverage, fees left out of the risk, limit orders, Kelly and volatility targeting
extras = [[], ['leverage.margin_mode="cross"'], ["limits.allow_add=true"],
          ['execution.below_minimum="raise"'], ['leverage.mode="auto"'],
          ["leverage.integer=false"], ["sizing.fees_in_risk=false"],
          ['execution.order_type="limit"'], ['sizing.model="kelly"'],
          ['sizing.model="volatility_target"', "sizing.target_volatility=0.02"]]
rng = random.Random(int(sys.argv[1]))
out = []
for k in range(int(sys.argv[2])):
    m = rng.choice(markets)
    try:
        policy = load_policy(rng.choice(presets), sets=[
            f'liquidation.guard="{rng.choice(guards)}"', *rng.choice(extras)])
    except Exception as exc:  # a preset refusing an extra is an answer too
        out.append(type(exc).__name__)
        continue
    side = "short" if m.is_contract and rng.random() < 0.5 else "long"
    price = 10 ** rng.uniform(-2, 5)
    stop = {"stop_pct": rng.uniform(0.2, 20)} if rng.random() < 0.5 else {
        "atr": price * rng.uniform(0.002, 0.08)}
    equity = 10 ** rng.uniform(1, 6)
    held = ()
    if rng.random() < 0.4:  # an open position: on this symbol (an add) or another
        n = equity * rng.uniform(0.1, 3)
        held = (Position(m.symbol if rng.random() < 0.7 else "X/Y", side, n,
                         n / rng.uniform(1, 20), n * 0.01, rng.uniform(-0.05, 0.05) * n,
                         entry=price * rng.uniform(0.9, 1.1) if rng.random() < 0.8 else 0.0),)
    account = Account(equity=equity, positions=held)
    if held and rng.random() < 0.5:  # more held on it (reservations), added one at a time
        account.held_fold(held[0].symbol, side)
        for _ in range(rng.randrange(1, 9)):
            n = equity * rng.uniform(0.01, 0.3)
            account = account.with_position(Position(
                held[0].symbol, side, n, n / rng.uniform(1, 20), n * 0.01, 0.0,
                entry=price * rng.uniform(0.9, 1.1) if rng.random() < 0.9 else 0.0))
    try:
        d = decide(Intent(m.symbol, side, price, confidence=rng.random(), **stop),
                   account, m, policy)
        out.append(d.to_dict())
    except InvalidInput as exc:
        out.append(str(exc))
print(json.dumps({"compiled": _native.compiled(), "decisions": out}))
"""


def _decide_many(pure: bool, seed: int = 7, n: int = 1500) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("SIZEGUARD_PURE", None)
    if pure:
        env["SIZEGUARD_PURE"] = "1"
    done = subprocess.run([sys.executable, "-c", _DECIDE_MANY, str(seed), str(n)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


# Backtests two symbols of random-walk bars (longs and shorts, adds, isolated and cross margin,
# funding) and prints every ledger row, the equity curve and the skips as JSON, with the build.
_BACKTEST = """
import json, sys
import numpy as np
from sizeguard import _native
from sizeguard.adapters.market_files import load_markets
from sizeguard.backtest.candles import Panel
from sizeguard.backtest.engine import run_backtest
from sizeguard.backtest.signals import ema_cross
from sizeguard.config import load_policy
book = load_markets(None)
rng = np.random.default_rng(int(sys.argv[1]))
n, k = 20_000, 2
close = np.array([30_000.0, 2_000.0]) * np.exp(np.cumsum(rng.normal(0, 0.002, (n, k)), axis=0))
open_ = np.vstack([close[:1], close[:-1]])
wick = np.abs(rng.normal(0, 0.001, (n, k, 2))) * close[:, :, None]
high, low = np.maximum(open_, close) + wick[:, :, 0], np.minimum(open_, close) - wick[:, :, 1]
ts = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
panel = Panel(("BTC", "ETH"), ts, open_, high, low, close, close.copy(), 60_000)
signals = ema_cross(panel, 20, 80, tp_r=2.0)
# more entries on the side of the last cross, now and then (adds, when allowed)
entry = signals.entry
last = np.maximum.accumulate(np.where(entry != 0, np.arange(n)[:, None], 0), axis=0)
again = np.take_along_axis(entry, last, axis=0) * (rng.random((n, k)) < 0.01)
entry[:] = np.where(entry != 0, entry, again)
markets = [book["BTC/USDT:USDT"], book["ETH/USDT:USDT"]]
out = []
for sets in ([], ["limits.allow_add=true"], ['leverage.margin_mode="cross"']):
    policy = load_policy("ai-atr-risk", None, sets)
    r = run_backtest(panel, signals, markets, policy, funding_rate=0.0001)
    out.append({"trades": r.trades, "equity": r.equity.tolist(), "skips": dict(r.skips),
                "decisions": r.decisions, "adds": r.adds, "liquidations": r.liquidations})
print(json.dumps({"compiled": _native.compiled(), "runs": out}))
"""


def _backtest(pure: bool) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("SIZEGUARD_PURE", None)
    if pure:
        env["SIZEGUARD_PURE"] = "1"
    done = subprocess.run([sys.executable, "-c", _BACKTEST, "11"], capture_output=True,
                          text=True, env=env, check=True, timeout=300)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_compiled_and_pure_python_backtest_identically() -> None:
    # the entry side (backtest/entries.py) is compiled with the core: the same ledgers, equity
    # curves, skips and counts, to the last bit
    if os.environ.get("SIZEGUARD_PURE") == "1" or not _native.usable():
        pytest.skip("no current compiled build beside the sources (pure Python only)")
    compiled, pure = _backtest(pure=False), _backtest(pure=True)
    assert compiled["compiled"] is True and pure["compiled"] is False
    runs = compiled["runs"]
    assert isinstance(runs, list) and all(run["decisions"] > 50 for run in runs)
    assert runs[1]["adds"] > 0 and runs[0]["trades"] != runs[2]["trades"]
    assert json.dumps(compiled["runs"]) == json.dumps(pure["runs"])  # types too (23 is not 23.0)


def test_compiled_and_pure_python_decide_identically() -> None:
    if os.environ.get("SIZEGUARD_PURE") == "1" or not _native.usable():
        pytest.skip("no current compiled build beside the sources (pure Python only)")
    for seed, n in ((7, 1500), (1, 100)):  # seed 1 reaches the guard's refusal with whole leverage
        compiled, pure = _decide_many(pure=False, seed=seed, n=n), _decide_many(pure=True, seed=seed, n=n)
        assert compiled["compiled"] is True and pure["compiled"] is False
        # as JSON text: 23 == 23.0 in Python, but a script reading the answer sees an int or a float
        assert json.dumps(compiled["decisions"]) == json.dumps(pure["decisions"])


def test_pure_is_forced_by_the_environment() -> None:
    assert _decide_many(pure=True, n=1)["compiled"] is False


def _fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, past: float) -> str:
    """A package in ``tmp_path`` with every compiled module's source and (empty) build, all
    written at ``past``; returns the extension suffix."""
    monkeypatch.setattr(_native, "PACKAGE", tmp_path)
    monkeypatch.setattr(_native, "ROOT", tmp_path)
    monkeypatch.delenv("SIZEGUARD_PURE", raising=False)
    suffix = _native.SUFFIXES[0]
    for name in _native.COMPILED:
        source = tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        os.utime(source, (past, past))
        source.with_name(source.stem + suffix).write_text("")
    return suffix


def test_a_build_older_than_its_source_is_never_used(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    past = time.time() - 60
    suffix = _fake_build(tmp_path, monkeypatch, past)
    assert not _native.usable()  # shims without the group's shared library cannot run
    shared = tmp_path / f"0123__mypyc{suffix}"
    shared.write_text("")
    assert _native.usable()
    decide = tmp_path / "core" / "decide.py"
    later = time.time() + 10  # edited well after the build
    os.utime(decide, (later, later))
    assert not _native.usable()
    soon = past + _native.SLACK_S / 2  # written with its build by an installer: still current
    os.utime(decide, (soon, soon))
    assert _native.usable()
    os.utime(decide, (past, past))
    (tmp_path / "core" / f"limits{suffix}").unlink()  # an incomplete build
    assert not _native.usable()


def test_the_backtest_entry_side_is_part_of_the_build(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # compiled with the core beyond core/: an edit of it (or its build missing) sends the whole
    # group back to the source, and its module is then imported from its .py file
    assert "backtest.entries" in _native.COMPILED
    past = time.time() - 60
    suffix = _fake_build(tmp_path, monkeypatch, past)
    (tmp_path / f"0123__mypyc{suffix}").write_text("")
    assert _native.usable()
    entries = tmp_path / "backtest" / "entries.py"
    later = time.time() + 10
    os.utime(entries, (later, later))
    assert not _native.usable()
    os.utime(entries, (past, past))
    (tmp_path / "backtest" / f"entries{suffix}").unlink()
    assert not _native.usable()
    finder = _native._SourceFirst(_native.COMPILED)  # noqa: SLF001 - the stale build's finder
    spec = finder.find_spec("sizeguard.backtest.entries")
    assert spec is not None and spec.origin == str(entries)
    assert finder.find_spec("sizeguard.backtest.engine") is None  # never compiled: untouched


def test_a_stale_entry_side_is_not_imported() -> None:
    # in a process whose build is stale (or pure), the entry side runs from its source
    code = ("import sizeguard.backtest.entries as e, sizeguard._native as n; "
            "print(e.__file__.endswith('.py'), n.compiled())")
    env = {**os.environ, "PYTHONPATH": str(SRC), "SIZEGUARD_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout.split()
    assert out == ["True", "False"]


def test_the_numba_kernels_are_python_functions_from_their_source() -> None:
    # the backtest hands these modules' functions to numba, which compiles Python bytecode: on
    # the compiled build _native.source loads the same .py files, and every function has a
    # __code__ (the compiled module's own functions do not), its imports of the other kernels
    # bound to their source copies too
    import importlib

    for name in _native.KERNELS:
        module = importlib.import_module(f"sizeguard.core.{name}")
        src = _native.source(name)
        assert str(src.__file__).endswith(f"{name}.py")
        functions = [f for f in vars(src).values()
                     if callable(f) and getattr(f, "__module__", None) == src.__name__
                     and not isinstance(f, type)]
        assert functions and all(hasattr(f, "__code__") for f in functions), name
        kernel = {"lots": "floor_lots_float", "models": "fee_rate_to_stop",
                  "liquidation": "venue_liquidation_price", "position": "pnl"}[name]
        assert hasattr(getattr(src, kernel), "__code__")
        if _native.compiled():  # the module itself is the mypyc build: no bytecode to hand over
            assert src is not module and not hasattr(getattr(module, kernel), "__code__")
        else:
            assert src is module
    position = _native.source("position")
    assert hasattr(position.venue_liquidation_price, "__code__")  # liquidation's source copy
    assert hasattr(position.risk_of_notional, "__code__")  # models' source copy
    with pytest.raises(ValueError, match="kernel"):
        _native.source("decide")
    from sizeguard.core import liquidation

    # what the backtest hands numba: the same function, from the source copy
    kernel = _native.python_source(liquidation.venue_liquidation_price)
    assert kernel is _native.source("liquidation").venue_liquidation_price
    assert kernel(0, True, False, 100.0, 1_000.0, 100.0, 0.004, 0.0, 0.0) == \
        liquidation.venue_liquidation_price(0, True, False, 100.0, 1_000.0, 100.0, 0.004, 0.0, 0.0)

