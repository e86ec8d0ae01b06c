"""Layered settings with provenance: defaults < preset < TOML file < environment < ``--set``.

Every value of the effective policy remembers where it came from: ``default``,
``preset:NAME``, ``file:PATH``, ``env:NAME`` or ``--set``.

The environment layer is read with pydantic-settings:

* ``SIZEGUARD_<SECTION>__<KEY>=value`` sets one policy key (``SIZEGUARD_LIMITS__MAX_NOTIONAL=500``);
  names are case-insensitive, values are TOML values like ``--set`` (``500``, ``inf``, ``auto``,
  ``[[0.85, 1.5]]``, ``{ trending = 1.2 }``; tables are given whole);
* ``SIZEGUARD_PRESET`` and ``SIZEGUARD_CONFIG`` choose the preset and the policy file when the
  command line names neither;
* the seed bots' own names (:mod:`sizeguard.config.aliases`) are read below the ``SIZEGUARD_``
  names; ``SIZEGUARD_SEED_ALIASES=off`` ignores them.

Other ``SIZEGUARD_`` names without a double underscore belong to other parts of sizeguard and
are left alone; a double-underscore name with an unknown section is refused with a suggestion.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from platformdirs import user_config_dir
from pydantic import create_model
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from sizeguard.config.aliases import ALIASES
from sizeguard.config.loader import DEFAULT_PRESET, merge, nest, parse_set, preset_data, read_policy_file
from sizeguard.core.policy import SECTIONS, Policy, policy_from_dict, policy_to_dict
from sizeguard.errors import InvalidInput, PolicyError

PREFIX = "SIZEGUARD_"
DELIM = "__"
TABLE_KEYS = ("regime", "volatility", "min_cost")  # tables that replace as a whole
OFF = ("0", "off", "false", "no")

DEFAULT = "default"
SET = "--set"


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.case_sensitive:
            return dict(self._environ)
        return {k.lower(): v for k, v in self._environ.items()}


class _SizeguardEnvBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_nested_delimiter=DELIM,
                                      case_sensitive=False, extra="ignore")


_section_fields: dict[str, Any] = {name: (dict[str, Any] | None, None) for name in SECTIONS}
SizeguardEnv: type[BaseSettings] = create_model(  # one optional table per policy section
    "SizeguardEnv", __base__=_SizeguardEnvBase, preset=(str | None, None),
    config=(str | None, None), seed_aliases=(str | None, None), **_section_fields)


class _AliasEnvBase(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")


_alias_fields: dict[str, Any] = {
    a.name.lower(): (str | None, FieldInfo(default=None, validation_alias=a.name)) for a in ALIASES}
SeedAliasEnv: type[BaseSettings] = create_model(
    "SeedAliasEnv", __base__=_AliasEnvBase, **_alias_fields)


def _read(cls: type[BaseSettings], environ: Mapping[str, str]) -> dict[str, Any]:
    return {k: v for k, v in _MappingEnvSource(cls, environ)().items() if v is not None}


def parse_value(raw: str) -> Any:
    """An environment value as TOML (like ``--set``), else JSON, else the bare string."""
    text = raw.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True, slots=True)
class EnvLayer:
    """What the environment says: preset/config choice, policy keys and their variable names."""

    preset: str | None = None
    config: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # dotted key -> value
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> variable name
    notes: tuple[str, ...] = ()
    aliases_on: bool = True

    def get(self, key: str) -> Any:
        return self.values.get(key)


def _var_name(environ: Mapping[str, str], wanted: str) -> str:
    for name in environ:
        if name.upper() == wanted.upper():
            return name
    return wanted


def _check_names(environ: Mapping[str, str]) -> None:
    """Refuse ``SIZEGUARD_X__Y`` with an unknown section, or nested deeper than a key."""
    known = list(SECTIONS)
    for name in environ:
        upper = name.upper()
        if not upper.startswith(PREFIX) or DELIM not in upper:
            continue
        parts = upper[len(PREFIX):].lower().split(DELIM)
        if parts[0] not in SECTIONS:
            close = difflib.get_close_matches(parts[0], known, n=1)
            hint = f"did you mean {PREFIX}{close[0].upper()}{DELIM}...?" if close else (
                "known sections: " + ", ".join(known))
            raise PolicyError(name, environ[name], f"unknown policy section '{parts[0]}'; {hint}")
        if len(parts) != 2 or not parts[1]:
            raise PolicyError(name, environ[name], f"use {PREFIX}<SECTION>{DELIM}<KEY>; give a "
                              "table whole as a TOML inline table, e.g. { \"BTC/USD\" = 5 }")


def read_env(environ: Mapping[str, str], base: Mapping[str, Any] | None = None) -> EnvLayer:
    """The environment layer. ``base`` is the merged data of the lower layers: the confidence
    and leverage aliases read it (a leverage cap only lowers a fixed leverage above it)."""
    _check_names(environ)
    data = _read(SizeguardEnv, environ)
    aliases_on = str(data.get("seed_aliases", "on")).strip().lower() not in OFF
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    lower = base or {}

    def current(key: str) -> Any:
        if key in values:
            return values[key]
        section, _, leaf = key.partition(".")
        table = lower.get(section)
        return table.get(leaf) if isinstance(table, Mapping) else None

    if aliases_on:
        given = _read(SeedAliasEnv, environ)
        for alias in ALIASES:
            raw = given.get(alias.name, given.get(alias.name.lower()))
            if raw is None:
                continue
            for key, value in alias.apply(raw, current).items():
                if key in sources and values[key] != value:
                    notes.append(f"{alias.name} and {sources[key]} both set {key} ({value!r} vs "
                                 f"{values[key]!r}); {alias.name} wins (later in the alias table)")
                values[key] = value
                sources[key] = alias.name
    for section in SECTIONS:
        table = data.get(section)
        if not isinstance(table, Mapping):
            continue
        for leaf, raw in table.items():
            key = f"{section}.{leaf}"
            name = _var_name(environ, f"{PREFIX}{section}{DELIM}{leaf}")
            if key in sources:
                notes.append(f"{name} overrides {sources[key]} for {key}")
            values[key] = parse_value(raw) if isinstance(raw, str) else raw
            sources[key] = name
    return EnvLayer(preset=data.get("preset"), config=data.get("config"), values=values,
                    sources=sources, notes=tuple(notes), aliases_on=aliases_on)


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Policy data as dotted keys; the tables regime/volatility/min_cost stay whole."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for leaf, v in value.items():
                out[f"{key}.{leaf}"] = v
        else:
            out[key] = value
    return out


def unflatten(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        out = merge(out, nest(key.split(".", 1), value))
    return out


@dataclass(frozen=True, slots=True)
class Resolved:
    """The effective policy, the merged data it came from, and the source of every key."""

    policy: Policy
    data: dict[str, Any]
    sources: dict[str, str]  # key -> default | preset:NAME | file:PATH | env:NAME [(FILE)] | --set
    layers: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def source(self, key: str) -> str:
        return self.sources.get(key, DEFAULT)

    def values(self) -> dict[str, Any]:
        """Every key of the effective policy (dotted), as plain data."""
        return flatten(policy_to_dict(self.policy))

    def from_env(self) -> dict[str, str]:
        """Keys set by the environment, with the variable that set them."""
        return {k: s[4:].split(" (", 1)[0] for k, s in self.sources.items() if s.startswith("env:")}


_DOTTED = re.compile(r"\b(" + "|".join(SECTIONS) + r")\.([a-z_]+)")


def _tag(error: PolicyError, sources: Mapping[str, str]) -> PolicyError:
    """The error with the layer of each key it names: ``[from env:NAME]``."""
    field_ = error.field.split("[", 1)[0]
    keys = [field_, *(".".join(m.groups()) for m in _DOTTED.finditer(error.reason))]
    found = [(k, sources[k]) for k in dict.fromkeys(keys) if sources.get(k, DEFAULT) != DEFAULT]
    if not found:
        return error
    if len(found) == 1 and found[0][0] == field_:
        where = f"from {found[0][1]}"
    else:
        where = "; ".join(f"{k} from {src}" for k, src in found)
    return PolicyError(error.field, error.value, f"{error.reason} [{where}]")


def read_env_files(paths: Iterable[str | Path]) -> tuple[dict[str, str], dict[str, str]]:
    """Variables of dotenv files (later files win) and the file each came from."""
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    for item in paths:
        path = Path(item)
        if not path.is_file():
            raise InvalidInput("env-file", str(item), "no such file")
        for name, value in dotenv_values(path).items():
            if value is not None:
                values[name] = value
                origin[name] = str(item)
    return values, origin


def resolve(preset: str | None = None, config: str | Path | None = None,
            sets: Iterable[str] = (), env: Mapping[str, str] | None = None, *,
            env_files: Iterable[str | Path] = (), cross_check: bool = True,
            discover: bool = False) -> Resolved:
    """Build the effective policy layer by layer, recording where each value came from.

    ``preset``/``config`` come from the command line; when both are None the environment's
    ``SIZEGUARD_PRESET``/``SIZEGUARD_CONFIG`` apply, and without any of them the default
    preset (ai-atr-risk). ``env`` None reads no environment at all (the library default).
    ``env_files`` are dotenv files read into the environment layer below ``env`` (a variable
    of the process environment wins over the same one in a file, as with docker compose).
    ``discover`` (the command line) uses :func:`find_config_file` when neither the command line
    nor the environment names a policy file; the file is layered on the preset.
    """
    sources: dict[str, str] = {}
    layers: list[str] = ["default: built-in defaults of sizeguard.core.policy"]
    found = ""
    data: dict[str, Any] = {}
    file_env, origin = read_env_files(env_files)
    environ: Mapping[str, str] = {**file_env, **(env or {})}
    reads_env = env is not None or bool(file_env)
    env_choice = read_env(environ, None) if reads_env else EnvLayer()
    via = ""
    if preset is None and config is None and (env_choice.preset or env_choice.config):
        preset, config = env_choice.preset, env_choice.config
        via = " (chosen by the environment)"
    if config is None and discover and not env_choice.config:
        config = find_config_file()
        found = " (found)" if config is not None else ""

    def add(layer: Mapping[str, Any], label: str) -> None:
        nonlocal data
        for key in flatten(layer):
            sources[key] = label
        data = merge(data, layer)

    if preset is not None or config is None:
        name = preset or DEFAULT_PRESET
        add(preset_data(name), f"preset:{name}")
        layers.append(f"preset:{name}{via}")
    if config is not None:
        add(read_policy_file(config), f"file:{config}")
        layers.append(f"file:{config}{via or found}")
    notes: list[str] = []
    if reads_env:
        layer = read_env(environ, data)
        process = env or {}
        if layer.values:
            for key, value in layer.values.items():
                data = merge(data, nest(key.split(".", 1), value))
                name = layer.sources[key]
                where = f" ({origin[name]})" if name in origin and name not in process else ""
                sources[key] = f"env:{name}{where}"
            layers.append("env: " + ", ".join(sorted(set(layer.sources.values()))))
        notes.extend(layer.notes)
    set_list = list(sets)
    for item in set_list:
        path, value = parse_set(item)
        data = merge(data, nest(path, value))
        sources[".".join(path[:2])] = SET
    if set_list:
        layers.append(f"--set: {', '.join(set_list)}")
    try:
        policy = policy_from_dict(data, cross_check=cross_check)
    except PolicyError as exc:
        raise _tag(exc, sources) from None
    return Resolved(policy, data, sources, tuple(layers), tuple(notes))


CONFIG_NAME = "sizeguard.toml"
NO_DISCOVERY = "SIZEGUARD_CONFIG_DISCOVERY"


def config_search_path() -> tuple[Path, ...]:
    """Where the command line looks for a policy file nobody named: the working directory, then
    the user's config dir (``~/.config/sizeguard`` on Linux, via platformdirs)."""
    return (Path.cwd() / CONFIG_NAME, Path(user_config_dir("sizeguard")) / CONFIG_NAME)


