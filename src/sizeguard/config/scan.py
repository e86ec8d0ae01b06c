"""Scan a bot's source tree for sizing settings and flag the ones whose values disagree.

Known settings are the seed aliases (:mod:`sizeguard.config.aliases`) and ``SIZEGUARD_*``
names. Where they are looked for, line by line (so every value has a file:line):

* ``.env`` files (``.env``, ``.env.*``, ``*.env``): ``KEY=value`` and ``export KEY=value``;
* ``docker-compose*.yml`` / ``compose*.yaml``: ``- KEY=value`` and ``KEY: value``, with
  ``${VAR:-default}`` / ``${VAR-default}`` read as VAR's default;
* other ``*.yml``/``*.yaml``, ``*.toml``, ``*.json``: ``key: value`` / ``key = value`` /
  ``"key": value`` where the key is a known name (any case: ``max_leverage`` is MAX_LEVERAGE);
* ``*.py``: ``os.getenv("NAME", "default")``, ``os.environ.get("NAME", default)`` and
  ``...getenv("NAME"), default=value)`` (a parse helper's default);
* ``*.md`` and ``*.txt``: ``KEY=value`` lines (in code blocks or not) and inside sentences or
  inline code (`` `MAX_LEVERAGE=20` ``), plus the compose and
  Python forms quoted in docs.

Values are compared as numbers where they are numbers (``50`` equals ``50.0``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sizeguard.config.aliases import BY_NAME
from sizeguard.errors import InvalidInput

SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "env", "__pycache__", ".tox",
             ".nox", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
             ".import_linter_cache", "site-packages", "dist", "build", ".idea", ".vscode"}
MAX_BYTES = 2_000_000
PREFIX = "SIZEGUARD_"
CHOOSERS = {"SIZEGUARD_PRESET": "preset", "SIZEGUARD_CONFIG": "config"}

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ENV_LINE = re.compile(rf"^\s*(?:[-*]\s+)?(?:export\s+)?(?P<key>{_NAME})\s*=\s*(?P<value>.*)$")
_YAML_LINE = re.compile(rf"^\s*(?:-\s+)?[\"']?(?P<key>{_NAME})[\"']?\s*:\s*(?P<value>.*)$")
_TOML_LINE = re.compile(rf"^\s*[\"']?(?P<key>{_NAME})[\"']?\s*=\s*(?P<value>.*)$")
_JSON_PAIR = re.compile(rf"[\"'](?P<key>{_NAME})[\"']\s*:\s*(?P<value>\"[^\"]*\"|'[^']*'|[^,}}\]\s]+)")
# ``KEY=value`` inside a sentence or inline code (`MAX_LEVERAGE=20`), not only on a line of its own
_INLINE = re.compile(rf"(?<![A-Za-z0-9_${{])(?P<key>{_NAME})\s?=\s?"
                     r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s`,;)\]}]+)")
_INTERP = re.compile(rf"\$\{{(?P<var>{_NAME})(?::?-(?P<default>[^}}]*))?\}}")
_GETENV = re.compile(
    r"(?:os\.getenv|os\.environ\.get|environ\.get|getenv)\(\s*[\"'](?P<key>[A-Za-z_][A-Za-z0-9_]*)[\"']"
    r"\s*(?:,\s*(?P<default>\"[^\"]*\"|'[^']*'|[^,)\s]+))?\s*\)"
    r"(?:\s*,\s*default\s*=\s*(?P<helper>\"[^\"]*\"|'[^']*'|[^,)\s]+))?")


@dataclass(frozen=True, slots=True)
class Occurrence:
    name: str  # the canonical name: an alias (upper case) or SIZEGUARD_...
    value: str | None  # None: read there without a default
    file: str  # relative to the scanned root
    line: int
    kind: str  # env | compose | compose default | config | code default | docs
    text: str  # the line, stripped

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    policy_keys: tuple[str, ...]
    occurrences: tuple[Occurrence, ...]

    @property
    def values(self) -> dict[str, list[Occurrence]]:
        """Distinct values (normalised) and where each appears."""
        out: dict[str, list[Occurrence]] = {}
        for o in self.occurrences:
            if o.value is not None:
                out.setdefault(normalise(o.value), []).append(o)
        return out

    @property
    def disagrees(self) -> bool:
        return len(self.values) > 1


@dataclass(frozen=True, slots=True)
class ScanReport:
    root: str
    files: int
    settings: tuple[Setting, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def disagreements(self) -> tuple[Setting, ...]:
        return tuple(s for s in self.settings if s.disagrees)


def normalise(value: str) -> str:
    v = value.strip().strip('"').strip("'").strip()
    try:
        number = float(v.rstrip("%")) / (100.0 if v.endswith("%") else 1.0)
    except ValueError:
        return v.lower()
    return repr(number) if number != int(number) else str(int(number))


def canonical(key: str) -> str | None:
    """The known setting a key names, or None."""
    upper = key.upper()
    if upper in BY_NAME:
        return upper
    if upper.startswith(PREFIX) and ("__" in upper or upper in CHOOSERS):
        return upper
    return None


def _clean(raw: str) -> str:
    """A value without a trailing comment, quotes or a YAML/TOML/JSON tail."""
    v = raw.strip()
    if v and v[0] in "\"'":
        quote = v[0]
        end = v.find(quote, 1)
        return v[1:end] if end > 0 else v[1:]
    v = re.split(r"\s+#|\s+//", v, maxsplit=1)[0].strip()
    return v.rstrip(",").strip()


def _policy_keys(name: str) -> tuple[str, ...]:
    alias = BY_NAME.get(name)
    if alias is not None:
        return alias.keys
    if name in CHOOSERS:
        return (CHOOSERS[name],)
    section, _, key = name[len(PREFIX):].lower().partition("__")
    return (f"{section}.{key}",)


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name == ".env" or name.startswith(".env.") or name.endswith(".env") or name in (
            "env.example", "env.sample"):
        return "env"
    if fnmatch.fnmatch(name, "docker-compose*.y*ml") or fnmatch.fnmatch(name, "compose*.y*ml"):
        return "compose"
    suffix = path.suffix.lower()
    return {".yml": "yaml", ".yaml": "yaml", ".toml": "toml", ".json": "json", ".py": "python",
            ".md": "docs", ".txt": "docs", ".rst": "docs"}.get(suffix)


def _interpolations(value: str, file: str, n: int, text: str, kind: str) -> Iterator[Occurrence]:
    for m in _INTERP.finditer(value):
        name = canonical(m.group("var"))
        if name is not None:
            default = m.group("default")
            yield Occurrence(name, _clean(default) if default is not None else None, file, n,
                             kind, text)


def _assignment(key: str, raw: str, file: str, n: int, text: str, kind: str,
                default_kind: str) -> Iterator[Occurrence]:
    """``KEY=value`` or ``KEY: value``: the key itself (literal value) and any ${VAR:-d}."""
    value = _clean(raw)
    name = canonical(key)
    has_interp = bool(_INTERP.search(value))
    if name is not None and not has_interp and value:
        yield Occurrence(name, value, file, n, kind, text)
    yield from _interpolations(value, file, n, text, default_kind)


def scan_text(text: str, kind: str, file: str) -> Iterator[Occurrence]:
    """Every known setting in one file's text (``kind`` from :func:`kind_of`)."""
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and kind not in ("docs",)):
            continue
        if kind in ("python", "docs"):
            for g in _GETENV.finditer(line):
                name = canonical(g.group("key"))
                if name is None:
                    continue
                raw = g.group("default") or g.group("helper")
                value = None if raw is None or raw.strip() == "None" else _clean(raw)
                yield Occurrence(name, value, file, n, "code default", stripped)
            if kind == "python":
                continue
        if kind in ("env", "docs"):
            e = _ENV_LINE.match(line)
            if e:
                yield from _assignment(e.group("key"), e.group("value"), file, n, stripped,
                                       "env" if kind == "env" else "docs",
                                       "compose default" if kind == "env" else "docs")
                continue
            if kind == "docs":
                for m in _INLINE.finditer(line):
                    name = canonical(m.group("key"))
                    value = _clean(m.group("value")).rstrip(".:")
                    if name is not None and value and not _INTERP.search(value):
                        yield Occurrence(name, value, file, n, "docs", stripped)
                for im in _INTERP.finditer(line):
                    name = canonical(im.group("var"))
                    if name is not None and im.group("default") is not None:
                        yield Occurrence(name, _clean(im.group("default")), file, n, "docs",
                                         stripped)
            continue
        if kind == "compose":
            c = _ENV_LINE.match(line) or _YAML_LINE.match(line)
            if c:
                yield from _assignment(c.group("key"), c.group("value"), file, n, stripped,
                                       "compose", "compose default")
            else:
                yield from _interpolations(line, file, n, stripped, "compose default")
            continue
        if kind in ("yaml", "toml"):
            # YAML also carries environment lists (``- KEY=value``) outside compose files
            a = (_ENV_LINE.match(line) or _YAML_LINE.match(line)) if kind == "yaml" else (
                _TOML_LINE.match(line))
            if a:
                yield from _assignment(a.group("key"), a.group("value"), file, n, stripped,
                                       "config", "config")
            continue
        if kind == "json":
            for j in _JSON_PAIR.finditer(line):
                name = canonical(j.group("key"))
                if name is not None:
                    yield Occurrence(name, _clean(j.group("value")), file, n, "config", stripped)


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(part in SKIP_DIRS for part in rel[:-1]):
            continue
        if path.is_file():
            yield path


def scan(root: str | Path) -> ScanReport:
    """Scan a file or a directory tree."""
    base = Path(root)
    if not base.exists():
        raise InvalidInput("path", str(base), "no such file or directory")
    found: dict[str, list[Occurrence]] = {}
    files = 0
    skipped: list[str] = []
    for path in _files(base):
        kind = kind_of(path)
        if kind is None:
            continue
        rel = path.name if base.is_file() else path.relative_to(base).as_posix()
        try:
            if path.stat().st_size > MAX_BYTES:
                skipped.append(f"{rel}: larger than {MAX_BYTES:,} bytes")
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            skipped.append(f"{rel}: {exc.strerror or exc}")
            continue
        files += 1
        for occ in scan_text(text, kind, rel):
            found.setdefault(occ.name, []).append(occ)
    settings = tuple(Setting(name, _policy_keys(name), tuple(occs))
                     for name, occs in sorted(found.items(), key=lambda kv: _order(kv[0])))
    return ScanReport(str(base), files, settings, tuple(skipped))


def _order(name: str) -> tuple[int, str]:
    names = list(BY_NAME)
    return (names.index(name), name) if name in BY_NAME else (len(names), name)


def known_names() -> Iterable[str]:
    return BY_NAME.keys()
