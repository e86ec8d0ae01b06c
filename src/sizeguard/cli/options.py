"""Options shared by the commands, with shell completion for presets and built-in symbols."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sizeguard.config.loader import PRESETS


def complete_preset(incomplete: str) -> list[str]:
    return [p for p in PRESETS if p.startswith(incomplete)]


def complete_symbol(incomplete: str) -> list[str]:
    from sizeguard.adapters.market_files import builtin_markets
    return [s for s in builtin_markets() if s.upper().startswith(incomplete.upper())]


MarketsOpt = Annotated[Path | None, typer.Option(
    "--markets", help="ccxt unified markets JSON (default: the built-in example markets).")]
TiersOpt = Annotated[Path | None, typer.Option(
    "--tiers", help="ccxt leverage tiers JSON, e.g. binanceusdm.json.")]
PresetOpt = Annotated[str | None, typer.Option(
    "--preset", help=f"One of: {', '.join(PRESETS)} (default ai-atr-risk, or SIZEGUARD_PRESET).",
    autocompletion=complete_preset)]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="A policy TOML file (or SIZEGUARD_CONFIG).")]
EnvFileOpt = Annotated[list[Path] | None, typer.Option(
    "--env-file", help="Read a bot's .env file into the environment layer (repeatable; the real "
    "environment wins).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a policy key: --set limits.max_notional=500 (repeatable).")]
SideOpt = Annotated[str, typer.Option(
    "--side", metavar="long|short", help="long or short (buy and sell are accepted too).")]
