"""``sizeguard store prune`` (retention by hand) and ``sizeguard store size``. Registered on the
CLI app by importing this module (the last lines of cli/main.py)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from sizeguard.adapters.retention import IDEMPOTENCY_HOURS, JOURNAL_DAYS, Retention, prune, store_size
from sizeguard.adapters.sql_store import open_store
from sizeguard.cli.app import app, require_existing_store
from sizeguard.errors import SizeguardError, StoreError
from sizeguard.redact import redact

store_app = typer.Typer(help="The state store: retention and size.", no_args_is_help=True)
app.add_typer(store_app, name="store")

StoreOpt = Annotated[str | None, typer.Option(
    "--store", envvar="SIZEGUARD_STORE", show_envvar=False,
    help="State store URL (default: $SIZEGUARD_STORE, else state.db in the user data dir).")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {redact(str(exc))}", err=True)
    return typer.Exit(1 if isinstance(exc, StoreError) else 2)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@store_app.command("prune", epilog="Examples:\n\n  sizeguard store prune --dry-run\n\n"
                   "  sizeguard store prune --days 30 --idempotency-hours 6 --json")
def store_prune(
    store: StoreOpt = None,
    days: Annotated[float | None, typer.Option(
        "--days", min=0.001, max=36_500, envvar="SIZEGUARD_RETENTION_DAYS", show_envvar=False,
        help=f"Keep journal rows (and finished reservations) this many days (default "
             f"{JOURNAL_DAYS:g}; the environment can set it, see above).")] = None,
    idempotency_hours: Annotated[float | None, typer.Option(
        "--idempotency-hours", min=0.001, max=876_000, envvar="SIZEGUARD_IDEMPOTENCY_HOURS",
        show_envvar=False,
        help=f"Keep idempotency answers this many hours (default {IDEMPOTENCY_HOURS:g}; the "
             "environment can set it, see above).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; delete nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Delete journal, finished-reservation and idempotency rows older than the retention
    (decisions still in play are kept; positions never are deleted).

    SIZEGUARD_RETENTION_DAYS and SIZEGUARD_IDEMPOTENCY_HOURS in the environment set the \
retention when --days and --idempotency-hours are not given.
    """
    try:
        retention = Retention(days if days is not None else JOURNAL_DAYS,
                              idempotency_hours if idempotency_hours is not None
                              else IDEMPOTENCY_HOURS)
        st = open_store(store)
        try:
            report = prune(st, retention, dry_run=dry_run)
            size = store_size(st)
        finally:
            st.close()
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "store": size}))
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {report.journal} journal rows and {report.reservations} finished "
               f"reservations before {_when(report.journal_before)}, {report.bot_orders} "
               f"ownership records, {report.idempotency} idempotency answers before "
               f"{_when(report.idempotency_before)}")
    typer.echo(f"store: {size['bytes'] / 1e6:.1f} MB, {size['journal']} journal rows, "
               f"{size['idempotency']} idempotency answers")


@store_app.command("size", epilog="Examples:\n\n  sizeguard store size\n\n  sizeguard store size --json")
def store_size_cmd(store: StoreOpt = None,
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The store's size and the rows retention prunes."""
    try:
        require_existing_store(store)  # read-only: never creates a store
        st = open_store(store)
        try:
            size = store_size(st)
        finally:
            st.close()
    except (SizeguardError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(size))
        return
    typer.echo(f"{size['bytes'] / 1e6:.1f} MB; rows: journal {size['journal']}, idempotency "
               f"{size['idempotency']}, reservations {size['reservations']}, bot orders "
               f"{size['bot_orders']}")
