"""Median microseconds of one sizing decision, beside a bare risk-formula baseline, in one run.

    .venv/bin/python bench/bench_decide.py [--number N] [--repeat R] [--held 0,25,50,125]

Cases (all offline, on the built-in example markets, the ai-atr-risk reference case of DESIGN.md:
equity 8,930.41, BTC 87,669 long, ATR 2,000, confidence 0.52):

* ``bare formula``: plain Python ``risk / (distance + fees) / price`` floored to the lot step;
  what a bot does without sizeguard, and the floor any decision is measured against.
* ``decide, no tiers, guard off``: the full pipeline through the public API (validation,
  gates, risk model, adjustments, limits, exchange rules, the trace and the Decision) on a
  market without leverage tiers, with the liquidation guard off.
* ``decide, tiers + guard``: the same with Binance's 2026 BTC brackets attached and the
  guard on; on this case it lowers the leverage from 30x to 21x, so step 7 does real work.
* ``to_dict, tiered decision``: that decision's JSON dict (``Decision.to_dict``, its trace
  included), what the HTTP service answers and the journal stores; the decision is made once.
* ``to_dict, an add``: the dict of an add to an open BTC long (or a reservation held for one)
  under ``limits.allow_add``, whose trace has the add's extra steps.

Each case runs ``repeat`` batches of ``number`` calls after a warm-up; each batch is timed with
``time.perf_counter_ns`` (wall) and ``time.process_time_ns`` (CPU of this process), and the
printed figures are the median batch's time per call, with the ratio to the baseline.

``--held N,...`` adds a case per N (after the others; the goal and ratios are unchanged): an
*add* decided against an account holding N reservations on the same symbol and side, as the
HTTP service's shared account holds them (bench/bench_http.py: viper-fixed-margin, 100
notional a trade at 50x, adding allowed, the built-in BTC market with its tiers and the
guard on). Every one of them is joined by the add (steps 5b, 7b and 8b), so this shows how a
decision's cost grows with the reservations held. ``add to N held`` decides again and again on
one account; ``batch of 8, add to N held`` is the service's group commit: the account built
afresh with the N held (as loaded from the store), then 8 decisions, each reserving (the
account grown by ``with_position``), timed per decision, the account's construction included.
The account merges the held position once (``Account.held_fold``) and grows it by each
reservation, so neither case walks the N positions per decision.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchjson import json_output
from sizeguard._native import compiled
from sizeguard.adapters.market_files import load_markets
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent

BUILD = "compiled (mypyc)" if compiled() else "pure Python"
SYMBOL = "BTC/USDT:USDT"
EQUITY, PRICE, ATR, CONFIDENCE = 8_930.41, 87_669.0, 2_000.0, 0.52


def bare_formula(equity: float = EQUITY, risk: float = 0.005, entry: float = PRICE,
                 stop: float = PRICE - 1.5 * ATR, fee: float = 0.0005,
                 step: float = 0.001) -> float:
    """Risk money over stop distance plus round-trip fees, in base units floored to the step."""
    distance = abs(entry - stop) / entry
    notional = equity * risk / (distance + 2.0 * fee)
    return math.floor(notional / entry / step) * step


def cases() -> list[tuple[str, Callable[[], object]]]:
    market = load_markets(None)[SYMBOL]
    bare_market = replace(market, tiers=(), max_leverage=125.0)
    guarded = load_policy("ai-atr-risk")
    unguarded = load_policy("ai-atr-risk", sets=['liquidation.guard="off"'])
    intent = Intent(SYMBOL, "long", PRICE, atr=ATR, confidence=CONFIDENCE)
    account = Account(equity=EQUITY)
    # sanity: every case computes what it claims, once, before it is timed
    plain = decide(intent, account, bare_market, unguarded)
    tiered = decide(intent, account, market, guarded)
    assert plain.accepted and plain.leverage == 30.0 and plain.tier is None
    assert tiered.accepted and tiered.leverage == 21.0 and tiered.tier == 1
    assert abs(bare_formula() - 0.014) < 1e-12
    adding = load_policy("ai-atr-risk", sets=["limits.allow_add=true"])
    held = Account(equity=EQUITY, positions=(
        Position(SYMBOL, "long", 600.0, 30.0, 2.4, 5.0, entry=86_000.0),))
    add = decide(intent, held, market, adding)
    assert add.accepted and any(s.step.startswith("add") for s in add.trace), add.trace
    return [
        ("bare formula", bare_formula),
        ("decide, no tiers, guard off", lambda: decide(intent, account, bare_market, unguarded)),
        ("decide, tiers + guard", lambda: decide(intent, account, market, guarded)),
        ("to_dict, tiered decision", tiered.to_dict),
        ("to_dict, an add", add.to_dict),
    ]


BATCH = 8  # decisions per batch in the "batch" case (the HTTP bench's group commits ~8)


def held_cases(counts: list[int]) -> list[tuple[str, Callable[[], object], int]]:
    """An add to ``n`` held reservations (same symbol and side), per ``n`` in ``counts``: (name,
    function, decisions per call)."""
    market = load_markets(None)[SYMBOL]
    policy = load_policy("viper-fixed-margin", sets=["limits.allow_add=true"])
    intent = Intent(SYMBOL, "long", PRICE)
    out: list[tuple[str, Callable[[], object], int]] = []
    for n in counts:
        held = tuple(Position(SYMBOL, "long", 100.0, 2.0, 0.4, 0.0, entry=PRICE + 7.0 * (k % 13))
                     for k in range(n))
        account = Account(equity=EQUITY, positions=held)
        d = decide(intent, account, market, policy)
        assert d.accepted and 80.0 < d.notional <= 100.0, (n, d.notional, d.reasons)
        out.append((f"decide, add to {n} held", lambda i=intent, a=account, m=market,
                    p=policy: decide(i, a, m, p), 1))

        def batch(i: Intent = intent, h: tuple[Position, ...] = held, m: object = market,
                  p: object = policy) -> object:
            a = Account(equity=EQUITY, positions=h)  # loaded afresh, as a batch does
            for _ in range(BATCH):
                d = decide(i, a, m, p)  # type: ignore[arg-type]
                a = a.with_position(Position(d.symbol, d.side, d.notional, d.margin,
                                             entry=d.entry_price))
            return a

        out.append((f"batch of {BATCH}, add to {n} held", batch, BATCH))
    return out


# nautilus_trader's FixedRiskSizer on the same trade (its formula only: no tiers, guard or
# trace), timed the way median_us times ours. It runs in this interpreter when nautilus_trader
# imports here, else in the one bench/setup-nautilus made (it pins pandas < 3, which the bench
# extra's vectorbt environment does not), or the one SIZEGUARD_NAUTILUS_PYTHON names.
NAUTILUS = "nautilus_trader FixedRiskSizer"
_NAUTILUS_TIMER = """
import json, statistics, sys, time
from decimal import Decimal
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.objects import Money, Price
from nautilus_trader.risk.sizing import FixedRiskSizer
from nautilus_trader.test_kit.providers import TestInstrumentProvider
number, repeat = int(sys.argv[1]), int(sys.argv[2])
sizer = FixedRiskSizer(TestInstrumentProvider.btcusdt_perp_binance())
entry, stop = Price.from_str("87669.0"), Price.from_str("84669.0")  # 1.5 x ATR 2,000
equity, risk, fee, lot = Money(8930.41, USDT), Decimal("0.005"), Decimal("0.0005"), Decimal("0.001")
def fn():
    return sizer.calculate(entry, stop, equity, risk, commission_rate=fee, unit_batch_size=lot)
