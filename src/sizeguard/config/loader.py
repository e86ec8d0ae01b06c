"""Leaf functions of policy loading: preset data, policy files, ``--set`` parsing and the deep
merge. The layering itself (defaults < preset < file < environment < ``--set``) lives once, in
:mod:`sizeguard.config.settings`; this module imports nothing from it."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from sizeguard.errors import InvalidInput, PolicyError

PRESETS = ("viper-fixed-margin", "quantum-4x30", "ai-atr-risk", "viper-50x", "kraken-micro")
DEFAULT_PRESET = "ai-atr-risk"


def preset_names() -> tuple[str, ...]:
    return PRESETS


def preset_data(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(PRESETS)}"
        raise InvalidInput("preset", name, f"unknown preset; {hint}")
    text = resources.files("sizeguard.config").joinpath(f"presets/{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def read_policy_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput("config", str(p), "no such file") from None
    except IsADirectoryError:
        raise InvalidInput("config", str(p), "is a directory, not a policy file") from None
    except PermissionError:
        raise InvalidInput("config", str(p), "cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise InvalidInput("config", str(p), "is not a UTF-8 text (TOML) file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError("config", str(p), f"not valid TOML: {exc}") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: tables merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in (
                "regime", "volatility", "min_cost"):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_set(item: str) -> tuple[list[str], Any]:
    """``limits.max_notional=500`` -> (["limits", "max_notional"], 500). Values are TOML."""
    if "=" not in item:
        raise PolicyError("--set", item, "must look like section.key=value")
    key, raw = item.split("=", 1)
    path = [k.strip() for k in key.strip().split(".") if k.strip()]
    if len(path) < 2:
        raise PolicyError("--set", item, "the key needs a section: e.g. limits.max_notional=500")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as auto or lower_leverage
    return path, value


def nest(path: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out
