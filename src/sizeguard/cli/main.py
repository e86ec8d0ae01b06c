"""``sizeguard``: size a trade, run the offline demo, list presets.

Exit codes: 0 a decision was made (accepted or skipped), 2 invalid input (one line on stderr
naming the field and the value).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.cli.render import decision_table, print_decision
from sizeguard.config.loader import PRESETS, load_policy, preset_data
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketBook
from sizeguard.core.policy import Policy, with_changes
from sizeguard.errors import SizeguardError

app = typer.Typer(
    name="sizeguard",
    help="How big a leveraged crypto trade may be, and which ones must not happen.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

MarketsOpt = Annotated[Path | None, typer.Option(
    "--markets", help="ccxt unified markets JSON (default: the built-in example markets).")]
TiersOpt = Annotated[Path | None, typer.Option(
    "--tiers", help="ccxt leverage tiers JSON, e.g. binanceusdm.json.")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help=f"One of: {', '.join(PRESETS)}.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A policy TOML file.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a policy key: --set limits.max_notional=500 (repeatable).")]


def fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def market_book(markets: Path | None, tiers: Path | None) -> MarketBook:
    book = load_markets(markets)
    return attach_tiers(book, tiers) if tiers is not None else book


def effective_policy(preset: str | None, config: Path | None, sets: list[str] | None,
                     margin_mode: str | None = None) -> Policy:
    policy = load_policy(preset, config, sets or ())
    if margin_mode is not None:
        policy = with_changes(policy, "leverage", margin_mode=margin_mode)
    return policy


SIZE_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard size BTC/USDT:USDT --side long --price 87669 --equity 8930.41 --atr 2000 "
    "--confidence 0.52\n\n"
    "  sizeguard size ETH/USDT:USDT --side short --price 3000 --equity 1000 --stop 3090 "
    "--preset viper-50x --json\n\n"
    "  sizeguard size BTC/USDT:USDT --side long --price 90000 --equity 1500 --preset quantum-4x30 "
    "--set limits.max_positions=2"
)


@app.command(epilog=SIZE_EXAMPLES)
def size(
    symbol: Annotated[str, typer.Argument(help="Market symbol, e.g. BTC/USDT:USDT.")],
    side: Annotated[str, typer.Option("--side", help="long or short.")],
    price: Annotated[float, typer.Option("--price", help="Entry price.")],
    equity: Annotated[float, typer.Option("--equity", help="Account equity (quote currency).")],
    available: Annotated[float | None, typer.Option(help="Available margin (default: equity).")] = None,
    stop: Annotated[float | None, typer.Option(help="Stop price.")] = None,
    stop_pct: Annotated[float | None, typer.Option("--stop-pct", help="Stop distance, % of entry.")] = None,
    atr: Annotated[float | None, typer.Option(help="ATR in price units: stop = atr-mult x ATR.")] = None,
    atr_mult: Annotated[float | None, typer.Option(
        "--atr-mult", help="ATR multiple (default: the policy's).")] = None,
    stop_roe: Annotated[float | None, typer.Option("--stop-roe", help="Stop as % loss on margin.")] = None,
    confidence: Annotated[float | None, typer.Option(help="Signal confidence in [0, 1].")] = None,
    regime: Annotated[str | None, typer.Option(help="Market regime name from the policy.")] = None,
    volatility: Annotated[str | None, typer.Option(help="Volatility bucket name from the policy.")] = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    leverage: Annotated[float | None, typer.Option(help="Requested leverage (fixed mode).")] = None,
    markets: MarketsOpt = None,
    tiers: TiersOpt = None,
    margin_mode: Annotated[str | None, typer.Option("--margin-mode", help="isolated or cross.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as one JSON object.")] = False,
) -> None:
    """Size one trade and explain the decision."""
    try:
        if preset is not None and config is not None:
            raise SizeguardError("give --preset or --config, not both")
        policy = effective_policy(preset, config, set_, margin_mode)
        book = market_book(markets, tiers)
        market = book[symbol]
        intent = Intent(symbol=symbol, side=side.lower(), price=price, stop=stop, stop_pct=stop_pct,
                        atr=atr, atr_mult=atr_mult, stop_roe=stop_roe, confidence=confidence,
                        regime=regime, volatility=volatility, leverage=leverage)
        decision = decide(intent, Account(equity=equity, available=available), market, policy)
    except (SizeguardError, ValueError) as exc:
        fail(exc)
        return
    if as_json:
        sys.stdout.write(json.dumps(decision.to_dict()) + "\n")
    else:
        print_decision(decision)


@app.command()
def presets() -> None:
    """List the shipped presets, one line each."""
    for name in PRESETS:
        typer.echo(f"{name:20s} {preset_data(name).get('description', '')}")


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
    book = load_markets(None)
    out = []
    for preset, intent, equity in DEMO:
        d = decide(intent, Account(equity=equity), book[intent.symbol], load_policy(preset))
        out.append((preset, equity, d))
    return out


@app.command()
def demo(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A few decisions on the built-in example markets, offline, one per reference system."""
    results = demo_decisions()
    if as_json:
        typer.echo(json.dumps([{"preset": p, "equity": e, **d.to_dict()} for p, e, d in results]))
        return
    console = Console()
    for preset, equity, d in results:
        console.print(decision_table(
            d, title=f"[bold]{preset}[/bold]: {d.symbol} {d.side} @ {d.entry_price:g}, "
                     f"equity {equity:g} -> {d.status}"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

from sizeguard.cli import backtest as _backtest  # noqa: E402, F401  (registers backtest, montecarlo)
