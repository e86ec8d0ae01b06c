"""Human rendering (rich): decisions, the explained trace, markets, the demo. JSON output is
``Decision.to_dict()`` as is; nothing here changes a number, it only words it."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from sizeguard.core.decision import REASON_TEXT, Decision, Reason, TraceStep
from sizeguard.core.market import MarketRules

SKIP_REASONS = {
    Reason.HALTED_DAILY_LOSS, Reason.HALTED_DRAWDOWN, Reason.MAX_POSITIONS, Reason.POSITION_OPEN,
    Reason.COOLDOWN, Reason.NO_EDGE, Reason.STOP_BEYOND_LIQUIDATION, Reason.BELOW_MIN_AMOUNT,
    Reason.BELOW_MIN_COST, Reason.BELOW_MIN_NOTIONAL, Reason.INSUFFICIENT_MARGIN, Reason.ZERO_SIZE,
    Reason.MAX_LONG_POSITIONS, Reason.MAX_SHORT_POSITIONS, Reason.MAX_GROUP_POSITIONS,
}


def money(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "unlimited"
    return f"{value:,.2f}"


def num(value: Any) -> str:
    """A number for people: thousands separators, no float noise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if math.isinf(value):
        return "unlimited"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.2f}"
    text = f"{value:.6g}"
    if "e" in text:  # 1e-05 -> 0.00001
        text = f"{value:.12f}".rstrip("0").rstrip(".")
    return text


def short_reason(code: str) -> str:
    """A reason code as words that wrap: CAPPED_SYMBOL -> capped symbol."""
    return code.lower().replace("_", " ")


def reason_text(code: str) -> str:
    try:
        return REASON_TEXT.get(Reason(code), code)
    except ValueError:
        return code


def _binding_limits(d: Decision) -> list[tuple[str, str]]:
    """(code, words) of each limit step that cut the size, in pipeline order."""
    out = []
    for s in d.trace:
        if s.bound and s.step in ("limit", "liquidation_guard"):
            values = dict(s.values)
            after, before = values.get("notional"), values.get("notional_before")
            words = reason_text(s.bound)
            lev0, lev1 = values.get("leverage_before"), values.get("leverage")
            if isinstance(lev0, int | float) and isinstance(lev1, int | float) and lev0 != lev1:
                words += f": leverage {lev0:g}x -> {lev1:g}x"
            if isinstance(after, int | float) and (before is None or before != after):
                words += f" -> notional {money(after)}"
            out.append((s.bound, words))
    return out


