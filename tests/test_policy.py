"""Policies are data: a TOML file validated with a PolicyError naming the dotted key and the value
for every bad key or value; the five presets of DESIGN.md ship and load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sizeguard.config import PRESETS, load_policy
from sizeguard.core.policy import Policy, policy_from_dict, policy_to_dict
from sizeguard.errors import InvalidInput, PolicyError

BAD_FILES = [
    # id, TOML text, dotted key, value as printed, words of the reason
    ("unknown-key", "[limits]\nmax_notionl = 5\n", "limits.max_notionl", "5",
     "did you mean 'max_notional'"),
    ("unknown-section", "[limit]\nmax_notional = 5\n", "limit", "max_notional",
     "did you mean 'limits'"),
    ("wrong-type-number", '[limits]\nmax_notional = "lots"\n', "limits.max_notional", "'lots'",
     "must be a number"),
    ("wrong-type-bool", '[sizing]\nfees_in_risk = "yes"\n', "sizing.fees_in_risk", "'yes'",
     "true or false"),
    ("wrong-type-int", "[limits]\nmax_positions = 2.5\n", "limits.max_positions", "2.5",
     "whole number"),
    ("wrong-type-string", "[sizing]\nmodel = 3\n", "sizing.model", "3", "string"),
    ("fraction-above-1", "[sizing]\nrisk = 1.5\n", "sizing.risk", "1.5", "fraction"),
    ("fraction-equal-1", "[sizing]\nrisk = 1\n", "sizing.risk", "1", "fraction"),
    ("fraction-daily-loss", "[limits]\ndaily_loss = 2\n", "limits.daily_loss", "2", "fraction"),
    ("balance-fraction-above-1", "[sizing]\nmodel = \"balance_fraction\"\nfraction = 1.5\n",
     "sizing.fraction", "1.5", "must be <= 1"),
    ("bad-choice", '[liquidation]\nguard = "lower"\n', "liquidation.guard", "'lower'",
     "must be one of"),
    ("bad-choice-suggested", '[sizing]\nmodel = "fixed_margn"\n', "sizing.model",
     "'fixed_margn'", "did you mean 'fixed_margin'"),
    ("min-above-max", "[adjust]\nmin = 0.02\nmax = 0.01\n", "adjust.min", "0.02",
     "above adjust.max=0.01"),
    ("min-notional-above-max", "[limits]\nmin_notional = 100.0\nmax_notional = 10.0\n",
     "limits.min_notional", "100.0", "above limits.max_notional=10.0"),
    ("negative", "[limits]\nmax_margin = -1\n", "limits.max_margin", "-1", ">= 0"),
    ("nan", "[limits]\nmax_margin = nan\n", "limits.max_margin", "nan", "NaN"),
    ("leverage-below-1", "[leverage]\nvalue = 0.5\n", "leverage.value", "0.5", ">= 1"),
    ("leverage-infinite", "[leverage]\nvalue = inf\nmax = inf\n", "leverage.value", "inf",
     "finite"),
    ("leverage-above-max", "[leverage]\nvalue = 60\nmax = 50\n", "leverage.value", "60",
     "above leverage.max=50"),
    ("bad-tier-pair", "[adjust]\nconfidence = [[0.5]]\n", "adjust.confidence[0]", "[0.5]",
     "[threshold, multiplier] pair"),
    ("bad-tier-number", '[adjust]\nlosing_streak = [[3, "half"]]\n', "adjust.losing_streak[0]",
     "'half'", "number"),
    ("bad-table", "[adjust]\nregime = 3\n", "adjust.regime", "3", "table"),
    ("model-needs-size", '[sizing]\nmodel = "fixed_margin"\n', "sizing.margin", "0",
     "must be > 0 for sizing.model='fixed_margin'"),
]


@pytest.mark.parametrize(("text", "key", "value", "why"),
                         [pytest.param(*c[1:], id=c[0]) for c in BAD_FILES])
def test_bad_policy_file(tmp_path: Path, text: str, key: str, value: str, why: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(config=path)
    err = info.value
    assert isinstance(err, InvalidInput) and isinstance(err, ValueError)
    assert err.field == key
    message = str(err)
    assert message.startswith(f"{key}="), message
    assert value in message and why in message, message
    assert "\n" not in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[limits\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(config=path)
    assert info.value.field == "config" and "broken.toml" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(InvalidInput) as info:
        load_policy(config="/nonexistent/policy.toml")
    assert info.value.field == "config"


def test_set_override_is_validated_like_the_file() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy("quantum-4x30", sets=("limits.max_gross_exposure=-5",))
    assert info.value.field == "limits.max_gross_exposure"
    with pytest.raises(PolicyError) as info:
        load_policy("quantum-4x30", sets=("limits.max_postions=3",))
    assert "did you mean 'max_positions'" in str(info.value)


def test_a_good_file_layers_over_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[limits]\nmax_notional = 500.0\n', encoding="utf-8")
    policy = load_policy("ai-atr-risk", config=path)
    assert policy.name == "mine"
    assert policy.limits.max_notional == 500.0
    assert policy.sizing.risk == 0.01  # the rest of the preset stays


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_round_trips(name: str) -> None:
    policy = load_policy(name)
    assert isinstance(policy, Policy)
    assert policy.name == name and policy.description
    again = policy_from_dict(policy_to_dict(policy))
    assert again == policy


def test_five_presets_ship() -> None:
    assert set(PRESETS) == {"viper-fixed-margin", "quantum-4x30", "ai-atr-risk", "viper-50x",
                            "kraken-micro"}


def test_preset_values_match_design() -> None:
    vfm = load_policy("viper-fixed-margin")
    assert (vfm.sizing.model, vfm.sizing.margin, vfm.leverage.value) == ("fixed_margin", 2.0, 50)
    q = load_policy("quantum-4x30")
    assert (q.sizing.fraction, q.limits.max_margin, q.leverage.value) == (0.25, 5_000.0, 30)
    assert (q.limits.max_positions, q.limits.max_gross_exposure,
            q.limits.max_symbol_notional) == (4, 150_000.0, 40_000.0)
    ai = load_policy("ai-atr-risk")
    assert (ai.sizing.risk, ai.stop.atr_mult, ai.adjust.min, ai.adjust.max) == (
        0.01, 1.5, 0.005, 0.015)
    assert (ai.limits.min_notional, ai.limits.max_notional,
            ai.limits.max_equity_leverage) == (10.0, 1_250.0, 30.0)
    v50 = load_policy("viper-50x")
    assert (v50.sizing.risk, v50.leverage.max, v50.limits.max_margin_pct) == (0.02, 50, 0.1)
    km = load_policy("kraken-micro")
    assert (km.sizing.fraction, km.limits.max_notional, km.limits.default_min_cost) == (
        0.95, 10.0, 2.5)
    assert math.isinf(km.limits.max_margin)
