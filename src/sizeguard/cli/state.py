"""State and execution commands: ``trade``, ``close``, ``positions``, ``state``, ``journal``,
and ``sync``. Registered on :data:`sizeguard.cli.app.app` when cli/main.py imports this
module.

Every command takes ``--store URL`` (default ``$SIZEGUARD_STORE``, else ``state.db`` in the user
data dir), ``--account NAME`` (default ``$SIZEGUARD_ACCOUNT``, else "default") and ``--json``.
Trading is on the paper exchange unless ``--live`` is given; live keys come from
``SIZEGUARD_API_KEY``, ``SIZEGUARD_API_SECRET`` and ``SIZEGUARD_API_PASSWORD``.
Exit codes: 0 done (a skipped or rejected trade included), 1 an exchange or store failure,
2 invalid input.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from sizeguard.adapters.market_files import builtin_markets
from sizeguard.adapters.market_snapshot import FileMarketSource
from sizeguard.adapters.paper import PaperExchange
from sizeguard.adapters.sql_store import SqlStore
from sizeguard.app import bootstrap
from sizeguard.app.trader import Trader
from sizeguard.cli.app import (
    app,
    clean_floats,
    effective_policy,
    positive,
    require_existing_store,
    side_value,
)
from sizeguard.cli.options import ConfigOpt, MarketsOpt, PresetOpt, SetOpt, SideOpt, TiersOpt
from sizeguard.cli.render import Record, print_fitting
from sizeguard.core.intent import Intent
from sizeguard.errors import ExchangeError, InvalidInput, SizeguardError, StoreError
from sizeguard.ports import Exchange

StoreOpt = Annotated[str | None, typer.Option(
    "--store", envvar="SIZEGUARD_STORE",
    help="State store: postgresql://user@host/db, sqlite:///PATH or a file "
         "(default: state.db in the user data dir).")]
AccountOpt = Annotated[str, typer.Option("--account", envvar="SIZEGUARD_ACCOUNT",
                                         help="Account name in the store.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ExchangeOpt = Annotated[str | None, typer.Option(
    "--exchange", help="ccxt exchange id (binanceusdm, bitget, ...): its newest saved market "
                       "snapshot, and the venue for --live.")]
LiveOpt = Annotated[bool, typer.Option("--live", help="Trade on the real exchange (default: paper).")]
HedgeOpt = Annotated[bool, typer.Option("--hedge-mode", help="The live account uses hedge "
                                        "(two-way) positions.")]


def _die(exc: Exception) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1 if isinstance(exc, ExchangeError | StoreError) else 2)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (SizeguardError, ValueError) as exc:
        _die(exc)


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(clean_floats(obj), default=str) + "\n")


def _source(markets: Path | None, tiers: Path | None, exchange: str | None) -> FileMarketSource:
    return bootstrap.market_source(markets, tiers, exchange)


def _live_exchange(exchange: str | None, hedge: bool, quote: str) -> Exchange:
    return bootstrap.live_exchange(exchange, hedge_mode=hedge, quote=quote)


def _paper(store: SqlStore, account: str, source: FileMarketSource) -> PaperExchange:
    """The paper account as the store left it: equity, open positions, their stops."""
    return bootstrap.paper_exchange(store, account, source)


def _store(url: str | None, *, read_only: bool = False) -> SqlStore:
    """The store; ``read_only`` commands refuse a SQLite file that does not exist instead of
    creating it (and its directories)."""
    if read_only:
        require_existing_store(url)
    return bootstrap.open_state(url)


JOURNAL_KINDS = ("decision", "order", "fill", "reject", "release", "close", "sync",
                 "protect_failed", "flatten_failed")


def _require_account(st: SqlStore, account: str) -> None:
    if not st.has_account(account):
        raise InvalidInput("--account", account, "no such account in this store (create it "
                           "with `sizeguard trade ... --equity N`)")


def _known_symbol(symbol: str, known: set[str]) -> None:
    """A symbol the command can act on; a typo is refused with the closest known one."""
    if symbol in known:
        return
    close = difflib.get_close_matches(symbol, sorted(known), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}?" if close else (
        "known: " + ", ".join(sorted(known)[:6]) if known else "nothing recorded for it")
    raise InvalidInput("symbol", symbol, f"unknown symbol; {hint}")


# ----------------------------------------------------------------------------- trade

TRADE_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard trade BTC/USDT:USDT --side long --price 87669 --equity 10000 --atr 2000 "
    "--confidence 0.7\n\n"
    "  sizeguard trade ETH/USDT:USDT --side short --price 3000 --stop 3090 --take-profit 2800 "
    "--preset viper-50x --json\n\n"
    "  sizeguard trade BTC/USDT:USDT --side long --price 90000 --stop 88000 --exchange binanceusdm "
    "--live"
)


@app.command(epilog=TRADE_EXAMPLES)
def trade(
    symbol: Annotated[str, typer.Argument(help="Market symbol, e.g. BTC/USDT:USDT.")],
    side: SideOpt,
    price: Annotated[float, typer.Option("--price", help="Entry price (paper fills here).")],
    equity: Annotated[float | None, typer.Option(
        "--equity", help="Set the account's equity (needed once, to open a paper account).")] = None,
    stop: Annotated[float | None, typer.Option(help="Stop price.")] = None,
    stop_pct: Annotated[float | None, typer.Option("--stop-pct", help="Stop distance, % of entry.")] = None,
    atr: Annotated[float | None, typer.Option(help="ATR in price units: stop = atr-mult x ATR.")] = None,
    atr_mult: Annotated[float | None, typer.Option("--atr-mult", help="ATR multiple.")] = None,
    stop_roe: Annotated[float | None, typer.Option("--stop-roe", help="Stop as % loss on margin.")] = None,
    take_profit: Annotated[float | None, typer.Option("--take-profit", help="Take-profit price.")] = None,
    confidence: Annotated[float | None, typer.Option(help="Signal confidence in [0, 1].")] = None,
    regime: Annotated[str | None, typer.Option(help="Market regime name from the policy.")] = None,
    volatility: Annotated[str | None, typer.Option(help="Volatility bucket from the policy.")] = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    leverage: Annotated[float | None, typer.Option(help="Requested leverage (fixed mode).")] = None,
    margin_mode: Annotated[str | None, typer.Option("--margin-mode", help="isolated or cross.")] = None,
    markets: MarketsOpt = None,
    tiers: TiersOpt = None,
    exchange: ExchangeOpt = None,
    live: LiveOpt = False,
    hedge_mode: HedgeOpt = False,
    client_order_id: Annotated[str | None, typer.Option(
        "--client-order-id", help="Idempotency key: the same id never trades twice.")] = None,
    ttl: Annotated[float, typer.Option("--ttl", help="Reservation lifetime, seconds.")] = 300.0,
    store: StoreOpt = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Decide, reserve, and place the entry with its stop (and take-profit); record it."""
    with _errors():
        for option, value in (("--price", price), ("--equity", equity), ("--stop", stop),
                              ("--take-profit", take_profit), ("--atr", atr),
                              ("--leverage", leverage), ("--ttl", ttl)):
            positive(option, value)
        side = side_value(side)
        policy = effective_policy(preset, config, set_, margin_mode)
        source = _source(markets, tiers, exchange)
        book = source.markets()
        market = book[symbol]
        intent = Intent(symbol=symbol, side=side.lower(), price=price, stop=stop, stop_pct=stop_pct,
                        atr=atr, atr_mult=atr_mult, stop_roe=stop_roe, confidence=confidence,
                        regime=regime, volatility=volatility, leverage=leverage,
                        take_profit=take_profit)
        st = _store(store)
        try:
            venue = exchange or "paper"
            quote = market.settle or market.quote or "USDT"
            if not st.has_account(account):
                if equity is None and not live:
                    raise InvalidInput("equity", None, f"account '{account}' is new: give --equity "
                                       "to open it")
                st.ensure_account(account, exchange=venue, equity=equity or 1.0, quote=quote)
            elif equity is not None:
                st.set_equity(account, equity)
            ex: Exchange = (_live_exchange(exchange, hedge_mode, quote) if live
                            else _paper(st, account, source))
            if source.path is not None:  # which file the snapshot id stands for
                st.record_snapshot(source.snapshot_id, exchange=market.exchange or venue,
                                   fetched_at=source.snapshot_id.split("@", 1)[-1].split("#")[0],
                                   path=str(source.path.resolve()))
            trader = Trader(st, ex, source, policy, account_id=account, ttl=ttl)
            if live:
                trader.sync()  # the live balance and positions count before deciding
            result = trader.submit(intent, client_order_id)
        finally:
            st.close()
    if as_json:
        _emit(result.to_dict())
    else:
        d = result.decision
        console = Console()
        console.print(f"[bold]{result.status}[/bold] {d.symbol} {d.side} amount {d.amount} "
                      f"notional {d.notional:.2f} margin {d.margin:.2f} at {d.leverage:g}x "
                      f"({'live' if live else 'paper'}, client order id {result.client_order_id})")
        if d.reasons:
            console.print("reasons: " + ", ".join(str(r) for r in d.reasons))
        if result.error:
            console.print(f"[red]{result.error}[/red]")
        for o in result.orders:
            console.print(f"  {o.kind:12s} {o.side:4s} {o.amount} {o.status}"
                          + (f" @ {o.average:g}" if o.average else "")
                          + (f" trigger {o.trigger_price:g}" if o.trigger_price else ""))
        if result.position:
            console.print(f"position {result.position.id}")