def decision_table(d: Decision, title: str | None = None) -> Table:
    colour = "green" if d.accepted else "red"
    table = Table(title=title or f"{d.symbol} {d.side}: [{colour}]{d.status}[/{colour}]",
                  show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    liq = "-"
    if d.liquidation_price is not None and d.liquidation_distance_pct is not None:
        liq = f"{money(d.liquidation_price)} ({d.liquidation_distance_pct:.2f}% away"
        if d.stop_distance_pct is not None:
            liq += f"; stop {d.stop_distance_pct:.2f}% away"
        liq += f", tier {d.tier}" if d.tier is not None else ""
        liq += f", mmr {d.maintenance_margin_rate})"
    rows: list[tuple[str, Any]] = [
        ("amount", d.amount),
        ("notional", money(d.notional)),
        ("margin", f"{money(d.margin)} ({d.margin_mode})"),
        ("leverage", f"{d.leverage:g}x"),
        ("risk", f"{money(d.risk)} = {d.risk_pct:.3f}% of equity (at {d.risk_basis})"),
        ("entry / stop", f"{d.entry_price:g} / {d.stop_price:g}" if d.stop_price else
         f"{d.entry_price:g} / no stop"),
        ("liquidation", liq),
        ("fees (in+out)", money(d.fees)),
        ("policy", d.policy),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    bound = _binding_limits(d)
    for code, words in bound:
        table.add_row(f"[yellow]limit[/yellow] {code}", words)
    shown = {c for c, _ in bound}
    for code in d.reasons:
        if str(code) in shown:
            continue
        tag = "skipped" if code in SKIP_REASONS and not d.accepted else "note"
        style = "red" if tag == "skipped" else colour
        table.add_row(f"[{style}]{tag}[/{style}] {code}", reason_text(str(code)))
    return table


def print_decision(d: Decision, console: Console | None = None,
                   env_settings: Mapping[str, str] | None = None) -> None:
    console = console or Console()
    console.print(decision_table(d))
    if not d.accepted:
        why = [reason_text(str(r)) for r in d.reasons if r in SKIP_REASONS] or [
            reason_text(str(d.reasons[-1]))] if d.reasons else ["no reason recorded"]
        console.print(f"[red]Skipped:[/red] {'; '.join(why)}.")
    if env_settings:
        pairs = ", ".join(f"{k} ({v})" for k, v in sorted(env_settings.items()))
        console.print(f"[dim]policy keys from the environment: {pairs}[/dim]")
    console.print("[dim]Step by step: the same command with `sizeguard explain`.[/dim]")


# -- explain ---------------------------------------------------------------------------------

def _v(values: Mapping[str, Any], key: str, fmt: str = "num") -> str:
    value = values.get(key)
    if value is None:
        return "-"
    if fmt == "pct" and isinstance(value, int | float):
        return f"{value:.3g}%"
    if fmt == "money" and isinstance(value, int | float):
        return money(value)
    return num(value)


def narrate(step: TraceStep) -> str:
    """One trace step in plain words."""
    v = dict(step.values)
    name, note = step.step, step.note
    if name == "validate":
        text = (f"Checked the input: {v.get('symbol')} {v.get('side')} at {_v(v, 'price')}, equity "
                f"{_v(v, 'equity', 'money')}, available margin {_v(v, 'available', 'money')}, "
                f"taker fee {float(v.get('taker_fee') or 0):.4%}.")
        notes = v.get("market_notes") or []
        if notes:
            text += " Market: " + "; ".join(str(n) for n in notes) + "."
        return text
    if name == "stop":
        if "stop_price" not in v:
            return ("No stop was given: risk is what the position can lose, its margin "
                    "(isolated) or its notional (spot, cross).")
        return (f"Stop at {_v(v, 'stop_price')}, {_v(v, 'distance_pct', 'pct')} from entry "
                f"({v.get('source')}).")
    if name == "gates":
        if step.bound:
            return f"A gate closed: {reason_text(step.bound)} ({note})."
        return f"Gates: {note or 'all open'} (daily loss, drawdown, positions, cooldown)."
    if name == "kelly":
        return (f"Kelly: win rate {_v(v, 'win_rate')}, payoff {_v(v, 'payoff')} -> full Kelly "
                f"{_v(v, 'full_kelly')}; the policy uses {_v(v, 'fraction')} of it.")
    if name == "base_size":
        return f"Base size from the '{v.get('model')}' model: {_v(v, 'base')} ({v.get('unit')})."
    if name == "adjust":
        parts = [f"x {k.replace('_', ' ')} {num(val)}" for k, val in step.values
                 if k in ("regime", "volatility", "confidence") and val != 1]
        after = [f"x {k.replace('_', ' ')} {num(val)}" for k, val in step.values
                 if k in ("symbol_performance", "losing_streak", "drawdown") and val != 1]
        if not parts and not after and v.get("clamped") == v.get("base"):
            return f"No adjustment applies: the base {num(v.get('base'))} stays."
        text = f"Adjustments: {num(v.get('base'))} " + (" ".join(parts) if parts else
                                                         "(no multiplier)")
        text += f" = {num(v.get('before_clamp'))}"
        if v.get("clamped") != v.get("before_clamp"):
            text += f", clamped to {num(v.get('clamped'))}"
        if after:
            text += ", then " + " ".join(after) + " (protective, after the clamp)"
        if v.get("adjusted") == v.get("clamped") and not after:
            return text + "."
        return text + f" -> {num(v.get('adjusted'))}."
    if name == "notional":
        if "risk_money" in v:
            return (f"Notional = risk {_v(v, 'risk_money', 'money')} / (stop "
                    f"{_v(v, 'stop_distance_pct', 'pct')} + fees to the stop "
                    f"{_v(v, 'fee_round_trip_pct', 'pct')}) = {_v(v, 'notional', 'money')}.")
        if "margin" in v:
            return (f"Notional = margin {_v(v, 'margin', 'money')} x leverage {_v(v, 'leverage')}x "
                    f"= {_v(v, 'notional', 'money')} (margin is multiplied, never divided).")
        if "asset_volatility_pct" in v:
            return (f"Notional = equity x target / volatility {_v(v, 'asset_volatility_pct', 'pct')}"
                    f" = {_v(v, 'notional', 'money')}.")
        return f"Notional {_v(v, 'notional', 'money')}."
    if name == "limit":
        return (f"Limit {step.bound}: {reason_text(step.bound or '')} -> notional "
                f"{_v(v, 'notional', 'money')}" + (f" ({note})." if note else "."))
    if name == "limits":
        if v.get("notional_before") == v.get("notional"):
            return f"No notional or margin limit binds ({_v(v, 'notional', 'money')})."
        return f"After the limits: {_v(v, 'notional_before', 'money')} -> {_v(v, 'notional', 'money')}."
    if name == "liquidation_guard":
        if step.bound == str(Reason.STOP_BEYOND_LIQUIDATION):
            return (f"Liquidation guard: at {_v(v, 'leverage')}x the stop is beyond liquidation; "
                    f"the safe leverage is {_v(v, 'safe_leverage')}x ({note}): the trade is refused.")
        if "leverage_before" in v:
            text = (f"Liquidation guard: at {_v(v, 'leverage_before')}x liquidation would come "
                    f"before the stop (needed {_v(v, 'required_distance_pct', 'pct')} from entry): "
                    f"leverage lowered to {_v(v, 'leverage')}x")
            if v.get("notional_before") == v.get("notional"):
                return text + f", notional kept at {_v(v, 'notional', 'money')}."
            return text + (f", notional {_v(v, 'notional_before', 'money')} -> "
                           f"{_v(v, 'notional', 'money')}.")
        return (f"Liquidation guard ({v.get('mode')}): notional {_v(v, 'notional_before', 'money')}"
                f" -> {_v(v, 'notional', 'money')}" + (f"; {note}." if note else "."))
    if name == "leverage":
        if note:
            return f"Leverage {_v(v, 'leverage')}x: {note}."
        return (f"Leverage {_v(v, 'leverage')}x ({v.get('mode')}); the exchange tier "
                f"{v.get('tier')} allows {_v(v, 'tier_max_leverage')}x at this size, maintenance "
                f"rate {v.get('maintenance_margin_rate')}; margin {_v(v, 'margin', 'money')} for "
                f"notional {_v(v, 'notional', 'money')}.")
    if name == "exchange_rules":
        return (f"Exchange rules: {_v(v, 'quantity')} units rounds down to {v.get('lots')} lots of "
                f"{_v(v, 'lot_step')} = {v.get('amount')}; minimum amount {_v(v, 'min_amount')}, "
                f"minimum order value {_v(v, 'min_cost')} ({v.get('min_cost_source')}).")
    if name == "raise_to_minimum":
        verdict = "raised" if v.get("ok") else "not raised"
        return f"Below the minimum: {verdict} to {v.get('lots')} lots ({note})."
    if name == "decision":
        return (f"Decision: {v.get('status')}, amount {v.get('amount')}, notional "
                f"{_v(v, 'notional', 'money')}, margin {_v(v, 'margin', 'money')} at "
                f"{_v(v, 'leverage')}x, risk {_v(v, 'risk', 'money')}, fees {_v(v, 'fees', 'money')}"
                + (f", liquidation {_v(v, 'liquidation_price')}" if v.get("liquidation_price") else "")
                + ".")
    details = ", ".join(f"{k} {num(val)}" for k, val in step.values)
    extra = "; ".join(x for x in (step.bound and reason_text(step.bound), note, details) if x)
    return f"{name.replace('_', ' ').capitalize()}: {extra or 'done'}."


def print_explanation(d: Decision, console: Console | None = None) -> None:
    console = console or Console()
    colour = "green" if d.accepted else "red"
    console.print(f"[bold]{d.symbol} {d.side} at {d.entry_price:g}[/bold] with policy "
                  f"[bold]{d.policy}[/bold], step by step:\n")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for i, step in enumerate(d.trace, start=1):
        mark = "[yellow]![/yellow]" if step.bound else " "
        grid.add_row(f"{mark}{i}.", step.step, Text(narrate(step)))
    console.print(grid)
    console.print("[dim](! marks a step that bound the size)[/dim]\n")
    summary = (f"[{colour}]{d.status}[/{colour}]: amount {d.amount}, notional {money(d.notional)}, "
               f"margin {money(d.margin)} at {d.leverage:g}x, risk {money(d.risk)} "
               f"({d.risk_pct:.3f}% of equity)")
    console.print(summary)
    for code in d.reasons:
        console.print(f"  [{colour}]{code}[/{colour}]: {reason_text(str(code))}")


# -- markets ---------------------------------------------------------------------------------

def _kind(m: MarketRules) -> str:
    if not m.is_contract:
        return "spot"
    return f"{'inverse' if m.inverse else 'linear'} {m.kind}"


def markets_table(markets: Sequence[MarketRules], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("symbol", "type", "amount step", "min amount", "min cost", "max leverage",
                "taker", "tiers"):
        t.add_column(col, justify="left" if col in ("symbol", "type") else "right",
                     no_wrap=col in ("symbol", "amount step", "min amount"))
    for m in markets:
        t.add_row(m.symbol, _kind(m), num(m.amount_step), num(m.min_amount), num(m.min_cost),
                  "-" if not m.is_contract else f"{num(m.max_leverage)}x",
                  "-" if m.taker is None else f"{m.taker:.4%}", str(len(m.tiers) or "-"))
    return t


def market_records(markets: Sequence[MarketRules]) -> list[Record]:
    """The rows of :func:`markets_table` for a narrow terminal."""
    return [Record(f"{m.symbol}  {_kind(m)}", [
        ("step", num(m.amount_step)), ("min amount", num(m.min_amount)),
        ("min cost", num(m.min_cost)),
        ("max leverage", "-" if not m.is_contract else f"{num(m.max_leverage)}x"),
        ("taker", "-" if m.taker is None else f"{m.taker:.4%}"),
        ("tiers", str(len(m.tiers) or "-"))]) for m in markets]


def market_panel(m: MarketRules) -> Group:
    info = Table(show_header=False, title=f"[bold]{m.symbol}[/bold] ({m.exchange or 'unknown exchange'})",
                 title_justify="left")
    info.add_column("rule", style="bold")
    info.add_column("value")
    rows = [
        ("type", _kind(m)),
        ("base / quote / settle", f"{m.base} / {m.quote} / {m.settle}"),
        ("contract size", num(m.contract_size) + (" quote per contract" if m.inverse else
                                                  (" base per contract" if m.is_contract else ""))),
        ("amount step", num(m.amount_step) + (" contracts" if m.is_contract else f" {m.base}")),
        ("price tick", num(m.price_tick)),
        ("amount min / max", f"{num(m.min_amount)} / {num(m.max_amount)}"),
        ("market order min / max", f"{num(m.market_min_amount)} / {num(m.market_max_amount)}"),
        ("order value min / max", f"{num(m.min_cost)} / {num(m.max_cost)}"),
        ("max leverage", "-" if not m.is_contract else f"{num(m.max_leverage)}x"),
        ("taker / maker", "-" if m.taker is None else f"{m.taker:.4%} / {(m.maker or 0):.4%}"),
    ]
    for k, v in rows:
        info.add_row(k, v)
    parts: list[Any] = [info]
    if m.tiers:
        tiers = Table(title="leverage tiers (a tier covers min <= notional < max)",
                      title_justify="left")
        for col in ("tier", "notional from", "to", "max leverage", "maint. rate", "maint. amount"):
            tiers.add_column(col, justify="right")
        for t in m.tiers:
            tiers.add_row(str(t.tier), num(t.min_notional), num(t.max_notional),
                          f"{num(t.max_leverage)}x", f"{t.maintenance_margin_rate:.4%}",
                          num(t.maintenance_amount))
        parts.append(tiers)
    if m.notes:
        parts.append(Text("notes: " + "; ".join(m.notes), style="dim"))
    return Group(*parts)


# -- demo ------------------------------------------------------------------------------------

def side_by_side(results: Sequence[tuple[str, Decision]], title: str) -> Table:
    t = Table(title=title, title_justify="left", show_lines=True)
    t.add_column("", style="bold", no_wrap=True)
    for preset, _ in results:
        # break names at their hyphens so "viper-fixed-margin" never splits mid-word
        t.add_column(preset.replace("-", "-\n"), justify="right")

    def row(label: str, f: Any) -> None:
        t.add_row(label, *[f(d) for _, d in results])

    row("status", lambda d: f"[{'green' if d.accepted else 'red'}]{d.status}[/]")
    row("amount", lambda d: d.amount)
    row("notional", lambda d: money(d.notional))
    row("margin", lambda d: money(d.margin))
    row("leverage", lambda d: f"{d.leverage:g}x")
    row("risk", lambda d: f"{money(d.risk)}\n{d.risk_pct:.2f}% ({d.risk_basis})")
    row("liq.", lambda d: "-" if d.liquidation_distance_pct is None else
        f"{money(d.liquidation_price)}\n{d.liquidation_distance_pct:.2f}% away")
    return t


def summary_line(preset: str, d: Decision) -> Text:
    """One decision in one sentence: what was sized, and the reasons that shaped it."""
    line = Text()
    line.append(f"{preset}: ", style="bold")
    if not d.accepted:
        skip = next((r for r in d.reasons if r in SKIP_REASONS), d.reasons[-1] if d.reasons else None)
        line.append("skipped", style="red")
        line.append(f" - {reason_text(str(skip)) if skip else 'no size'}")
        shaped = [r for r in d.reasons if r not in SKIP_REASONS and r != Reason.ROUNDED_TO_STEP]
        if shaped:
            line.append(" (after: " + "; ".join(reason_text(str(r)) for r in shaped) + ")",
                        style="dim")
        return line
    line.append(f"{d.amount} = {money(d.notional)} notional, {money(d.margin)} margin at "
                f"{d.leverage:g}x, risk {money(d.risk)} ({d.risk_pct:.2f}%)")
    shaped = [r for r in d.reasons if r != Reason.ROUNDED_TO_STEP]
    if shaped:
        line.append("; " + "; ".join(reason_text(str(r)) for r in shaped), style="yellow")
    return line


def references_table(rows: Sequence[tuple[str, float, Decision]]) -> Table:
    t = Table(title="The reference cases of DESIGN.md", title_justify="left", show_lines=True)
    t.add_column("preset", no_wrap=True, style="bold")
    t.add_column("case")
    t.add_column("decision")
    for preset, equity, d in rows:
        colour = "green" if d.accepted else "red"
        # one fact per line, so that a narrow terminal never splits a figure from its name
        outcome = (f"[{colour}]{d.status}[/{colour}] {d.amount}\nnotional {money(d.notional)}\n"
                   f"margin {money(d.margin)} at {d.leverage:g}x")
        if d.reasons:
            outcome += "\n[dim]" + ", ".join(short_reason(str(r)) for r in d.reasons) + "[/dim]"
        t.add_row(preset, f"{d.symbol} {d.side}\n@ {d.entry_price:,g}\nequity {num(equity)}",
                  outcome)
    return t


def hint_panel(lines: Sequence[str]) -> Panel:
    return Panel("\n".join(lines), title="try next", title_align="left", border_style="dim")


# -- narrow terminals ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Record:
    """One row for a narrow terminal: a head line, short ``key value`` pairs that are never
    split, and free text that wraps at words."""

    head: str
    fields: Sequence[tuple[str, str]] = ()
    text: Sequence[tuple[str, str]] = ()


def fits(console: Console, table: Table) -> bool:
    """Whether ``table`` fits the console without shrinking a column below its content."""
    wide = console.options.update(width=100_000)  # measured unclamped, then compared
    return Measurement.get(console, wide, table).maximum <= console.width


def print_records(console: Console, title: str, records: Sequence[Record]) -> None:
    """Rows as blocks: ids, symbols and amounts whole on one line, never cut or wrapped."""
    width = max(console.width, 40)
    console.print(Text(title, style="bold"), soft_wrap=True)
    for r in records:
        console.print(Text(r.head, style="bold"), soft_wrap=True)
        line = ""
        for key, value in r.fields:
            chunk = f"{key} {value}" if key else value
            if line and len(line) + 2 + len(chunk) > width:
                console.print(Text(line), soft_wrap=True)
                line = ""
            line = f"{line}  {chunk}" if line else f"  {chunk}"
        if line:
            console.print(Text(line), soft_wrap=True)
        for key, value in r.text:
            console.print(Text(textwrap.fill(value, width - 1, initial_indent=f"  {key}: ",
                                             subsequent_indent="    ", break_long_words=False,
                                             break_on_hyphens=False)), soft_wrap=True)


def print_fitting(console: Console, table: Table, title: str, records: Sequence[Record]) -> None:
    """The table when it fits the terminal, else the same rows as :func:`print_records`."""
    if fits(console, table):
        console.print(table)
    else:
        print_records(console, title, records)


def clean_floats(value: Any) -> Any:
    """JSON without float noise: -42.592683000000044 -> -42.592683 (15 significant digits)."""
    if isinstance(value, float):
        return float(f"{value:.15g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: clean_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_floats(v) for v in value]
    return value


FRACTION_KEYS = ("total_return", "cagr", "max_drawdown", "win_rate", "ruin_threshold",
                 "probability_of_ruin", "probability_of_loss", *(f"max_drawdown_p{q}" for q in (
                     5, 25, 50, 75, 95)))


def with_percent(row: dict[str, Any]) -> dict[str, Any]:
    """Each fraction also as a percent (``max_drawdown_pct``), as ``size`` reports ``risk_pct``;
    the fraction keys stay as they were."""
    out = dict(row)
    for key in FRACTION_KEYS:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{key}_pct"] = value * 100 if math.isfinite(value) else None
    return clean_floats(out)  # type: ignore[no-any-return]
