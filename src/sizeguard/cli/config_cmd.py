"""``sizeguard config``: show the effective policy and its sources, audit it, scan a bot's tree.

Exit codes: 0 fine (warnings allowed unless ``--strict``), 1 the audit found errors (or the scan
found disagreements with ``--strict``), 2 invalid input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sizeguard.adapters.market_files import attach_tiers, load_markets
from sizeguard.cli.app import app, fail
from sizeguard.cli.options import (
    ConfigOpt,
    EnvFileOpt,
    MarketsOpt,
    PresetOpt,
    SetOpt,
    TiersOpt,
)
from sizeguard.cli.render import Record, print_fitting
from sizeguard.config.aliases import ALIASES, BY_NAME
from sizeguard.config.scan import ScanReport, normalise, scan
from sizeguard.config.settings import Resolved, env_from_os, policy_to_toml, resolve
from sizeguard.core.audit import ERROR, INFO, RULES, WARNING, AuditReport, audit, relevant_markets
from sizeguard.core.market import MarketBook
from sizeguard.errors import SizeguardError

config_app = typer.Typer(
    name="config", no_args_is_help=True, rich_markup_mode="rich",
    help="Show where every policy value comes from, audit a policy, scan a bot's settings.")
app.add_typer(config_app, name="config")

SOURCE_STYLE = {"default": "dim", "preset": "cyan", "file": "blue", "env": "magenta",
                "--set": "yellow"}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def _resolve(preset: str | None, config: Path | None, sets: list[str] | None,
             env_files: list[Path] | None, cross_check: bool = True) -> Resolved:
    return resolve(preset, config, sets or (), env_from_os(), env_files=env_files or (),
                   cross_check=cross_check, discover=True)


SHOW_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard config show --preset quantum-4x30\n\n"
    "  SIZEGUARD_LIMITS__MAX_NOTIONAL=500 QT_MAX_POSITIONS=3 sizeguard config show --preset "
    "quantum-4x30 --changed\n\n"
    "  sizeguard config show --config my-policy.toml --set leverage.value=10 --json\n\n"
    "  QT_MAX_POSITIONS=3 sizeguard config show --preset quantum-4x30 --toml > frozen.toml\n\n"
    "  sizeguard config show --preset quantum-4x30 --env-file ~/bots/quantum/.env --changed"
)


@config_app.command("show", epilog=SHOW_EXAMPLES)
def show(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    env_file: EnvFileOpt = None,
    changed: Annotated[bool, typer.Option("--changed", help="Only values that are not defaults.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Policy, sources and layers as JSON.")] = False,
    as_toml: Annotated[bool, typer.Option(
        "--toml", help="The effective policy as a policy file (sources as comments).")] = False,
) -> None:
    """Print the effective policy and where each value came from.

    Layers, lowest first: default < preset:NAME < file:PATH < env:NAME < --set."""
    try:
        r = _resolve(preset, config, set_, env_file)
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    values = r.values()
    if as_toml:
        typer.echo(policy_to_toml(r), nl=False)
        return
    if as_json:
        out = {"policy": {k: _plain(v) for k, v in values.items()},
               "sources": {k: r.source(k) for k in values},
               "layers": list(r.layers), "notes": list(r.notes)}
        typer.echo(json.dumps(out))
        return
    console = Console()
    table = Table(title=f"effective policy [bold]{r.policy.name}[/bold]", title_justify="left")
    table.add_column("key", no_wrap=True)
    table.add_column("value")
    table.add_column("source", no_wrap=True)
    section = ""
    for key, value in values.items():
        src = r.source(key)
        if changed and src == "default":
            continue
        head = key.split(".", 1)[0]
        if head != section and section:
            table.add_section()
        section = head
        style = SOURCE_STYLE.get(src.split(":", 1)[0], "")
        table.add_row(key, _fmt_value(value), f"[{style}]{src}[/{style}]" if style else src)
    console.print(table)
    console.print("[dim]layers (lowest first): " + " < ".join(r.layers) + "[/dim]")
    for name in dict.fromkeys(r.from_env().values()):
        alias = BY_NAME.get(name)
        if alias is not None:
            console.print(Text(f"seed name {name} -> {', '.join(alias.keys)}: {alias.meaning} "
                               f"({alias.unit})", style="magenta"))
    for note in r.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_fmt_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    return str(value)


CHECK_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard config check --preset quantum-4x30 --equity 10000\n\n"
    "  sizeguard config check --preset ai-atr-risk --volatility 2.3\n\n"
    "  sizeguard config check --config my.toml --markets binanceusdm.json --tiers "
    "binanceusdm-tiers.json --symbol BTC/USDT:USDT --strict"
)


@config_app.command("check", epilog=CHECK_EXAMPLES)
def check(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    env_file: EnvFileOpt = None,
    markets: MarketsOpt = None,
    tiers: TiersOpt = None,
    symbol: Annotated[list[str] | None, typer.Option(
        "--symbol", help="Audit only these markets (repeatable). Default: the markets the policy "
        "is meant for (contracts when its leverage is above 1).")] = None,
    equity: Annotated[float, typer.Option("--equity", help="Equity to audit at.")] = 10_000.0,
    volatility: Annotated[float | None, typer.Option(
        "--volatility", help="Typical volatility (ATR) in % of price; the typical stop is "
        "stop.atr_mult x this.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The findings as JSON.")] = False,
) -> None:
    """Audit one policy against a market set: errors, warnings, info; exit 1 on errors."""
    try:
        if not math.isfinite(equity) or equity <= 0:
            raise SizeguardError(f"equity={equity!r}: must be a finite number > 0")
        if volatility is not None and (not math.isfinite(volatility) or volatility <= 0):
            raise SizeguardError(f"volatility={volatility!r}: must be a percent > 0")
        r = _resolve(preset, config, set_, env_file, cross_check=False)
        book: MarketBook = load_markets(markets)
        if tiers is not None:
            book = attach_tiers(book, tiers)
        chosen = [book[s] for s in symbol] if symbol else relevant_markets(r.policy, book.values())
        report = audit(r.policy, chosen, equity, volatility)
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(audit_to_dict(report, r)))
    else:
        print_audit(report, r, Console())
    if report.errors or (strict and report.warnings):
        raise typer.Exit(1)


def audit_to_dict(report: AuditReport, r: Resolved | None = None) -> dict[str, Any]:
    s = report.slot
    out: dict[str, Any] = {
        "policy": report.policy, "equity": report.equity, "volatility_pct": report.volatility_pct,
        "markets": report.markets,
        "slot": {"leverage": _plain(s.leverage), "stop_distance_pct": None if s.stop_distance is None
                 else s.stop_distance * 100, "stop_source": s.stop_source,
                 "raw_notional": s.raw_notional, "notional": s.notional, "margin": s.margin,
                 "binding": list(s.binding)},
        "findings": [{"code": f.code, "severity": f.severity, "symbol": f.symbol,
                      "message": f.message, "keys": list(f.keys),
                      "sources": {k: r.source(k) for k in f.keys} if r else {}}
                     for f in report.findings],
        "errors": len(report.errors), "warnings": len(report.warnings),
        "error_rules": sorted({f.code for f in report.errors}),
        "warning_rules": sorted({f.code for f in report.warnings}),
        "checked": list(report.checked), "passed": list(report.passed), "notes": list(report.notes),
    }
    return out


SEV_STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "dim"}
MAX_PER_RULE = 6


def print_audit(report: AuditReport, r: Resolved, console: Console) -> None:
    s = report.slot
    console.print(f"[bold]config check[/bold]: policy [bold]{report.policy}[/bold] at equity "
                  f"{report.equity:,.2f} on {report.markets} market(s)"
                  + (f", volatility {report.volatility_pct:g}%" if report.volatility_pct else ""))
    if s.notional is not None:
        slot = f"one full-size slot: notional {s.notional:,.2f}"
        if s.margin is not None:
            slot += f", margin {s.margin:,.2f} at {s.leverage:g}x"
        if s.binding:
            slot += f" (cut from {s.raw_notional or 0:,.2f} by {', '.join(s.binding)})"
        console.print(slot)
    if s.stop_distance is not None:
        console.print(f"typical stop: {s.stop_distance:.2%} ({s.stop_source})")
    console.print()
    by_rule: dict[tuple[str, str], list[Any]] = {}
    for f in report.findings:
        by_rule.setdefault((f.severity, f.code), []).append(f)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for (sev, code), items in by_rule.items():
        style = SEV_STYLE[sev]
        grid.add_row(f"[{style}]{sev.upper()}[/{style}]", f"[bold]{code}[/bold]")
        for f in items[:MAX_PER_RULE]:
            grid.add_row("", Text("- " + f.message))
        if len(items) > MAX_PER_RULE:
            grid.add_row("", f"... and {len(items) - MAX_PER_RULE} more market(s) (--json lists all)")
        keys = dict.fromkeys(k for f in items for k in f.keys)
        grid.add_row("", Text("settings: " + ", ".join(f"{k} ({r.source(k)})" for k in keys),
                              style="dim"))
    for code in report.passed:  # what holds, in its own words: never under the failure's name
        grid.add_row("[green]ok[/green]", Text(RULES[code]))
    console.print(grid)
    for note in report.notes:
        console.print(Text(f"note: {note}", style="dim"))
    e, w = len(report.errors), len(report.warnings)
    verdict = "[bold red]FAIL[/bold red]" if e else ("[yellow]PASS with warnings[/yellow]" if w
                                                     else "[green]PASS[/green]")
    console.print(f"\n{verdict}: {_count(report.errors, 'error')}, "
                  f"{_count(report.warnings, 'warning')}; {len(report.passed)} check(s) passed")


def _count(findings: Sequence[Any], what: str) -> str:
    """Rules broken, with the markets they were found on: one rule on 3 markets is one error."""
    rules = len({f.code for f in findings})
    markets = len(findings)
    return f"{rules} {what}(s)" + (f" on {markets} market(s)" if markets > rules else "")


SCAN_EXAMPLES = (
    "Examples:\n\n"
    "  sizeguard config scan ~/bots/viper\n\n"
    "  sizeguard config scan . --json | jq '.settings[] | select(.disagree)'"
)


@config_app.command("scan", epilog=SCAN_EXAMPLES)
def scan_cmd(
    path: Annotated[Path, typer.Argument(help="A bot's source tree (or one file).")],
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when values disagree.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Every setting and value as JSON.")] = False,
) -> None:
    """Find every known sizing setting in a bot's tree (.env, compose, toml/yaml/json, Python
    defaults, docs) with file:line, and flag the ones whose values disagree."""
    try:
        report = scan(path)
    except (SizeguardError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(scan_to_dict(report)))
    else:
        print_scan(report, Console())
    if strict and report.disagreements:
        raise typer.Exit(1)


def scan_to_dict(report: ScanReport) -> dict[str, Any]:
    return {
        "root": report.root, "files": report.files,
        "settings": [{"name": s.name, "policy_keys": list(s.policy_keys), "disagree": s.disagrees,
                      "values": sorted(s.values),
                      "occurrences": [{"value": o.value, "file": o.file, "line": o.line,
                                       "kind": o.kind, "text": o.text} for o in s.occurrences]}
                     for s in report.settings],
        "disagreements": [s.name for s in report.disagreements],
        "skipped": list(report.skipped),
    }


def print_scan(report: ScanReport, console: Console) -> None:
    console.print(f"[bold]config scan[/bold] {report.root}: {report.files} file(s) read, "
                  f"{len(report.settings)} known setting(s)")
    if not report.settings:
        console.print("no known sizing setting found (see `sizeguard config aliases`)")
        return
    for s in report.settings:
        flag = " [bold red]DISAGREE[/bold red]" if s.disagrees else ""
        console.print(f"\n[bold]{s.name}[/bold] -> {', '.join(s.policy_keys)}{flag}", highlight=False)
        t = Table(show_header=False, box=None, padding=(0, 2))
        t.add_column("value", justify="right")
        t.add_column("where")
        t.add_column("kind", style="dim")
        majority = max(s.values.items(), key=lambda kv: len(kv[1]))[0] if s.values else None
        for o in s.occurrences:
            value = "(no default)" if o.value is None else o.value
            odd = s.disagrees and o.value is not None and normalise(o.value) != majority
            t.add_row(f"[red]{value}[/red]" if odd else value, o.where, o.kind)
        console.print(t)
    bad = report.disagreements
    console.print()
    if bad:
        console.print(f"[bold red]{len(bad)} setting(s) disagree:[/bold red] "
                      + ", ".join(s.name for s in bad))
    else:
        console.print("[green]every setting has one value[/green]")
    for item in report.skipped:
        console.print(f"[dim]skipped {item}[/dim]")


@config_app.command("aliases", epilog="Examples:\n\n  sizeguard config aliases\n\n"
                    "  sizeguard config aliases --json")
def aliases(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The seed bots' environment names sizeguard reads, and what each sets."""
    if as_json:
        typer.echo(json.dumps([{"name": a.name, "system": a.system, "keys": list(a.keys),
                                "meaning": a.meaning, "unit": a.unit} for a in ALIASES]))
        return
    title = "seed-compatible environment names (SIZEGUARD_* names win over these)"
    t = Table(title=title, title_justify="left")
    for col in ("name", "sets", "meaning", "unit"):
        t.add_column(col, no_wrap=col in ("name", "sets"), min_width=20 if col == "meaning" else None)
    for a in ALIASES:
        t.add_row(a.name, "\n".join(a.keys), a.meaning, a.unit)
    print_fitting(Console(), t, title, [
        Record(f"{a.name} -> {', '.join(a.keys)}", [], [("meaning", a.meaning), ("unit", a.unit)])
        for a in ALIASES])
