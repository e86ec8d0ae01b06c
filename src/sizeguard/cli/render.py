"""Human rendering of decisions (rich). JSON output is Decision.to_dict() as is."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from sizeguard.core.decision import REASON_TEXT, Decision, Reason


def money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def decision_table(d: Decision, title: str | None = None) -> Table:
    colour = "green" if d.accepted else "red"
    table = Table(title=title or f"{d.symbol} {d.side}: [{colour}]{d.status}[/{colour}]",
                  show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    rows: list[tuple[str, Any]] = [
        ("amount", d.amount),
        ("notional", money(d.notional)),
        ("margin", f"{money(d.margin)} ({d.margin_mode})"),
        ("leverage", f"{d.leverage:g}x"),
        ("risk", f"{money(d.risk)} = {d.risk_pct:.3f}% of equity (at {d.risk_basis})"),
        ("entry / stop", f"{d.entry_price:g} / {d.stop_price:g}" if d.stop_price else
         f"{d.entry_price:g} / no stop"),
        ("liquidation", "-" if d.liquidation_price is None else
         f"{d.liquidation_price:,.2f} ({d.liquidation_distance_pct:.2f}% away, tier {d.tier}, "
         f"mmr {d.maintenance_margin_rate})"),
        ("fees (in+out)", money(d.fees)),
        ("policy", d.policy),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    for code in d.reasons:
        table.add_row(f"[{colour}]{code}[/{colour}]", REASON_TEXT.get(Reason(code), ""))
    return table


def print_decision(d: Decision, console: Console | None = None) -> None:
    (console or Console()).print(decision_table(d))
