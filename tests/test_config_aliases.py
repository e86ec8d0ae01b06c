"""Every seed environment name, mapped once, with its unit; the table documented as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sizeguard.config import resolve
from sizeguard.config.aliases import ALIAS_NAMES, ALIASES, alias_table_markdown
from sizeguard.errors import InvalidInput, PolicyError

ROOT = Path(__file__).resolve().parents[1]

# name -> (value in the environment, preset to start from, {dotted key: expected value})
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "RM_RISK_PER_TRADE_PCT": ("0.02", "ai-atr-risk", {"sizing.risk": 0.02}),
    "RM_MIN_RISK_PCT": ("0.004", "ai-atr-risk", {"adjust.min": 0.004}),
    "RM_MAX_RISK_PCT": ("0.05", "ai-atr-risk", {"adjust.max": 0.05}),
    "RM_MIN_POSITION_USD": ("25.0", "ai-atr-risk", {"limits.min_notional": 25.0}),
    "RM_MAX_POSITION_USD": ("10000", "ai-atr-risk", {"limits.max_notional": 10_000.0}),
    "RM_MAX_LEVERAGE": ("20", "ai-atr-risk", {"leverage.max": 20.0, "leverage.value": 20.0,
                                              "limits.max_equity_leverage": 20.0}),
    "RM_HIGH_CONF_MULT": ("2.0", "ai-atr-risk",
                          {"adjust.confidence": [[0.85, 2.0], [0.6, 1.0], [0.0, 0.5]]}),
    "RM_LOW_CONF_MULT": ("0.25", "ai-atr-risk",
                         {"adjust.confidence": [[0.85, 1.5], [0.6, 1.0], [0.0, 0.25]]}),
    "MAX_LEVERAGE": ("25", "viper-50x", {"leverage.max": 25.0, "leverage.value": 25.0}),
    "RISK_PER_TRADE": ("0.01", "viper-50x", {"sizing.risk": 0.01}),
    "MAX_POSITION_SIZE_PERCENT": ("0.05", "viper-50x", {"limits.max_margin_pct": 0.05}),
    "QT_MAX_POSITIONS": ("6", "quantum-4x30", {"limits.max_positions": 6}),
    "QT_MAX_NOTIONAL_PER_TRADE": ("4000.0", "quantum-4x30", {"limits.max_margin": 4000.0}),
    "QT_MAX_GROSS_EXPOSURE": ("120000", "quantum-4x30", {"limits.max_gross_exposure": 120_000.0}),
    "QT_MAX_POSITION_PER_SYMBOL": ("30000", "quantum-4x30", {"limits.max_symbol_notional": 30_000.0}),
}


def test_the_issue_list_is_covered_exactly_once() -> None:
    assert sorted(ALIAS_NAMES) == sorted(CASES)
    assert len(ALIAS_NAMES) == len(set(ALIAS_NAMES))


@pytest.mark.parametrize("name", list(CASES))
def test_alias(name: str) -> None:
    raw, preset, expected = CASES[name]
    before = resolve(preset)
    r = resolve(preset, env={name: raw})
    values = r.values()
    for key, value in expected.items():
        assert values[key] == value, key
        assert r.source(key) == f"env:{name}"
        assert before.values()[key] != value, f"{key}: the test must change something"
    # nothing else moved
    others = {k: v for k, v in values.items() if k not in expected}
    assert others == {k: v for k, v in before.values().items() if k not in expected}


def test_qt_max_notional_per_trade_is_margin_not_notional() -> None:
    r = resolve("quantum-4x30", env={"QT_MAX_NOTIONAL_PER_TRADE": "5000"})
    assert r.policy.limits.max_margin == 5000
    assert r.policy.limits.max_notional == float("inf")
    alias = next(a for a in ALIASES if a.name == "QT_MAX_NOTIONAL_PER_TRADE")
    assert "MARGIN" in alias.meaning and alias.keys == ("limits.max_margin",)


def test_leverage_cap_never_raises_the_leverage_in_use() -> None:
    r = resolve("ai-atr-risk", env={"RM_MAX_LEVERAGE": "50"})  # preset trades at 30x
    assert r.policy.leverage.max == 50
    assert r.policy.leverage.value == 30
    assert r.source("leverage.value") == "preset:ai-atr-risk"


def test_confidence_multipliers_together_and_on_a_policy_without_tiers() -> None:
    r = resolve("quantum-4x30", env={"RM_HIGH_CONF_MULT": "1.5", "RM_LOW_CONF_MULT": "0.5"})
    assert r.policy.adjust.confidence == ((0.85, 1.5), (0.6, 1.0), (0.0, 0.5))
    r = resolve("quantum-4x30", env={"RM_LOW_CONF_MULT": "0.5"})
    assert r.policy.adjust.confidence == ((0.85, 1.0), (0.6, 1.0), (0.0, 0.5))


def test_percent_sign_is_read_as_percent() -> None:
    assert resolve(env={"RM_RISK_PER_TRADE_PCT": "1.5%"}).policy.sizing.risk == pytest.approx(0.015)


def test_a_bare_percent_is_refused_not_divided() -> None:
    with pytest.raises(PolicyError, match=r"sizing.risk=2.0.*fraction.*env:RISK_PER_TRADE"):
        resolve(env={"RISK_PER_TRADE": "2"})


def test_non_numbers_name_the_variable() -> None:
    with pytest.raises(InvalidInput, match=r"QT_MAX_POSITIONS='four'"):
        resolve(env={"QT_MAX_POSITIONS": "four"})
    with pytest.raises(InvalidInput, match=r"QT_MAX_POSITIONS='4.5'.*whole"):
        resolve(env={"QT_MAX_POSITIONS": "4.5"})


def test_sizeguard_names_beat_aliases() -> None:
    r = resolve("quantum-4x30", env={"QT_MAX_POSITIONS": "6", "SIZEGUARD_LIMITS__MAX_POSITIONS": "2"})
    assert r.policy.limits.max_positions == 2
    assert r.source("limits.max_positions") == "env:SIZEGUARD_LIMITS__MAX_POSITIONS"
    assert any("overrides QT_MAX_POSITIONS" in n for n in r.notes)


def test_two_aliases_for_one_key_are_noted() -> None:
    r = resolve(env={"RM_RISK_PER_TRADE_PCT": "0.01", "RISK_PER_TRADE": "0.02"})
    assert r.policy.sizing.risk == 0.02
    assert any("RISK_PER_TRADE and RM_RISK_PER_TRADE_PCT" in n for n in r.notes)


def test_aliases_can_be_switched_off() -> None:
    r = resolve("quantum-4x30", env={"QT_MAX_POSITIONS": "6", "SIZEGUARD_SEED_ALIASES": "off"})
    assert r.policy.limits.max_positions == 4


def test_aliases_are_case_sensitive() -> None:
    assert resolve("quantum-4x30", env={"qt_max_positions": "6"}).policy.limits.max_positions == 4


def test_docs_show_the_table_as_the_code_has_it() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert alias_table_markdown() in doc
