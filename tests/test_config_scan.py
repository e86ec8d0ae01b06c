"""config scan on a fixture tree shaped like the seed systems (tests/fixtures/seed_tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sizeguard.config.scan import Setting, kind_of, normalise, scan, scan_text
from sizeguard.errors import InvalidInput

TREE = Path(__file__).resolve().parent / "fixtures" / "seed_tree"


def by_name(root: Path) -> dict[str, Setting]:
    return {s.name: s for s in scan(root).settings}


def places(s: Setting) -> dict[str, str | None]:
    return {o.where: o.value for o in s.occurrences}


def test_viper_50x_in_code_25x_in_the_user_guide() -> None:
    s = by_name(TREE / "viper")["MAX_LEVERAGE"]
    assert s.disagrees
    assert places(s) == {
        ".env:2": "50",
        "config/trading.yaml:3": "50",
        "docker-compose.live.yml:4": "50",
        "docker-compose.yml:10": "50",
        "docs/TECHNICAL_DOC.md:4": "50",
        "docs/USER_GUIDE.md:6": "25",
        "services/live-trading-engine/main.py:8": "50",
    }
    assert set(s.values) == {"50", "25"}
    assert [o.where for o in s.values["25"]] == ["docs/USER_GUIDE.md:6"]
    assert s.policy_keys == ("leverage.max", "leverage.value")


def test_compose_interpolation_defaults_are_read_as_the_inner_variable() -> None:
    s = by_name(TREE / "viper")["MAX_POSITION_SIZE_PERCENT"]
    # compose says MAX_POSITION_SIZE=${MAX_POSITION_SIZE_PERCENT:-0.1}
    kinds = {o.where: o.kind for o in s.occurrences}
    assert kinds["docker-compose.yml:5"] == "compose default"
    assert not s.disagrees  # .env, compose and code agree on 0.1


def test_quantum_env_versus_compose_and_code() -> None:
    found = by_name(TREE / "quantum")
    positions = found["QT_MAX_POSITIONS"]
    assert places(positions) == {".env:1": "4", "docker-compose.yml:6": "6",
                                 "backend/services/event_driven_executor.py:6": "4"}
    assert positions.disagrees
    margin = found["QT_MAX_NOTIONAL_PER_TRADE"]
    assert places(margin) == {".env:2": "5000.0",
                              "backend/services/event_driven_executor.py:5": "4000.0"}
    assert margin.policy_keys == ("limits.max_margin",)
    gross = found["QT_MAX_GROSS_EXPOSURE"]
    assert not gross.disagrees  # 150000.0 in .env equals "150000" in compose
    assert {d.name for d in scan(TREE / "quantum").disagreements} == {
        "QT_MAX_POSITIONS", "QT_MAX_NOTIONAL_PER_TRADE"}


def test_ai_risk_rm_names_in_compose_docs_and_a_parse_helper_default() -> None:
    found = by_name(TREE / "ai-risk")
    assert places(found["RM_MAX_POSITION_USD"]) == {
        "backend/config/risk_management.py:10": "999999.0",
        "deploy/systemctl.yml:3": "10000",  # an environment list in a plain YAML file
        "docker-compose.yml:5": "10000",
        "docs/POSITION_SIZING.md:10": "1250.0",
    }
    assert found["RM_MAX_POSITION_USD"].disagrees
    assert found["RM_RISK_PER_TRADE_PCT"].disagrees  # 0.02 in compose, 0.01 in docs
    assert not found["RM_MAX_LEVERAGE"].disagrees  # 30.0 both
    assert not found["RM_HIGH_CONF_MULT"].disagrees  # 1.5 in code and docs
    assert set(found) == {"RM_RISK_PER_TRADE_PCT", "RM_MIN_RISK_PCT", "RM_MAX_RISK_PCT",
                          "RM_MIN_POSITION_USD", "RM_MAX_POSITION_USD", "RM_MAX_LEVERAGE",
                          "RM_HIGH_CONF_MULT", "RM_LOW_CONF_MULT"}


def test_sizeguard_names_are_known_settings() -> None:
    found = by_name(TREE / "kraken-micro")
    assert places(found["SIZEGUARD_LIMITS__MAX_NOTIONAL"]) == {"sizeguard.env:2": "10"}
    assert found["SIZEGUARD_LIMITS__MAX_NOTIONAL"].policy_keys == ("limits.max_notional",)
    assert found["SIZEGUARD_PRESET"].policy_keys == ("preset",)
    assert "position_size_percentage" not in {n.lower() for n in found}  # not a known name


def test_whole_tree_lists_every_system() -> None:
    report = scan(TREE)
    names = {s.name for s in report.settings}
    assert {"MAX_LEVERAGE", "QT_MAX_POSITIONS", "RM_MAX_POSITION_USD",
            "SIZEGUARD_LIMITS__MAX_NOTIONAL"} <= names
    assert report.files >= 15
    assert {s.name for s in report.disagreements} >= {"MAX_LEVERAGE", "RISK_PER_TRADE",
                                                       "QT_MAX_POSITIONS", "RM_MAX_POSITION_USD"}


def test_line_forms() -> None:
    env = scan_text('export MAX_LEVERAGE="20"  # comment\nRISK_PER_TRADE=0.02 # x\n', "env", ".env")
    assert [(o.name, o.value, o.line) for o in env] == [("MAX_LEVERAGE", "20", 1),
                                                         ("RISK_PER_TRADE", "0.02", 2)]
    py = list(scan_text("x = os.environ.get('QT_MAX_POSITIONS')\n", "python", "a.py"))
    assert [(o.name, o.value) for o in py] == [("QT_MAX_POSITIONS", None)]
    toml = list(scan_text("[risk]\nmax_leverage = 20\n", "toml", "a.toml"))
    assert [(o.name, o.value) for o in toml] == [("MAX_LEVERAGE", "20")]
    js = list(scan_text('{"risk_per_trade": 0.03, "other": 1}', "json", "a.json"))
    assert [(o.name, o.value) for o in js] == [("RISK_PER_TRADE", "0.03")]
    plain_yaml = list(scan_text("env:\n  - QT_MAX_POSITIONS=3\nqt_max_positions: 4\n", "yaml", "a.yml"))
    assert [(o.name, o.value, o.line) for o in plain_yaml] == [("QT_MAX_POSITIONS", "3", 2),
                                                                ("QT_MAX_POSITIONS", "4", 3)]
    yml = list(scan_text("  QT_MAX_POSITIONS: ${QT_MAX_POSITIONS-5}\n", "compose", "compose.yml"))
    assert [(o.name, o.value, o.kind) for o in yml] == [("QT_MAX_POSITIONS", "5", "compose default")]


def test_kinds_and_normalise() -> None:
    assert kind_of(Path(".env.production")) == "env"
    assert kind_of(Path("docker-compose.live.yml")) == "compose"
    assert kind_of(Path("config.yaml")) == "yaml"
    assert kind_of(Path("image.png")) is None
    assert normalise("50") == normalise("50.0") == normalise('"50"')
    assert normalise("10%") == normalise("0.1")


def test_missing_path_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        scan(TREE / "nope")


def test_a_single_file_can_be_scanned() -> None:
    report = scan(TREE / "quantum" / ".env")
    assert report.files == 1
    assert next(o.where for s in report.settings for o in s.occurrences) == ".env:1"
