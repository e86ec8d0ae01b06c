"""Which build of the decision core runs: compiled (mypyc, see setup.py) or pure Python.

The compiled modules are built from the same typed source and give identical results. They are
used only when every one of them is newer than its source: after an edit (or a checkout) the
whole group falls back to the Python source until the next build, so a stale build never runs.
``SIZEGUARD_PURE=1`` forces the Python source (the test suite runs on both builds).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Compiled together by setup.py (keep the two lists the same).
COMPILED = ("decide", "limits", "adjust", "tolerances", "decision")
# Compiled by an earlier build, no longer: a library of theirs left in a work tree must not
# shadow the source (tiers: a compiled frozen Tier cannot be unpickled on another process).
RETIRED = ("tiers",)
CORE = Path(__file__).resolve().parent / "core"
ROOT = CORE.parent.parent  # where mypyc puts the group's shared library (<hash>__mypyc.<suffix>)
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
# An installer writes a wheel's sources and builds within moments of each other, in any order;
# a source edited after the build is newer by more than this.
SLACK_S = 2.0


def _built(name: str) -> Path | None:
    for suffix in SUFFIXES:
        path = CORE / (name + suffix)
        if path.exists():
            return path
    return None


def _shared_built() -> float:
    """When the group's shared library (the compiled code itself) was last built; the
    per-module libraries are small shims that a rebuild may leave untouched."""
    return max((p.stat().st_mtime for p in ROOT.glob("*__mypyc.*") if p.name.endswith(SUFFIXES)),
               default=0.0)


def usable() -> bool:
    """True when a complete, current compiled build is beside the sources."""
    if os.environ.get("SIZEGUARD_PURE") == "1":
        return False
    try:
        shared = _shared_built()
        if not shared:  # the shims alone cannot run (a failed, optional build leaves them)
            return False
        for name in COMPILED:
            built = _built(name)
            if built is None:
                return False
            when = max(built.stat().st_mtime, shared)
            if (CORE / f"{name}.py").stat().st_mtime > when + SLACK_S:
                return False
    except OSError:
        return False
    return True


class _SourceFirst:
    """A meta-path finder that loads the named core modules from their ``.py`` source."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != "sizeguard.core" or name not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, CORE / f"{name}.py")


def compiled() -> bool:
    """Whether the decision pipeline running in this process is the compiled build."""
    module = sys.modules.get("sizeguard.core.decide")
    return module is not None and not str(getattr(module, "__file__", "")).endswith(".py")


def _install() -> None:
    if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(RETIRED if usable() else COMPILED + RETIRED))


_install()
