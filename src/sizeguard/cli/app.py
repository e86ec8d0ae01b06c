"""The ``sizeguard`` typer app and what every command shares: the error contract, the policy and
market loading of the command line.

Command modules (``cli/sizing.py``, ``cli/backtest.py``, ...) import :data:`app` and register
their commands on it; ``cli/main.py`` only imports them. A command module never imports another
command module (an import-linter contract in pyproject.toml).

The error contract, kept here once for every command:

* invalid input (a click parse error or an :class:`~sizeguard.errors.InvalidInput`): one line
  on stderr naming the option or field and the value, exit 2;
* an unexpected error: one line saying what broke and where the full report was written (a
  crash file under the user's state directory), exit 1. No traceback reaches a user.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
import time
import traceback
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer._click import exceptions as click  # typer vendors click: its exceptions are these
from typer.core import TyperGroup

from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.cli.render import clean_floats
from sizeguard.config.settings import Resolved, env_from_os, resolve
from sizeguard.core.market import MarketBook, MarketRules
from sizeguard.core.policy import Policy, with_changes
from sizeguard.errors import ExchangeError, InvalidInput, SizeguardError, StoreError

HELP_ORDER = ("demo", "size", "explain", "markets", "presets", "config", "trade", "close",
              "positions", "state", "journal", "sync", "backtest", "montecarlo", "serve", "bots")
CRASH_DIR_ENV = "SIZEGUARD_CRASH_DIR"  # where crash reports go (default: the user state dir)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("sizeguard")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def crash_dir() -> Path:
    given = os.environ.get(CRASH_DIR_ENV)
    if given:
        return Path(given)
    from platformdirs import user_state_dir

    return Path(user_state_dir("sizeguard")) / "crash"


def write_crash_report(exc: BaseException, argv: Sequence[str]) -> Path | None:
    """The full traceback in a file of its own; None when even that cannot be written."""
    try:
        folder = crash_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}.txt"
        path.write_text(f"sizeguard {version()} on Python {sys.version.split()[0]}\n"
                        f"command: sizeguard {' '.join(argv)}\n\n"
                        + "".join(traceback.format_exception(exc)), encoding="utf-8")
        return path
    except OSError:
        return None


def _given(argv: Sequence[str], names: Sequence[str]) -> str | None:
    """The value given on the command line to one of ``names`` (``--x V`` or ``--x=V``)."""
    for i, token in enumerate(argv):
        for name in names:
            if token == name and i + 1 < len(argv):
                return argv[i + 1]
            if token.startswith(name + "="):
                return token[len(name) + 1:]
    return None


def usage_line(exc: click.ClickException, argv: Sequence[str] = ()) -> str:
    """A click error as one line: the option, the value given and what is wrong."""
    message = " ".join(exc.format_message().split())
    param = getattr(exc, "param", None)
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter) \
            and param is not None and getattr(param, "opts", None):
        value = _given(argv, param.opts)
        name = max(param.opts, key=len)
        if value is not None and (message.startswith("Invalid value") or value not in message):
            reason = message.split(":", 1)[-1].strip() if message.startswith("Invalid value") \
                else message
            reason = re.sub(r"Input should be less than or equal to (\S+)", r"must be <= \1", reason)
            reason = re.sub(r"Input should be greater than or equal to (\S+)", r"must be >= \1",
                            reason)
            for pydantic_words, plain in (("valid integer", "is not a whole number"),
                                          ("valid number", "is not a number (no thousands "
                                           "separators: 1000, not 1,000)")):
                if pydantic_words in reason:
                    reason = plain
            message = f"{name}={value!r}: {reason}"
    if isinstance(exc, click.NoSuchOption) and exc.possibilities:
        best = difflib.get_close_matches(exc.option_name, list(exc.possibilities), n=2, cutoff=0)
        message = f"no such option: {exc.option_name} (did you mean {' or '.join(best)}?)"
    elif isinstance(exc, click.NoSuchOption) and re.match(r"^-\d", exc.option_name):
        message = f"{exc.option_name}: a negative number is not accepted here"
    elif isinstance(exc, click.NoSuchOption):
        message = f"no such option: {exc.option_name}"
    elif isinstance(exc, click.MissingParameter) and exc.param is not None:
        help_text = getattr(exc.param, "help", None)
        if help_text:
            message = message.rstrip(".") + f" ({help_text.rstrip('.')})"
    ctx = getattr(exc, "ctx", None)
    where = f" [{ctx.command_path}]" if ctx is not None and ctx.command_path else ""
    return f"error: {message}{where}"


class SizeguardGroup(TyperGroup):
    """The top-level group: click's boxed errors become one line, and an unexpected error a
    one-line pointer to a crash report. Commands are listed in the order they were added."""

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(HELP_ORDER)}
        return sorted(self.commands, key=lambda name: rank.get(name, len(rank)))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        plain_help(self)
        try:
            rv = super().main(argv, prog_name or "sizeguard", complete_var, standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except typer.Exit as exc:
            code = exc.exit_code
        except click.NoArgsIsHelpError as exc:  # `sizeguard` or `sizeguard config` alone
            typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            code = 0
        except click.UsageError as exc:
            typer.echo(usage_line(exc, argv), err=True)
            code = 2
        except click.ClickException as exc:
            typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            code = exc.exit_code
        except typer.Abort:
            typer.echo("aborted", err=True)
            code = 130
        except (InvalidInput, ExchangeError, StoreError) as exc:  # a command that did not catch
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
            code = 2 if isinstance(exc, InvalidInput) else 1
        except Exception as exc:
            path = write_crash_report(exc, argv)
            where = f"; full report: {path}" if path else ""
            typer.echo(f"error: unexpected {type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:200]}{where}", err=True)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code)


def _metavar(param: Any) -> str:
    """What the help shows after an option: a word, never a Python type."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return ""
    if getattr(param, "is_flag", False):
        return ""
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    annotation = desc.annotation
    inner = typing.get_args(annotation)[0] if desc.is_list and typing.get_args(annotation) \
        else annotation
    word = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH", bool: "BOOLEAN"}.get(
        inner, "VALUE")
    return word