@app.command(epilog="Examples:\n\n  sizeguard close pos_0123456789abcdef01234567 --price 91000\n\n"
             "  sizeguard close pos_0123456789abcdef01234567 --price 91000 --store state.db --json")
def close(
    position_id: Annotated[str, typer.Argument(help="Position id (see `sizeguard positions`).")],
    price: Annotated[float, typer.Option("--price", help="Exit price (paper fills here).")],
    markets: MarketsOpt = None,
    tiers: TiersOpt = None,
    exchange: ExchangeOpt = None,
    live: LiveOpt = False,
    hedge_mode: HedgeOpt = False,
    store: StoreOpt = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Close a position: its PnL feeds today's loss, the losing streak and the win rate."""
    with _errors():
        positive("--price", price)
        source = _source(markets, tiers, exchange)
        st = _store(store, read_only=True)
        try:
            held = st.position(position_id)
            if held is not None and held.account_id == account and held.status != "open":
                raise InvalidInput("position", position_id, f"is already {held.status} (exit "
                                   f"{held.exit_price or 0:g}, PnL {held.pnl or 0:+.4f}); nothing to close")
            rs = st.risk_state(account)
            ex: Exchange = (_live_exchange(exchange, hedge_mode, rs.quote) if live
                            else _paper(st, account, source))
            trader = Trader(st, ex, source, effective_policy(None, None, None), account_id=account)
            pos = trader.close(position_id, price)
            rs = st.risk_state(account)
        finally:
            st.close()
    if as_json:
        _emit({"position": pos.to_dict(), "state": rs.to_dict()})
    else:
        typer.echo(f"closed {pos.id} {pos.symbol} {pos.side} at {pos.exit_price:g}: "
                   f"PnL {pos.pnl:+.4f}; equity {rs.equity:.2f}, streak {rs.losing_streak}")


# ----------------------------------------------------------------------------- views


@app.command(epilog="Examples:\n\n  sizeguard positions\n\n  sizeguard positions --all --json\n\n"
             "  sizeguard positions --store postgresql://postgres@127.0.0.1/sizeguard --account bot1")
def positions(store: StoreOpt = None, account: AccountOpt = "default",
              all_: Annotated[bool, typer.Option("--all", help="Closed ones too.")] = False,
              as_json: JsonOpt = False) -> None:
    """Open positions (and live reservations) of the account."""
    with _errors():
        st = _store(store, read_only=True)
        try:
            _require_account(st, account)
            rows = st.positions(account, open_only=not all_)
            held = st.reservations(account)
        finally:
            st.close()
    if as_json:
        _emit({"positions": [p.to_dict() for p in rows],
               "reservations": [r.to_dict() for r in held]})
        return
    title = f"positions of {account}"
    t = Table(title=title)
    for col in ("id", "symbol", "side", "amount", "entry", "notional", "margin", "lev", "stop",
                "source", "status"):
        t.add_column(col, no_wrap=True)
    records = []
    for p in rows:
        cells = (p.id, p.symbol, p.side, p.amount, f"{p.entry_price:g}", f"{p.notional:.2f}",
                 f"{p.margin:.2f}", f"{p.leverage:g}",
                 f"{p.stop_price:g}" if p.stop_price else "-", p.source, p.status)
        t.add_row(*cells)
        records.append(_position_record(cells))
    for r in held:
        cells = (r.id, r.symbol, r.side, r.amount, "-", f"{r.notional:.2f}", f"{r.margin:.2f}",
                 f"{r.leverage:g}", "-", "reservation", "held")
        t.add_row(*cells)
        records.append(_position_record(cells))
    print_fitting(Console(), t, title, records)


def _position_record(c: tuple[str, ...]) -> Record:
    """One position for a narrow terminal: the id whole (``close`` needs it), then the rest."""
    return Record(f"{c[0]}  {c[1]} {c[2]}", [
        ("amount", c[3]), ("entry", c[4]), ("notional", c[5]), ("margin", c[6]),
        ("leverage", f"{c[7]}x"), ("stop", c[8]), ("source", c[9]), ("status", c[10])])


@app.command(epilog="Examples:\n\n  sizeguard state\n\n  sizeguard state --account bot1 --json")
def state(store: StoreOpt = None, account: AccountOpt = "default", as_json: JsonOpt = False) -> None:
    """Equity, peak, today's realised PnL, losing streak, win rates, slots and learned minimums."""
    with _errors():
        st = _store(store, read_only=True)
        try:
            rs = st.risk_state(account)
            mins = st.learned_minimums(rs.exchange)
            version = st.schema_version()
            url = st.url
        finally:
            st.close()
    out = {**rs.to_dict(), "learned_minimums": mins, "store": url, "schema_version": version}
    if as_json:
        _emit(out)
        return
    t = Table(title=f"state of {account} ({rs.exchange}, {url})", show_header=False)
    for key in ("equity", "peak_equity", "day", "realised_pnl_today", "losing_streak",
                "open_positions", "live_reservations", "margin_in_use", "gross_exposure"):
        v = out[key]
        t.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    for sym, s in rs.to_dict()["symbol_stats"].items():
        t.add_row(f"record {sym}", f"{s['trades']} trades, {s['wins']} wins ({s['win_rate']:.0%})")
    for sym, m in mins.items():
        t.add_row(f"learned minimum {sym}", f"cost {m['min_cost']:g}, amount {m['min_amount']:g}")
    Console().print(t)


@app.command(epilog="Examples:\n\n  sizeguard journal --last 20\n\n"
             "  sizeguard journal --symbol BTC/USDT:USDT --kind decision --json")
def journal(
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")] = None,
    last: Annotated[int | None, typer.Option("--last", help="Only the last N entries.")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", metavar="|".join(JOURNAL_KINDS), help="Only entries of this kind.")] = None,
    store: StoreOpt = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """The decision journal: every decision with its trace and market snapshot, and the events."""
    with _errors():
        if last is not None and last < 1:
            raise InvalidInput("--last", last, "must be >= 1")
        if kind is not None and kind not in JOURNAL_KINDS:
            close = difflib.get_close_matches(kind, JOURNAL_KINDS, n=1)
            raise InvalidInput("--kind", kind, f"unknown kind; did you mean {close[0]}?" if close
                               else f"one of {', '.join(JOURNAL_KINDS)}")
        st = _store(store, read_only=True)
        try:
            _require_account(st, account)
            if symbol is not None:
                _known_symbol(symbol, {e.symbol for e in st.journal(account) if e.symbol}
                              | set(builtin_markets()))
            entries = st.journal(account, symbol=symbol, last=last, kind=kind)
        finally:
            st.close()
    if as_json:
        _emit({"entries": [e.to_dict() for e in entries]})
        return
    import time

    title = f"journal of {account}"
    t = Table(title=title)
    for col in ("id", "at (UTC)", "kind", "symbol", "status", "reasons / note", "client order id",
                "snapshot"):
        t.add_column(col, no_wrap=col != "reasons / note")
    records = []
    for e in entries:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.at))
        why = ", ".join(e.reasons) or (e.note or "")
        t.add_row(str(e.id), at, e.kind, e.symbol or "", e.status or "", why,
                  e.client_order_id or "", e.snapshot_id or "")
        records.append(Record(
            f"#{e.id} {at} {e.kind}" + (f" {e.symbol}" if e.symbol else "")
            + (f" {e.status}" if e.status else ""),
            [(k, v) for k, v in (("client order id", e.client_order_id),
                                 ("snapshot", e.snapshot_id)) if v],
            [("reasons" if e.reasons else "note", why)] if why else []))
    print_fitting(Console(), t, title, records)


@app.command(epilog="Examples:\n\n  sizeguard sync\n\n  sizeguard sync --mark BTC/USDT:USDT=86000 "
             "--json\n\n  sizeguard sync --live --exchange binanceusdm")
def sync(
    markets: MarketsOpt = None,
    exchange: ExchangeOpt = None,
    live: LiveOpt = False,
    hedge_mode: HedgeOpt = False,
    mark: Annotated[list[str] | None, typer.Option(
        "--mark", help="Paper: the market trades at this price first, SYMBOL=PRICE "
                       "(stops and take-profits it crosses fill). Repeatable.")] = None,
    store: StoreOpt = None,
    account: AccountOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Reconcile with the exchange: its balance becomes the equity; positions whose stop or
    take-profit filled are closed with their PnL; positions opened elsewhere are recorded and
    count toward every limit; expired reservations are released."""
    with _errors():
        marks = []
        for item in mark or ():
            sym, sep, text = item.rpartition("=")
            try:
                marks.append((sym, float(text)))
            except ValueError:
                sep = ""
            if not sep or not sym:
                raise InvalidInput("--mark", item, "must look like SYMBOL=PRICE")
        if marks and live:
            raise InvalidInput("--mark", mark, "only the paper exchange takes prices from you")
        for sym, value in marks:
            positive(f"--mark {sym}", value)
        st = _store(store, read_only=True)
        try:
            rs = st.risk_state(account)
            source = _source(markets, None, exchange if markets is None else None) if not live \
                else FileMarketSource(markets)
            ex: Exchange
            if live:
                ex = _live_exchange(exchange, hedge_mode, rs.quote)
            else:
                paper = _paper(st, account, source)
                for symbol, price in marks:
                    _known_symbol(symbol, set(paper.book))
                    paper.mark(symbol, price)
                ex = paper
            out = Trader(st, ex, source, effective_policy(None, None, None), account_id=account,
                         venue=rs.exchange).sync()
        finally:
            st.close()
    if as_json:
        _emit(out)
    else:
        typer.echo(f"equity {out['equity']:.2f}; {out['positions']} positions on the exchange; "
                   f"stopped out {len(out['stopped_out'])}, "
                   f"take-profit filled {len(out.get('take_profit_filled', []))}, "
                   f"added {len(out['added'])}, closed {len(out['closed'])}, "
                   f"expired reservations {out['expired_reservations']}")
