"""``sizeguard markets [SYMBOL]`` and ``sizeguard markets refresh --exchange NAME``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sizeguard.cli.app import app, fail, market_book
from sizeguard.cli.options import MarketsOpt, TiersOpt, complete_symbol
from sizeguard.cli.render import market_panel, market_records, markets_table, print_fitting
from sizeguard.errors import InvalidInput, NetworkError, SizeguardError

MARKETS_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard markets\n\n"
    "  sizeguard markets BTC/USDT:USDT\n\n"
    "  sizeguard markets --markets binanceusdm.json --tiers binanceusdm-tiers.json ETH/USDT:USDT"
)


@app.command(epilog=MARKETS_EXAMPLES)
def markets(
    symbol: Annotated[str | None, typer.Argument(
        help="Show one market's rules and leverage tiers; the word `refresh` fetches live "
        "markets (with --exchange).", autocompletion=complete_symbol)] = None,
    markets: MarketsOpt = None,
    tiers: TiersOpt = None,
    exchange: Annotated[str | None, typer.Option(
        "--exchange", help="With `refresh`: the ccxt exchange id, e.g. binanceusdm.")] = None,
    snapshot_dir: Annotated[Path | None, typer.Option(
        "--dir", help="With `refresh`: where to save the snapshot.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The markets as a JSON list.")] = False,
) -> None:
    """List markets (symbol, type, step, minimums, leverage), or one market's rules and tiers.

    `sizeguard markets refresh --exchange NAME` fetches live markets (and leverage tiers)
    through ccxt and saves a dated snapshot for offline use."""
    if symbol == "refresh":
        if exchange is None:
            fail(InvalidInput("--exchange", None, "`markets refresh` needs --exchange NAME"))
        markets_refresh(exchange, snapshot_dir, as_json)
        return
    if exchange is not None:
        fail(InvalidInput("--exchange", exchange, "goes with `markets refresh`"))
    try:
        book = market_book(markets, tiers)
        chosen = [book[symbol]] if symbol is not None else list(book.values())
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps([m.to_dict() for m in chosen]))
        return
    console = Console()
    if symbol is None:
        title = f"{len(chosen)} markets ({book.source or 'built-in'})"
        print_fitting(console, markets_table(chosen, title), title, market_records(chosen))
        console.print("[dim]One market's rules and tiers: sizeguard markets SYMBOL[/dim]")
    else:
        console.print(market_panel(chosen[0]))


def markets_refresh(exchange: str, directory: Path | None, as_json: bool) -> None:
    """Fetch live markets through ccxt and save a dated snapshot."""
    from sizeguard.app.bootstrap import refresh_markets

    try:
        if directory is not None and not directory.is_dir():
            raise InvalidInput("--dir", str(directory), "no such directory")
        path, source = refresh_markets(exchange, directory)
        book = source.markets()
    except NetworkError:
        typer.echo(f"error: cannot reach {exchange} to refresh its markets (offline?); size "
                   f"offline with a saved snapshot: --exchange {exchange} or --markets FILE",
                   err=True)
        raise typer.Exit(1) from None
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps({"path": str(path), "snapshot_id": source.snapshot_id,
                               "markets": len(book)}))
    else:
        typer.echo(f"saved {len(book)} markets of {exchange} to {path} ({source.snapshot_id})")