def plain_help(command: Any) -> None:
    """Give every option of ``command`` (and its subcommands) a plain metavar, once."""
    if getattr(command, "sizeguard_plain", False):
        return
    command.sizeguard_plain = True
    for param in getattr(command, "params", ()):
        if param.metavar is None:
            param.metavar = _metavar(param) if param.param_type_name == "option" else ""
        if not getattr(param, "help", None) and "--json" in getattr(param, "opts", ()):
            param.help = "Print JSON instead of text (one object or list on stdout)."
    original = getattr(command, "get_help_option", None)
    if original is not None:  # click makes --help/-h on demand: no "<bool>" after it either
        def help_option(ctx: Any) -> Any:
            opt = original(ctx)
            if opt is not None and opt.metavar is None:
                opt.metavar = ""
            return opt
        setattr(command, "get_help_option", help_option)  # noqa: B010
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


SIDES = {"long": "long", "short": "short", "buy": "long", "sell": "short"}


def side_value(side: str) -> str:
    """long/short, with ccxt's and freqtrade's buy/sell accepted as aliases."""
    found = SIDES.get(side.strip().lower())
    if found is None:
        raise InvalidInput("--side", side, "must be long or short (buy and sell are accepted)")
    return found


DEFAULT_EQUITY = 10_000.0  # a backtest's starting equity when --equity is not given


def starting_equity(equity: float | None, markets: Sequence[MarketRules]) -> float:
    """``--equity``, or the default of 10,000 for an account kept in a quote currency. A
    coin-margined market keeps the account in its coin, where 10,000 would mean 10,000 BTC: the
    user must say how much."""
    if equity is not None:
        positive("--equity", equity)
        return equity
    for m in markets:
        if m.inverse:
            raise InvalidInput("--equity", "not given", f"{m.symbol} keeps the account in "
                               f"{m.settle}: give the starting equity in {m.settle}, e.g. "
                               "--equity 1")
    return DEFAULT_EQUITY


