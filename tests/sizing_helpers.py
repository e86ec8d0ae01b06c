"""Small builders shared by the sizing tests: synthetic markets, policies and accounts.

The synthetic market ``TST/USDT:USDT`` trades at round prices with a 0.001 step and no fee
unless told, so every expected number in the table-driven tests can be worked by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision, TraceStep
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.core.policy import Policy, policy_from_dict

SYMBOL = "TST/USDT:USDT"


def market(**changes: Any) -> MarketRules:
    """A linear USDT perpetual: step 0.001, no minimums, no fee, max leverage 100, no tiers."""
    base = MarketRules(
        symbol=SYMBOL, kind="swap", linear=True, inverse=False, contract_size=1.0,
        amount_step=0.001, price_tick=0.01, min_amount=0.0, max_amount=float("inf"),
        min_cost=0.0, max_leverage=100.0, taker=0.0, maker=0.0, base="TST", quote="USDT",
        settle="USDT", exchange="test",
    )
    return replace(base, **changes)


def policy(**sections: Mapping[str, Any]) -> Policy:
    """A validated policy from sections, e.g. ``policy(sizing={"model": "risk"})``."""
    return policy_from_dict({"name": "test", **sections})


def size(intent: Intent, account: Account, mkt: MarketRules | None = None,
         pol: Policy | None = None) -> Decision:
    return decide(intent, account, mkt or market(), pol or policy())


def trace_step(decision: Decision, name: str, index: int = 0) -> dict[str, Any]:
    """The values of the ``index``-th trace step called ``name`` (bound and note included)."""
    found = [s for s in decision.trace if s.step == name]
    assert len(found) > index, f"no trace step {name!r} #{index} in {[s.step for s in decision.trace]}"
    return _values(found[index])


def _values(step: TraceStep) -> dict[str, Any]:
    out = dict(step.values)
    out["bound"] = step.bound
    out["note"] = step.note
    return out


def bounds(decision: Decision) -> list[str]:
    """Every ``bound`` the trace recorded, in order."""
    return [s.bound for s in decision.trace if s.bound is not None]
