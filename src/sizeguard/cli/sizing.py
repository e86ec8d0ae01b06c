"""``sizeguard size``, ``explain``, ``presets`` and ``demo``: one trade sized and explained, and
the shipped presets side by side."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from typing import Annotated, Any

import typer
from rich.console import Console

from sizeguard.adapters.market_files import load_markets
from sizeguard.cli.app import app, fail, market_book, positive, resolved_policy, side_value
from sizeguard.cli.options import (
    ConfigOpt,
    EnvFileOpt,
    MarketsOpt,
    PresetOpt,
    SetOpt,
    SideOpt,
    TiersOpt,
    complete_symbol,
)
from sizeguard.cli.render import (
    hint_panel,
    narrate,
    print_decision,
    print_explanation,
    references_table,
    side_by_side,
    summary_line,
)
from sizeguard.config.loader import PRESETS, preset_data
from sizeguard.config.settings import Resolved, load_policy
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.errors import SizeguardError

SIZE_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard size BTC/USDT:USDT --side long --price 87669 --equity 8930.41 --atr 2000 "
    "--confidence 0.52\n\n"
    "  sizeguard size ETH/USDT:USDT --side short --price 3000 --equity 1000 --stop 3090 "
    "--preset viper-50x --json\n\n"
    "  sizeguard size BTC/USDT:USDT --side long --price 90000 --equity 1500 --preset quantum-4x30 "
    "--set limits.max_positions=2"
)

SymbolArg = Annotated[str, typer.Argument(help="Market symbol, e.g. BTC/USDT:USDT.",
                                          autocompletion=complete_symbol)]
PriceOpt = Annotated[float, typer.Option("--price", help="Entry price.")]
EquityOpt = Annotated[float, typer.Option("--equity", help="Account equity (quote currency).")]
AvailableOpt = Annotated[float | None, typer.Option(help="Available margin (default: equity).")]
StopOpt = Annotated[float | None, typer.Option(help="Stop price.")]
StopPctOpt = Annotated[float | None, typer.Option("--stop-pct", help="Stop distance, % of entry.")]
AtrOpt = Annotated[float | None, typer.Option(help="ATR in price units: stop = atr-mult x ATR.")]
AtrMultOpt = Annotated[float | None, typer.Option(
    "--atr-mult", help="ATR multiple (default: the policy's).")]
StopRoeOpt = Annotated[float | None, typer.Option("--stop-roe", help="Stop as % loss on margin.")]
ConfidenceOpt = Annotated[float | None, typer.Option(help="Signal confidence in [0, 1].")]
RegimeOpt = Annotated[str | None, typer.Option(help="Market regime name from the policy.")]
VolatilityOpt = Annotated[str | None, typer.Option(help="Volatility bucket name from the policy.")]
LeverageOpt = Annotated[float | None, typer.Option(help="Requested leverage (fixed mode).")]
MarginModeOpt = Annotated[str | None, typer.Option("--margin-mode", help="isolated or cross.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the decision as one JSON object.")]


def _decide(p: dict[str, Any]) -> tuple[Decision, Resolved]:
    for option in ("price", "equity", "available", "stop", "atr", "leverage"):
        positive(f"--{option}", p[option])
    policy, r = resolved_policy(p["preset"], p["config"], p["set_"], p["margin_mode"],
                                p["env_file"])
    market = market_book(p["markets"], p["tiers"])[p["symbol"]]
    intent = Intent(symbol=p["symbol"], side=side_value(p["side"]), price=p["price"], stop=p["stop"],
                    stop_pct=p["stop_pct"], atr=p["atr"], atr_mult=p["atr_mult"],
                    stop_roe=p["stop_roe"], confidence=p["confidence"], regime=p["regime"],
                    volatility=p["volatility"], leverage=p["leverage"])
    account = Account(equity=p["equity"], available=p["available"])
    return decide(intent, account, market, policy), r


@app.command(epilog=SIZE_EXAMPLES)
def size(
    symbol: SymbolArg, side: SideOpt, price: PriceOpt, equity: EquityOpt,
    available: AvailableOpt = None, stop: StopOpt = None, stop_pct: StopPctOpt = None,
    atr: AtrOpt = None, atr_mult: AtrMultOpt = None, stop_roe: StopRoeOpt = None,
    confidence: ConfidenceOpt = None, regime: RegimeOpt = None, volatility: VolatilityOpt = None,
    preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None,
    env_file: EnvFileOpt = None, leverage: LeverageOpt = None, markets: MarketsOpt = None,
    tiers: TiersOpt = None,
    margin_mode: MarginModeOpt = None, as_json: JsonOpt = False,
) -> None:
    """Size one trade: amount, notional, margin, leverage, risk, liquidation, and why."""
    try:
        decision, r = _decide(dict(locals()))
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    if as_json:  # the layers and the environment's keys say what set the policy
        out = {**decision.to_dict(), "policy_layers": list(r.layers), "environment": r.from_env()}
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        print_decision(decision, env_settings=r.from_env())


EXPLAIN_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard explain BTC/USDT:USDT --side long --price 87669 --equity 8930.41 --atr 2000 "
    "--confidence 0.52\n\n"
    "  sizeguard explain XRP/USD --side long --price 0.25 --equity 2.86 --preset kraken-micro"
)


@app.command(epilog=EXPLAIN_EXAMPLES)
def explain(
    symbol: SymbolArg, side: SideOpt, price: PriceOpt, equity: EquityOpt,
    available: AvailableOpt = None, stop: StopOpt = None, stop_pct: StopPctOpt = None,
    atr: AtrOpt = None, atr_mult: AtrMultOpt = None, stop_roe: StopRoeOpt = None,
    confidence: ConfidenceOpt = None, regime: RegimeOpt = None, volatility: VolatilityOpt = None,
    preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None,
    env_file: EnvFileOpt = None, leverage: LeverageOpt = None, markets: MarketsOpt = None,
    tiers: TiersOpt = None,
    margin_mode: MarginModeOpt = None, as_json: Annotated[bool, typer.Option(
        "--json", help="The steps as JSON: [{step, text, ...values}].")] = False,
) -> None:
    """Size one trade (same options as size) and walk through every step in plain words."""
    try:
        decision, r = _decide(dict(locals()))
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    if as_json:
        steps = [{**s.to_dict(), "text": narrate(s)} for s in decision.trace]
        typer.echo(json.dumps({"status": str(decision.status), "steps": steps,
                               "policy_layers": list(r.layers), "environment": r.from_env()}))
        return
    print_explanation(decision, Console())


@app.command(epilog="Examples:\n\n  sizeguard presets\n\n  sizeguard presets --json")
def presets(as_json: Annotated[bool, typer.Option(
        "--json", help="The presets as a JSON list of {name, description}.")] = False) -> None:
    """List the shipped presets: name, then what it does (wrapped to the terminal)."""
    rows = [{"name": name, "description": str(preset_data(name).get("description", ""))}
            for name in PRESETS]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    width = max(40, min(shutil.get_terminal_size((80, 24)).columns, 100))
    for row in rows:
        typer.echo(row["name"])
        typer.echo(textwrap.fill(row["description"], width - 1, initial_indent="    ",
                                 subsequent_indent="    "))


DEMO = [
    ("viper-fixed-margin", Intent("BTC/USDT:USDT", "long", 50000.0), 100.0),
    ("viper-fixed-margin", Intent("ETH/USDT:USDT", "long", 3000.0), 100.0),
    ("quantum-4x30", Intent("BTC/USDT:USDT", "long", 90000.0), 1500.0),
    ("quantum-4x30", Intent("BTC/USDT:USDT", "long", 90000.0), 10000.0),
    ("ai-atr-risk", Intent("BTC/USDT:USDT", "long", 87669.0, atr=2000.0, confidence=0.52), 8930.41),
    ("viper-50x", Intent("ETH/USDT:USDT", "short", 3000.0, stop_pct=1.5), 1000.0),
    ("kraken-micro", Intent("XRP/USD", "long", 0.25), 2.86),
    ("kraken-micro", Intent("BTC/USD", "long", 90000.0), 2.86),
]


def demo_decisions() -> list[tuple[str, float, Decision]]:
    """The reference cases of DESIGN.md on the built-in markets (no environment)."""
    book = load_markets(None)
    out = []
    for preset, intent, equity in DEMO:
        d = decide(intent, Account(equity=equity), book[intent.symbol], load_policy(preset))
        out.append((preset, equity, d))
    return out


def same_intent_decisions(intent: Intent, equity: float) -> list[tuple[str, Decision]]:
    """Every preset on one intent, built-in markets, no environment."""
    market = load_markets(None)[intent.symbol]
    return [(p, decide(intent, Account(equity=equity), market, load_policy(p))) for p in PRESETS]


DEMO_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard demo\n\n"
    "  sizeguard demo --equity 1500\n\n"
    "  sizeguard demo --symbol ETH/USDT:USDT --side short --price 3000 --atr 60"
)


@app.command(epilog=DEMO_EXAMPLES)
def demo(
    symbol: Annotated[str, typer.Option("--symbol", help="Built-in market for the side-by-side.",
                                        autocompletion=complete_symbol)] = "BTC/USDT:USDT",
    side: Annotated[str, typer.Option(
        "--side", metavar="long|short", help="long or short (buy/sell accepted).")] = "long",
    price: Annotated[float, typer.Option("--price", help="Entry price.")] = 87669.0,
    equity: Annotated[float, typer.Option("--equity", help="Account equity.")] = 10000.0,
    atr: Annotated[float | None, typer.Option("--atr", help="ATR in price units.")] = 2000.0,
    confidence: Annotated[float | None, typer.Option(
        "--confidence", help="Signal confidence in [0, 1].")] = 0.52,
    as_json: Annotated[bool, typer.Option("--json", help="Everything as one JSON object.")] = False,
) -> None:
    """The five presets side by side on one trade, then the reference cases (offline)."""
    try:
        positive("--price", price)
        positive("--equity", equity)
        positive("--atr", atr)
        intent = Intent(symbol, side_value(side), price, atr=atr, confidence=confidence)
        same = same_intent_decisions(intent, equity)
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    refs = demo_decisions()
    if as_json:
        typer.echo(json.dumps({
            "intent": {"symbol": symbol, "side": intent.side, "price": price, "equity": equity, "atr": atr,
                       "confidence": confidence},
            "side_by_side": [{"preset": p, **d.to_dict()} for p, d in same],
            "references": [{"preset": p, "equity": e, **d.to_dict()} for p, e, d in refs]}))
        return
    console = Console()
    what = f"{symbol} {intent.side} @ {price:,g}, equity {equity:,g}"
    if atr is not None:
        what += f", ATR {atr:,g} (stop {1.5 * atr / price:.2%} at 1.5 x ATR for presets that use it)"
    if confidence is not None:
        what += f", confidence {confidence:g}"
    console.print(side_by_side(same, f"[bold]One trade, five policies[/bold]: {what}"))
    for preset, d in same:
        console.print(summary_line(preset, d))
    console.print()
    console.print(references_table(refs))
    console.print(hint_panel([
        "sizeguard explain BTC/USDT:USDT --side long --price 87669 --equity 10000 --atr 2000 "
        "--preset ai-atr-risk",
        "sizeguard config check --preset quantum-4x30 --equity 10000",
        "sizeguard config show --preset viper-50x",
        "sizeguard markets BTC/USDT:USDT",
    ]))


