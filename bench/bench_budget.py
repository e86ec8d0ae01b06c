"""What a bot's budget costs a decision: ``sizeguard.budget.decide_for_bot`` for an unlimited
bot (the account view only) beside a bot with a share of the account (the account view and the
bot's own view), with 0, 25 or 100 of the bot's own reservations held, in one run.

    .venv/bin/python bench/bench_budget.py [--own 0,25,100] [--number 2000] [--repeat 9] [--json]

Each call is what the HTTP service does per request: a fresh :class:`~sizeguard.budget.Budget`
(the service makes one per request from the bot's row), the same policy object, the account
holding the bot's own reservations beside 25 of other bots, and an add to the bot's symbol
(every decision accepted, so the bot view is decided too). ``batch of 8``: eight decisions in
one unit of work, the account (and the bot's own positions) grown by each, as the store's group
commit does. Printed per case: the median batch's CPU time per decision (us).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

from benchjson import json_output
from sizeguard._native import compiled
from sizeguard.adapters.market_files import load_markets
from sizeguard.budget import Budget, bot_slots, decide_for_bot
from sizeguard.config import load_policy
from sizeguard.core.account import Account, Position
from sizeguard.core.intent import Intent

BUILD = "compiled (mypyc)" if compiled() else "pure Python"
SYMBOL, OTHER = "BTC/USDT:USDT", "ETH/USDT:USDT"
EQUITY, PRICE = 100_000.0, 87_669.0
BATCH = 8
SHARE = 0.5


def cases(own_counts: list[int]) -> list[tuple[str, Callable[[], object], int]]:
    markets = load_markets(None)
    market = markets[SYMBOL]
    policy = load_policy("viper-fixed-margin", sets=["limits.allow_add=true",
                                                     "limits.max_gross_exposure=1000000"])
    slots = policy.limits.max_positions
    intent = Intent(SYMBOL, "long", PRICE)
    others = tuple(Position(OTHER, "short", 100.0, 2.0, 0.4, 0.0, entry=3_000.0 + k)
                   for k in range(25))
    out: list[tuple[str, Callable[[], object], int]] = []
    for n in own_counts:
        own = tuple(Position(SYMBOL, "long", 100.0, 2.0, 0.4, 0.0, entry=PRICE + 7.0 * (k % 13))
                    for k in range(n))
        account = Account(equity=EQUITY, positions=(*others, *own))
        for share in (1.0, SHARE):
            label = "unlimited" if share >= 1.0 else f"budget {share:g}"
            d, _ = decide_for_bot(intent, account, own, market, policy,
                                  Budget(share, bot_slots(share, 0, slots)))
            assert d.accepted, (n, share, d.reasons)

            def one(a: Account = account, o: tuple[Position, ...] = own, s: float = share
                    ) -> object:
                return decide_for_bot(intent, a, o, market, policy,
                                      Budget(s, bot_slots(s, 0, slots)))

            def batch(a: Account = account, o: tuple[Position, ...] = own, s: float = share
                      ) -> object:
                for _ in range(BATCH):
                    d, _ = decide_for_bot(intent, a, o, market, policy,
                                          Budget(s, bot_slots(s, 0, slots)))
                    p = Position(d.symbol, d.side, d.notional, d.margin, entry=d.entry_price)
                    a = a.with_position(p)
                    o = (*o, p)
                return a

            out.append((f"decide_for_bot, {label}, {n} own held", one, 1))
            out.append((f"batch of {BATCH}, {label}, {n} own held", batch, BATCH))
    return out


def cpu_us(fn: Callable[[], object], per: int, number: int, repeat: int) -> float:
    """The median batch's CPU time per decision, in microseconds."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(number):
            fn()
        runs.append((time.process_time() - t0) / (number * per) * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--own", type=lambda t: [int(x) for x in t.split(",") if x],
                    default=[0, 25, 100], help="the bot's own reservations held (comma-separated)")
    ap.add_argument("--number", type=int, default=2_000, help="calls per batch")
    ap.add_argument("--repeat", type=int, default=9, help="batches per case")
    ap.add_argument("--json", action="store_true", help="one JSON object per case per line "
                    "on stdout (the report goes to stderr)")
    args = ap.parse_args()
    with json_output(args.json) as emit:
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f}; decision core: {BUILD}")
        print(f"{args.repeat} batches x {args.number} calls per case; median batch, CPU per "
              "decision\n")
        base: dict[str, float] = {}
        for name, fn, per in cases(args.own):
            us = cpu_us(fn, per, max(1, args.number // per), args.repeat)
            print(f"{name:45s} {us:9.1f} us")
            if "unlimited" in name:
                base[name.replace("unlimited", f"budget {SHARE:g}")] = us
                emit("budget", name, us, "us", build=BUILD)
            else:
                emit("budget", name, us, "us", build=BUILD, baseline="unlimited bot",
                     baseline_value=base[name])


if __name__ == "__main__":
    main()
