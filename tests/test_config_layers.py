"""Layered settings: defaults < preset < file < environment < --set, with the source of each value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sizeguard.cli.main import app
from sizeguard.config import load_policy, resolve
from sizeguard.config.settings import parse_value, read_env
from sizeguard.core.policy import Policy
from sizeguard.errors import InvalidInput, PolicyError

runner = CliRunner()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[limits]\nmax_notional = 900.0\nmax_positions = 2\n'
                    "[leverage]\nvalue = 10\n", encoding="utf-8")
    return path


def test_defaults_only_when_a_file_sets_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    r = resolve(config=empty)
    assert r.policy == Policy()
    assert set(r.values()) == set(r.sources) | {k for k in r.values() if r.source(k) == "default"}
    assert all(r.source(k) == "default" for k in r.values())


def test_preset_over_defaults() -> None:
    r = resolve("quantum-4x30")
    assert r.policy.limits.max_symbol_notional == 40_000
    assert r.source("limits.max_symbol_notional") == "preset:quantum-4x30"
    assert r.source("limits.max_notional") == "default"
    assert r.source("liquidation.guard") == "default"


def test_no_preset_and_no_file_means_the_default_preset() -> None:
    r = resolve()
    assert r.policy.name == "ai-atr-risk"
    assert r.source("sizing.risk") == "preset:ai-atr-risk"


def test_file_over_preset(policy_file: Path) -> None:
    r = resolve("quantum-4x30", policy_file)
    assert r.policy.limits.max_notional == 900
    assert r.policy.leverage.value == 10
    assert r.source("limits.max_notional") == f"file:{policy_file}"
    assert r.source("limits.max_symbol_notional") == "preset:quantum-4x30"  # untouched by the file


def test_a_file_alone_starts_from_defaults(policy_file: Path) -> None:
    r = resolve(config=policy_file)
    assert r.policy.name == "mine"
    assert r.source("sizing.model") == "default"


def test_env_over_file(policy_file: Path) -> None:
    r = resolve("quantum-4x30", policy_file, env={"SIZEGUARD_LIMITS__MAX_NOTIONAL": "500"})
    assert r.policy.limits.max_notional == 500
    assert r.source("limits.max_notional") == "env:SIZEGUARD_LIMITS__MAX_NOTIONAL"
    assert r.source("leverage.value") == f"file:{policy_file}"


def test_set_over_env(policy_file: Path) -> None:
    r = resolve("quantum-4x30", policy_file, ["limits.max_notional=250"],
                env={"SIZEGUARD_LIMITS__MAX_NOTIONAL": "500"})
    assert r.policy.limits.max_notional == 250
    assert r.source("limits.max_notional") == "--set"


def test_every_layer_at_once_each_wins_its_key(policy_file: Path) -> None:
    env = {"SIZEGUARD_LIMITS__MAX_POSITIONS": "3", "SIZEGUARD_LEVERAGE__VALUE": "20"}
    r = resolve("quantum-4x30", policy_file, ["leverage.value=5"], env)
    got = {k: (r.values()[k], r.source(k)) for k in (
        "execution.taker", "limits.max_gross_exposure", "limits.max_notional",
        "limits.max_positions", "leverage.value")}
    assert got == {
        "execution.taker": (0.0005, "default"),
        "limits.max_gross_exposure": (150000.0, "preset:quantum-4x30"),
        "limits.max_notional": (900.0, f"file:{policy_file}"),
        "limits.max_positions": (3, "env:SIZEGUARD_LIMITS__MAX_POSITIONS"),
        "leverage.value": (5.0, "--set"),
    }
    assert r.layers[0].startswith("default")
    assert [layer.split(":")[0] for layer in r.layers] == ["default", "preset", "file", "env", "--set"]


def test_env_names_are_case_insensitive_and_values_are_toml() -> None:
    r = resolve(env={"sizeguard_adjust__confidence": "[[0.9, 2.0], [0.0, 1.0]]",
                     "SIZEGUARD_ADJUST__REGIME": "{ trending = 1.2, ranging = 0.5 }",
                     "SIZEGUARD_LIMITS__MAX_GROSS_EXPOSURE": "inf",
                     "SIZEGUARD_LEVERAGE__MODE": "auto",
                     "SIZEGUARD_LIMITS__ALLOW_ADD": "true"})
    p = r.policy
    assert p.adjust.confidence == ((0.9, 2.0), (0.0, 1.0))
    assert dict(p.adjust.regime) == {"trending": 1.2, "ranging": 0.5}
    assert p.leverage.mode == "auto"
    assert p.limits.allow_add is True
    assert r.source("adjust.confidence") == "env:sizeguard_adjust__confidence"


def test_parse_value_json_fallback() -> None:
    assert parse_value('{"trending": 1.5}') == {"trending": 1.5}
    assert parse_value("lower_leverage") == "lower_leverage"
    assert parse_value("12") == 12


def test_unrelated_sizeguard_names_are_left_alone() -> None:
    r = resolve(env={"SIZEGUARD_SHARED_DATA": "/x", "SIZEGUARD_DB_URL": "sqlite://", "PATH": "/bin"})
    assert r.policy == load_policy()


def test_unknown_section_is_refused_with_a_suggestion() -> None:
    with pytest.raises(PolicyError, match=r"SIZEGUARD_LIMIT__MAX_NOTIONAL.*did you mean SIZEGUARD_LIMITS__"):
        resolve(env={"SIZEGUARD_LIMIT__MAX_NOTIONAL": "5"})


def test_unknown_key_names_the_variable() -> None:
    with pytest.raises(PolicyError, match=r"did you mean 'max_notional'.*env:SIZEGUARD_LIMITS__MAX_NOTONAL"):
        resolve(env={"SIZEGUARD_LIMITS__MAX_NOTONAL": "5"})


def test_bad_value_names_the_key_and_the_variable() -> None:
    with pytest.raises(PolicyError, match=r"sizing.risk=2.*fraction.*env:SIZEGUARD_SIZING__RISK"):
        resolve(env={"SIZEGUARD_SIZING__RISK": "2"})


def test_nested_deeper_than_a_key_is_refused() -> None:
    with pytest.raises(PolicyError, match="inline table"):
        resolve(env={"SIZEGUARD_LIMITS__MIN_COST__BTC": "5"})


def test_env_chooses_preset_and_file_when_the_command_line_does_not(policy_file: Path) -> None:
    r = resolve(env={"SIZEGUARD_PRESET": "viper-50x"})
    assert r.policy.name == "viper-50x"
    assert "chosen by the environment" in r.layers[1]
    r = resolve(env={"SIZEGUARD_PRESET": "viper-50x", "SIZEGUARD_CONFIG": str(policy_file)})
    assert r.policy.name == "mine" and r.policy.leverage.max == 50  # file over the env's preset
    r = resolve("quantum-4x30", env={"SIZEGUARD_PRESET": "viper-50x"})
    assert r.policy.name == "quantum-4x30"  # the command line wins


def test_env_preset_typo_gets_a_suggestion() -> None:
    with pytest.raises(InvalidInput, match="did you mean 'kraken-micro'"):
        resolve(env={"SIZEGUARD_PRESET": "kraken-mikro"})


def test_load_policy_reads_no_environment_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIZEGUARD_LIMITS__MAX_NOTIONAL", "7")
    monkeypatch.setenv("MAX_LEVERAGE", "3")
    assert load_policy("quantum-4x30").limits.max_notional == float("inf")
    p = load_policy("quantum-4x30", env={"SIZEGUARD_LIMITS__MAX_NOTIONAL": "7"})
    assert p.limits.max_notional == 7


def test_read_env_reports_variable_names() -> None:
    layer = read_env({"SIZEGUARD_STOP__ATR_MULT": "2", "QT_MAX_POSITIONS": "4"})
    assert layer.values == {"limits.max_positions": 4, "stop.atr_mult": 2}
    assert layer.sources == {"limits.max_positions": "QT_MAX_POSITIONS",
                             "stop.atr_mult": "SIZEGUARD_STOP__ATR_MULT"}


# -- the CLI honours the environment ---------------------------------------------------------

SIZE = ["size", "BTC/USDT:USDT", "--side", "long", "--price", "90000", "--equity", "10000",
        "--preset", "quantum-4x30", "--json"]


def test_size_honours_the_env_layer() -> None:
    plain = json.loads(runner.invoke(app, SIZE).stdout)
    assert plain["notional"] == pytest.approx(39_960.0)  # cut to the 40k per-symbol cap
    res = runner.invoke(app, SIZE, env={"SIZEGUARD_LIMITS__MAX_SYMBOL_NOTIONAL": "9000"})
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["notional"] == pytest.approx(9000.0)
    res = runner.invoke(app, SIZE, env={"QT_MAX_POSITION_PER_SYMBOL": "18000"})
    assert json.loads(res.stdout)["notional"] == pytest.approx(18_000.0)


def test_set_beats_env_on_the_command_line() -> None:
    res = runner.invoke(app, [*SIZE, "--set", "limits.max_symbol_notional=4500"],
                        env={"SIZEGUARD_LIMITS__MAX_SYMBOL_NOTIONAL": "9000"})
    assert json.loads(res.stdout)["notional"] == pytest.approx(4500.0)


def test_size_bad_env_is_exit_2_one_line() -> None:
    res = runner.invoke(app, SIZE, env={"SIZEGUARD_LIMITS__MAX_SYMBOL_NOTONAL": "9000"})
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_symbol_notional" in lines[0]
    assert "SIZEGUARD_LIMITS__MAX_SYMBOL_NOTONAL" in lines[0]


def test_size_human_output_names_env_settings() -> None:
    res = runner.invoke(app, SIZE[:-1], env={"QT_MAX_POSITION_PER_SYMBOL": "18000",
                                             "COLUMNS": "160"})
    assert res.exit_code == 0
    assert "limits.max_symbol_notional (QT_MAX_POSITION_PER_SYMBOL)" in res.stdout


# -- property: the highest layer that names a key wins it, and says so ----------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KEYS = ("limits.max_notional", "limits.max_gross_exposure", "stop.atr_mult")


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(st.sampled_from(["file", "env", "set"]), unique=True),
       key=st.sampled_from(KEYS), values=st.lists(st.integers(20, 10_000), min_size=3, max_size=3))
def test_highest_layer_wins(tmp_path_factory: pytest.TempPathFactory, layers: list[str], key: str,
                            values: list[int]) -> None:
    section, leaf = key.split(".")
    config = None
    env: dict[str, str] = {}
    sets: list[str] = []
    expected: tuple[float, str] = (resolve("ai-atr-risk").values()[key], "")
    for layer, value in zip(["file", "env", "set"], values, strict=True):
        if layer not in layers:
            continue
        if layer == "file":
            config = tmp_path_factory.mktemp("p") / "p.toml"
            config.write_text(f"[{section}]\n{leaf} = {value}\n", encoding="utf-8")
            expected = (value, f"file:{config}")
        elif layer == "env":
            env[f"SIZEGUARD_{section.upper()}__{leaf.upper()}"] = str(value)
            expected = (value, f"env:SIZEGUARD_{section.upper()}__{leaf.upper()}")
        else:
            sets.append(f"{key}={value}")
            expected = (value, "--set")
    r = resolve("ai-atr-risk", config, sets, env)
    want_source = expected[1] or ("preset:ai-atr-risk" if key != "limits.max_gross_exposure"
                                  else "default")
    assert (r.values()[key], r.source(key)) == (expected[0], want_source)


def test_cross_key_errors_name_the_layer_of_each_key() -> None:
    with pytest.raises(PolicyError, match=r"\[limits.min_notional from preset:ai-atr-risk; "
                                          r"limits.max_notional from --set\]"):
        resolve("ai-atr-risk", sets=["limits.max_notional=1"])
    with pytest.raises(PolicyError, match=r"adjust.min from env:RM_MIN_RISK_PCT"):
        resolve("ai-atr-risk", env={"RM_MIN_RISK_PCT": "0.02"})


@pytest.mark.parametrize("preset", ["viper-fixed-margin", "quantum-4x30", "ai-atr-risk",
                                    "viper-50x", "kraken-micro"])
def test_frozen_toml_round_trips(tmp_path: Path, preset: str) -> None:
    r = resolve(preset, env={"QT_MAX_POSITIONS": "3", "SIZEGUARD_LIMITS__MIN_COST": '{ "BTC/USD" = 5 }'})
    path = tmp_path / "frozen.toml"
    res = runner.invoke(app, ["config", "show", "--preset", preset, "--toml"],
                        env={"QT_MAX_POSITIONS": "3", "SIZEGUARD_LIMITS__MIN_COST": '{ "BTC/USD" = 5 }'})
    assert res.exit_code == 0, res.output
    path.write_text(res.stdout, encoding="utf-8")
    assert "max_positions = 3  # env:QT_MAX_POSITIONS" in res.stdout
    assert resolve(config=path).policy == r.policy


QUANTUM_ENV = Path(__file__).resolve().parent / "fixtures" / "seed_tree" / "quantum" / ".env"


def test_env_file_feeds_the_env_layer_and_the_process_environment_wins() -> None:
    r = resolve("quantum-4x30", env_files=[QUANTUM_ENV])
    assert r.policy.limits.max_margin == 5000
    assert r.source("limits.max_margin") == f"env:QT_MAX_NOTIONAL_PER_TRADE ({QUANTUM_ENV})"
    assert r.from_env()["limits.max_margin"] == "QT_MAX_NOTIONAL_PER_TRADE"
    r = resolve("quantum-4x30", env={"QT_MAX_POSITIONS": "2"}, env_files=[QUANTUM_ENV])
    assert r.policy.limits.max_positions == 2
    assert r.source("limits.max_positions") == "env:QT_MAX_POSITIONS"
    with pytest.raises(InvalidInput, match="env-file"):
        resolve(env_files=[QUANTUM_ENV.parent / "missing.env"])


def test_cli_env_file() -> None:
    res = runner.invoke(app, ["config", "show", "--preset", "quantum-4x30", "--json", "--env-file",
                              str(QUANTUM_ENV)])
    out = json.loads(res.stdout)
    assert out["sources"]["limits.max_margin"].startswith("env:QT_MAX_NOTIONAL_PER_TRADE (")
    res = runner.invoke(app, [*SIZE, "--env-file", str(QUANTUM_ENV),
                              "--set", "limits.max_symbol_notional=9000"])
    assert json.loads(res.stdout)["notional"] == pytest.approx(9000.0)
