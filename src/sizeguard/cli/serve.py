"""``sizeguard serve`` (the HTTP risk gate) and ``sizeguard bots add|list|remove``. Registered on
:data:`sizeguard.cli.app.app` when cli/main.py imports this module.

Every ``serve`` option falls back to the environment (``SIZEGUARD_HOST``, ``SIZEGUARD_PORT``,
``SIZEGUARD_WORKERS``, ``SIZEGUARD_MARKETS``, ``SIZEGUARD_STORE``, ``SIZEGUARD_ACCOUNT``, ...;
see :class:`sizeguard.http.settings.ServeSettings`). The workers read their settings from the
environment this command sets, so options and environment mean the same everywhere.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from typing import Annotated, Any

import typer

from sizeguard.adapters.bots import BotRegistry
from sizeguard.app.bootstrap import open_state as open_store
from sizeguard.budget import parse_budget
from sizeguard.cli.app import app, require_existing_store
from sizeguard.errors import InvalidInput, SizeguardError, StoreError

bots_app = typer.Typer(help="Bots of the HTTP service: tokens, budgets.", no_args_is_help=True)
app.add_typer(bots_app, name="bots")

StoreOpt = Annotated[str | None, typer.Option(
    "--store", envvar="SIZEGUARD_STORE", show_envvar=False,
    help="State store URL (default: $SIZEGUARD_STORE, else state.db in the user data dir).")]
AccountOpt = Annotated[str, typer.Option("--account", envvar="SIZEGUARD_ACCOUNT", show_envvar=False,
                                         help="The account the bot trades.")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1 if isinstance(exc, StoreError) else 2)


@app.command(epilog="Examples:\n\n  sizeguard serve\n\n  sizeguard serve --port 8080 --workers 2 "
             "--store postgresql://postgres@127.0.0.1/sizeguard\n\n"
             "  SIZEGUARD_PORT=9000 SIZEGUARD_PRESET=quantum-4x30 sizeguard serve")
def serve(
    host: Annotated[str | None, typer.Option(
        help="Bind address (env SIZEGUARD_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port (env SIZEGUARD_PORT; default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, max=64, help="Processes (env SIZEGUARD_WORKERS; default 1). More than one: use PostgreSQL."
    )] = None,
    markets: Annotated[str | None, typer.Option(
        help="Market snapshot / ccxt markets JSON (env SIZEGUARD_MARKETS; default built-in).")] = None,
    tiers: Annotated[str | None, typer.Option(help="ccxt leverage tiers JSON (env SIZEGUARD_TIERS).")] = None,
    store: Annotated[str | None, typer.Option(
        help="postgresql://... or sqlite:///PATH (env SIZEGUARD_STORE; default state.db in "
             "the data dir).")] = None,
    account: Annotated[str | None, typer.Option(
        help="Account name (env SIZEGUARD_ACCOUNT; default 'default').")] = None,
    exchange: Annotated[str | None, typer.Option(
        help="Venue; with --live the ccxt exchange id (env SIZEGUARD_EXCHANGE; default paper).")] = None,
    live: Annotated[bool | None, typer.Option(
        "--live/--paper", help="Orders on the real exchange (env SIZEGUARD_LIVE; default paper).")] = None,
    preset: Annotated[str | None, typer.Option(help="Service policy preset (env SIZEGUARD_PRESET).")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="uvicorn log level.")] = None,
) -> None:
    """Run the HTTP risk gate (FastAPI on uvicorn); OpenAPI at /docs."""
    import uvicorn

    given: dict[str, Any] = {"host": host, "port": port, "workers": workers, "markets": markets,
                             "tiers": tiers, "store": store, "account": account,
                             "exchange": exchange, "live": live, "preset": preset,
                             "log_level": log_level}
    try:  # checked before anything is set or started: a typo never reaches a worker
        settings = _settings({k: v for k, v in given.items() if v is not None})
        _check_inputs(settings)
        if settings.live:
            from sizeguard.http.service import LiveExchange

            LiveExchange.check(settings)
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None
    for key, value in given.items():  # the workers read their settings from the environment
        if value is not None:
            os.environ[f"SIZEGUARD_{key.upper()}"] = str(value).lower() if isinstance(value, bool) \
                else str(value)
    try:
        st = open_store(settings.store)  # migrate once, before the workers start
        url = st.url
        st.close()
        os.environ["SIZEGUARD_STORE"] = url
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None
    # one console session key for every worker (a cookie signed by one is read by the others)
    os.environ.setdefault("SIZEGUARD_SESSION_SECRET", secrets.token_hex(32))
    if settings.workers > 1 and url.startswith("sqlite"):
        typer.echo("note: several workers on SQLite serialise on its single writer lock; "
                   "use PostgreSQL to scale out", err=True)
    typer.echo(f"sizeguard serve: http://{settings.host}:{settings.port} ({settings.workers} "
               f"worker(s), store {url.split('@')[-1]}, account {settings.account}, "
               f"{'live ' + settings.exchange if settings.live else 'paper'})", err=True)
    from sizeguard.http.protocol import uvicorn_options

    uvicorn.run("sizeguard.http.app:app_from_env", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level=settings.log_level.lower(),
                access_log=settings.access_log, proxy_headers=False, server_header=False,
                **uvicorn_options(settings))


def _settings(given: dict[str, Any]) -> Any:
    """ServeSettings from the options ``given`` over the environment; a bad value is one line
    naming the option and its variable."""
    from pydantic import ValidationError

    from sizeguard.http.settings import ServeSettings

    try:
        return ServeSettings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "?"
        raise InvalidInput(f"SIZEGUARD_{name.upper()} (--{name.replace('_', '-')})",
                           err.get("input"), str(err.get("msg", "invalid")).lower()) from None


def _check_inputs(settings: Any) -> None:
    """The policy layers (preset, file, environment) and the market files the workers will
    read, loaded once here so that a misspelt name is refused before the service starts."""
    from sizeguard.adapters.market_files import attach_tiers, load_markets
    from sizeguard.config.settings import env_from_os, resolve

    resolve(settings.preset, settings.config, (), env_from_os())
    book = load_markets(settings.markets)
    if settings.tiers:
        attach_tiers(book, settings.tiers)


@bots_app.command("add", epilog="Examples:\n\n  sizeguard bots add viper --budget 40%\n\n"
                  "  sizeguard bots add quantum --budget 0.6 --max-positions 4 --json")
def bots_add(
    name: Annotated[str, typer.Argument(help="Bot name (letters, digits, - _ .).")],
    budget: Annotated[str, typer.Option(help="Share of the account's equity: 40% or 0.4.")] = "100%",
    max_positions: Annotated[int, typer.Option(
        "--max-positions", min=0, max=10_000,
        help="The bot's own slots (0: its budget's share of the account's).")] = 0,
    store: StoreOpt = None,
    account: AccountOpt = "default",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a bot and print its bearer token (shown once; only its hash is stored)."""
    try:
        share = parse_budget(budget)
        st = open_store(store)
        try:
            bot, token = BotRegistry(st).add(name, account_id=account, budget=share,
                                             max_positions=max_positions)
        finally:
            st.close()
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({**bot.to_dict(), "token": token}))
        return
    typer.echo(f"bot {bot.name} ({bot.id}): budget {bot.budget:.0%} of account {bot.account_id}"
               + (f", max {bot.max_positions} positions" if bot.max_positions else ""))
    typer.echo("token (shown once; keep it secret):", err=True)
    typer.echo(token)