def find_config_file() -> Path | None:
    """The first existing file of :func:`config_search_path`; None when there is none or
    ``SIZEGUARD_CONFIG_DISCOVERY=off``."""
    if os.environ.get(NO_DISCOVERY, "on").strip().lower() in OFF:
        return None
    return next((p for p in config_search_path() if p.is_file()), None)


def load_policy(preset: str | None = None, config: str | Path | None = None,
                sets: Iterable[str] = (), *, env: Mapping[str, str] | None = None) -> Policy:
    """The effective policy (:func:`resolve` without the sources): preset (default ai-atr-risk
    when no file is given), then the file, then the environment ``env`` when given (None reads
    no environment), then each ``--set``."""
    return resolve(preset, config, sets, env).policy


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return '"inf"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")  # pragma: no cover


def policy_to_toml(resolved: Resolved) -> str:
    """The effective policy as a policy file, each value commented with its source; loading it
    with ``--config`` gives the same policy."""
    data = policy_to_dict(resolved.policy)
    lines = [f"# effective policy; layers: {' < '.join(resolved.layers)}",
             f"name = {_toml_value(data['name'])}",
             f"description = {_toml_value(data['description'])}"]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for key, value in data[section].items():
            lines.append(f"{key} = {_toml_value(value)}  # {resolved.source(f'{section}.{key}')}")
    return "\n".join(lines) + "\n"


def env_from_os() -> Mapping[str, str]:
    """The process environment (the CLI's environment layer)."""
    return os.environ


__all__ = ["EnvLayer", "Resolved", "env_from_os", "find_config_file", "load_policy", "policy_to_toml",
           "read_env", "resolve"]