def positive(option: str, value: float | None) -> None:
    """A price, equity or size must be a finite number > 0 (None: not given)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InvalidInput(option, value, "must be a finite number > 0")


def writable_output(option: str, path: Path | None, suffixes: Sequence[str] = ()) -> None:
    """Refuse an output path before any work: a known suffix, an existing writable directory."""
    if path is None:
        return
    if suffixes and path.suffix.lower() not in suffixes:
        raise InvalidInput(option, str(path), f"must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise InvalidInput(option, str(path), "is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(option, str(path), f"directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInput(option, str(path), "cannot be written (permission denied)")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sizeguard {version()}")
        raise typer.Exit(0)


app = typer.Typer(
    name="sizeguard",
    cls=SizeguardGroup,
    help="How big a leveraged crypto trade may be, and which ones must not happen.\n\n"
         "Start with [bold]sizeguard demo[/bold]; size a trade with [bold]sizeguard size[/bold], "
         "read why with [bold]sizeguard explain[/bold], check a policy with "
         "[bold]sizeguard config check[/bold].",
    epilog="Settings, lowest first: built-in defaults < --preset < --config FILE (or the first "
           "sizeguard.toml found in the working directory, then the user config dir) < "
           "environment (SIZEGUARD_SECTION__KEY, seed names such as QT_MAX_POSITIONS) < --set. "
           "See `sizeguard config show`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option(
        "--version", "-V", help="Print the version and exit.", is_eager=True,
        callback=_version_callback)] = False,
) -> None:
    """How big a leveraged crypto trade may be, and which ones must not happen."""


def fail(exc: Exception) -> NoReturn:
    """Refuse: one line on stderr naming the field and the value; exit 2 for input, 1 for an
    exchange or store failure."""
    typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
    raise typer.Exit(1 if isinstance(exc, ExchangeError | StoreError) else 2)


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite store URL or path; None for PostgreSQL or in-memory."""
    if url.startswith(("postgresql://", "postgres://")) or ":memory:" in url:
        return None
    for prefix in ("sqlite:///", "sqlite://"):
        if url.startswith(prefix):
            return url[len(prefix):]
    return None if "://" in url else url


def require_existing_store(url: str | None) -> None:
    """Read-only commands never create a store: a SQLite file that does not exist is refused
    (PostgreSQL stores are opened as they are)."""
    from sizeguard.adapters.sql_store import default_store_url

    path = sqlite_path(url or default_store_url())
    if path is not None and not Path(path).is_file():
        raise InvalidInput("--store", url or path, "no such store (nothing recorded yet); "
                           "`sizeguard trade ... --equity N` or `sizeguard bots add` creates it")


def market_book(markets: Path | None, tiers: Path | None) -> MarketBook:
    book = load_markets(markets)
    return attach_tiers(book, tiers) if tiers is not None else book


def resolved_policy(preset: str | None, config: Path | None, sets: Sequence[str] | None,
                    margin_mode: str | None = None, env_files: Sequence[Path] | None = None
                    ) -> tuple[Policy, Resolved]:
    """The policy the CLI uses: every layer, the process environment and a discovered config
    file included."""
    if preset is not None and config is not None:
        raise SizeguardError("give --preset or --config, not both")
    r = resolve(preset, config, sets or (), env_from_os(), env_files=env_files or (),
                discover=True)
    policy = r.policy
    if margin_mode is not None:
        if margin_mode not in ("isolated", "cross"):
            raise InvalidInput("--margin-mode", margin_mode, "must be isolated or cross")
        policy = with_changes(policy, "leverage", margin_mode=margin_mode)
    return policy, r


def effective_policy(preset: str | None, config: Path | None, sets: Sequence[str] | None,
                     margin_mode: str | None = None) -> Policy:
    return resolved_policy(preset, config, sets, margin_mode)[0]


__all__ = ["app", "clean_floats", "effective_policy", "fail", "market_book", "positive",
           "resolved_policy", "side_value", "version", "writable_output"]