@bots_app.command("list", epilog="Examples:\n\n  sizeguard bots list\n\n"
                  "  sizeguard bots list --account default --json")
def bots_list(store: StoreOpt = None,
              account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The bots and their budgets (never their tokens)."""
    try:
        require_existing_store(store)
        st = open_store(store)
        try:
            bots = BotRegistry(st).bots(account)
        finally:
            st.close()
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([b.to_dict() for b in bots]))
        return
    if not bots:
        typer.echo("no bots; add one with: sizeguard bots add NAME --budget 40%")
    width = shutil.get_terminal_size((80, 24)).columns
    for b in bots:
        slots = str(b.max_positions) if b.max_positions else "budget share"
        rest = "admin" if b.is_admin else f"budget {b.budget:.0%}  max positions {slots}"
        line = f"{b.name:20s} {b.id}  account {b.account_id}  {rest}"
        if len(line) > width:  # a narrow terminal: the id whole on the first line, then the rest
            line = f"{b.name} {b.id}\n  account {b.account_id}  {rest}"
        typer.echo(line)


@bots_app.command("remove", epilog="Example:\n\n  sizeguard bots remove viper")
def bots_remove(name: Annotated[str, typer.Argument(help="Bot name or id.")],
                store: StoreOpt = None) -> None:
    """Revoke a bot's token (its positions and journal stay)."""
    try:
        st = open_store(store)
        try:
            removed = BotRegistry(st).remove(name)
        finally:
            st.close()
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None
    if not removed:
        raise _fail(SizeguardError(f"no bot named {name!r}"))
    typer.echo(f"removed {name}")


# ----------------------------------------------------------------------------- admin

admin_app = typer.Typer(help="The account's admin: its token, equity, halts, reservations, "
                        "presets and bots' slots (what no bot may change).", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
JsonOpt = Annotated[bool, typer.Option("--json")]


ADMIN_EXAMPLES = {
    "token": "Examples:\n\n  sizeguard admin token ops\n\n"
             "  sizeguard admin token ops --account default --json",
    "equity": "Examples:\n\n  sizeguard admin equity 10000\n\n"
              "  sizeguard admin equity 10000 --peak 12000 --json",
    "halt": "Examples:\n\n  sizeguard admin halt 'exchange maintenance'",
    "resume": "Examples:\n\n  sizeguard admin resume",
    "release": "Examples:\n\n  sizeguard admin release res_0123456789abcdef01234567",
    "presets": "Examples:\n\n  sizeguard admin presets quantum-4x30 ai-atr-risk\n\n  sizeguard admin presets",
    "slots": "Examples:\n\n  sizeguard admin slots viper 2\n\n  sizeguard admin slots viper 0 --json",
}


def _admin(store: str | None, account: str, act: Any) -> Any:
    """Run ``act(store)`` on an open store; errors are one line (exit 1 store, 2 input)."""
    try:
        st = open_store(store)
        try:
            return act(st)
        finally:
            st.close()
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None


def _state_line(rs: Any) -> str:
    halted = f", halted: {rs.halted}" if rs.halted else ""
    return (f"account {rs.account_id}: equity {rs.equity:.2f}, peak {rs.peak_equity:.2f}, "
            f"presets {', '.join(rs.presets) if rs.presets else 'the service policy only'}"
            f"{halted}")


def _emit_state(rs: Any, as_json: bool) -> None:
    typer.echo(json.dumps(rs.to_dict()) if as_json else _state_line(rs))


@admin_app.command("token", epilog=ADMIN_EXAMPLES["token"])
def admin_token(name: Annotated[str, typer.Argument(help="Admin name (letters, digits, - _ .).")],
                store: StoreOpt = None, account: AccountOpt = "default",
                as_json: JsonOpt = False) -> None:
    """Create the account admin's bearer token (shown once): /v1/admin/... and the console."""
    admin, token = _admin(store, account, lambda st: BotRegistry(st).add(
        name, account_id=account, role="admin"))
    if as_json:
        typer.echo(json.dumps({**admin.to_dict(), "token": token}))
        return
    typer.echo(f"admin {admin.name} ({admin.id}) of account {admin.account_id}")
    typer.echo("token (shown once; keep it secret):", err=True)
    typer.echo(token)


@admin_app.command("equity", epilog=ADMIN_EXAMPLES["equity"])
def admin_equity(equity: Annotated[float, typer.Argument(help="The paper account's equity.")],
                 peak: Annotated[float | None, typer.Option(help="Its peak equity.")] = None,
                 quote: Annotated[str, typer.Option(help="Quote currency of a new account.")] = "USDT",
                 store: StoreOpt = None, account: AccountOpt = "default",
                 as_json: JsonOpt = False) -> None:
    """Set a paper account's equity (opening it when new); a live one's comes from sync."""
    def act(st: Any) -> Any:
        if not st.has_account(account):
            st.ensure_account(account, exchange="paper", equity=equity, quote=quote)
        st.set_equity(account, equity, peak=peak)
        st.journal_event(account, "equity", note="set by admin (cli)",
                         data={"equity": equity, "peak": peak})
        return st.risk_state(account)
    _emit_state(_admin(store, account, act), as_json)


@admin_app.command("halt", epilog=ADMIN_EXAMPLES["halt"])
def admin_halt(reason: Annotated[str, typer.Argument(help="Why (shown in every skip).")],
               store: StoreOpt = None, account: AccountOpt = "default",
               as_json: JsonOpt = False) -> None:
    """Halt trading: every decision skips HALTED_BY_ADMIN until `admin resume`."""
    def act(st: Any) -> Any:
        st.set_halt(account, f"{reason} (cli)")
        return st.risk_state(account)
    _emit_state(_admin(store, account, act), as_json)


@admin_app.command("resume", epilog=ADMIN_EXAMPLES["resume"])
def admin_resume(store: StoreOpt = None, account: AccountOpt = "default",
                 as_json: JsonOpt = False) -> None:
    """Resume trading after a halt."""
    def act(st: Any) -> Any:
        st.set_halt(account, None)
        return st.risk_state(account)
    _emit_state(_admin(store, account, act), as_json)


@admin_app.command("release", epilog=ADMIN_EXAMPLES["release"])
def admin_release(reservation_id: Annotated[str, typer.Argument(help="Reservation id.")],
                  store: StoreOpt = None, account: AccountOpt = "default",
                  as_json: JsonOpt = False) -> None:
    """Release any bot's held reservation."""
    def act(st: Any) -> Any:
        res = st.reservation(reservation_id)
        if res is None or res.account_id != account:
            raise InvalidInput("reservation", reservation_id, f"no such reservation in {account}")
        return st.release_reservation(res.id, "released by admin (cli)")
    released = _admin(store, account, act)
    typer.echo(json.dumps({"released": released}) if as_json else
               ("released" if released else "not held (already filled, released or expired)"))


@admin_app.command("presets", epilog=ADMIN_EXAMPLES["presets"])
def admin_presets(names: Annotated[list[str] | None, typer.Argument(
                      help="Presets a request may name; none: only the service policy.")] = None,
                  store: StoreOpt = None, account: AccountOpt = "default",
                  as_json: JsonOpt = False) -> None:
    """The presets a request may name (the service's limits and leverage cap still bind)."""
    from sizeguard.config.settings import resolve

    try:  # refused before the store is opened: a typo writes nothing
        for name in names or ():
            resolve(name, None, (), None)  # an unknown preset is refused with the known ones
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None

    def act(st: Any) -> Any:
        st.set_presets(account, list(names) if names else None)
        return st.risk_state(account)
    _emit_state(_admin(store, account, act), as_json)


@admin_app.command("slots", epilog=ADMIN_EXAMPLES["slots"])
def admin_slots(bot: Annotated[str, typer.Argument(help="Bot name or id.")],
                max_positions: Annotated[int, typer.Argument(
                    help="Its own slots; 0: its budget's share of the account's.")],
                store: StoreOpt = None, account: AccountOpt = "default",
                as_json: JsonOpt = False) -> None:
    """Set a bot's own slot count (by default it follows its budget)."""
    if not 0 <= max_positions <= 10_000:
        raise _fail(InvalidInput("max_positions", max_positions, "must be 0 to 10000"))
    changed = _admin(store, account, lambda st: BotRegistry(st).set_slots(bot, max_positions))
    typer.echo(json.dumps(changed.to_dict()) if as_json else
               f"bot {changed.name}: {changed.max_positions or 'its budget share of the'} slots")