assert str(fn()) == "0.014", fn()
for _ in range(max(1, number // 10)):
    fn()
wall, cpu = [], []
for _ in range(repeat):
    w0, c0 = time.perf_counter_ns(), time.process_time_ns()
    for _ in range(number):
        fn()
    wall.append(time.perf_counter_ns() - w0)
    cpu.append(time.process_time_ns() - c0)
print(json.dumps([statistics.median(wall) / number / 1e3, statistics.median(cpu) / number / 1e3]))
"""


def nautilus_python() -> str | None:
    """An interpreter with nautilus_trader: this one, SIZEGUARD_NAUTILUS_PYTHON, or the
    bench/setup-nautilus environment; None when there is none."""
    if importlib.util.find_spec("nautilus_trader") is not None:
        return sys.executable
    named = os.environ.get("SIZEGUARD_NAUTILUS_PYTHON")
    local = Path(__file__).resolve().parents[1] / ".venv-nautilus" / "bin" / "python"
    for candidate in (named, str(local)):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def nautilus_us(number: int, repeat: int) -> tuple[float, float] | None:
    python = nautilus_python()
    if python is None:
        return None
    done = subprocess.run([python, "-c", _NAUTILUS_TIMER, str(number), str(repeat)],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        print(f"{NAUTILUS} did not run: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    wall, cpu = json.loads(done.stdout)
    return float(wall), float(cpu)


def median_us(fn: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """Median per-call time over ``repeat`` batches: (wall clock, this process's CPU time).

    Wall time (``perf_counter_ns``) is what a caller waits; on a shared, loaded machine the
    scheduler preempts long batches more than short ones, so the CPU time
    (``process_time_ns``) is the steadier figure to compare cases by.
    """
    for _ in range(max(1, number // 10)):  # warm-up
        fn()
    wall: list[int] = []
    cpu: list[int] = []
    for _ in range(repeat):
        w0, c0 = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(number):
            fn()
        wall.append(time.perf_counter_ns() - w0)
        cpu.append(time.process_time_ns() - c0)
    return (statistics.median(wall) / number / 1e3, statistics.median(cpu) / number / 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5_000, help="calls per batch")
    parser.add_argument("--repeat", type=int, default=15, help="batches per case")
    parser.add_argument("--held", type=lambda t: [int(x) for x in t.split(",") if x],
                        default=[], help="also time an add to N held reservations of the same "
                        "symbol and side, per N (comma-separated)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case per line "
                        "on stdout (the report goes to stderr)")
    args = parser.parse_args(argv)
    with json_output(args.json) as emit:
        code = report(args)
        base = RESULTS[0]
        naut = next((r for r in RESULTS if r[0].startswith(NAUTILUS)), None)
        for name, wall, cpu in RESULTS:  # every case beside the first (the baseline)
            extra = {} if name == base[0] else {"baseline": base[0], "baseline_value": base[2]}
            if name.startswith("decide, add to"):
                extra["build"] = BUILD
            if "tiers + guard" in name:
                if naut is not None:
                    extra = {"baseline": naut[0], "baseline_value": naut[2]}
                extra.update(goal="<= 10 us CPU", met=cpu <= 10, build=BUILD)
            emit("decide", name, cpu, "us", cpu=cpu, wall=wall, **extra)
    return code


RESULTS: list[tuple[str, float, float]] = []  # (case, wall us, cpu us) of the last report


def report(args: argparse.Namespace) -> int:

    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"decision core: {BUILD}")
    print(f"{args.repeat} batches x {args.number} calls per case; median batch, per call\n")
    results = [(name, *median_us(fn, args.number, args.repeat)) for name, fn in cases()]
    naut = nautilus_us(args.number, args.repeat)
    if naut is not None:
        results.append((f"{NAUTILUS} (formula)", *naut))
    else:
        print(f"({NAUTILUS}: not installed; bench/setup-nautilus makes its environment)\n")
    for name, fn, per in held_cases(args.held):
        wall, cpu = median_us(fn, max(1, args.number // per), args.repeat)
        results.append((name, wall / per, cpu / per))
    RESULTS[:] = results
    base_wall, base_cpu = results[0][1], results[0][2]
    print(f"{'case':32s} {'wall us':>9s} {'x base':>7s} {'cpu us':>9s} {'x base':>7s}")
    for name, wall, cpu in results:
        print(f"{name:32s} {wall:9.2f} {wall / base_wall:7.1f} {cpu:9.2f} {cpu / base_cpu:7.1f}")
    full, guarded = results[1][2], results[2][2]
    print(f"\ntiers + guard cost {guarded / full:.2f}x a decision without them (cpu); "
          f"goal <= 10 us per decision: {'met' if guarded <= 10 else 'not met'}")
    if naut is not None:
        print(f"the whole decision is {guarded / naut[1]:.2f}x {NAUTILUS}'s formula alone (cpu); "
              "moonshot <= 1.0x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
