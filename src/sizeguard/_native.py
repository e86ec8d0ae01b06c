"""Which build of the decision core runs: compiled (mypyc, see setup.py) or pure Python.

The compiled modules (the decision core and the backtest's entry side) are built from the same
typed source and give identical results. They are used only when every one of them is newer
than its source: after an edit (or a checkout) the whole group falls back to the Python source
until the next build, so a stale build never runs.
``SIZEGUARD_PURE=1`` forces the Python source (the test suite runs on both builds).

The float kernels the backtest hands to numba (``core/lots.py``, ``liquidation.py``,
``models.py``, ``position.py``) are compiled with the rest, and numba compiles Python bytecode:
:func:`source` gives those modules as Python functions, loaded from the very same ``.py`` files
(on the pure build it is the imported module itself).
"""

from __future__ import annotations

import _imp
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

# Compiled together by setup.py (keep the two lists the same), by module name within sizeguard.
COMPILED = ("core.decide", "core.limits", "core.adjust", "core.tolerances", "core.decision",
            "core.lots", "core.models", "core.liquidation", "core.position", "backtest.entries")
# The modules whose functions numba compiles (the backtest loop, and the tests that hold the
# two to the same numbers), in import order: :func:`source` loads them from their .py files.
KERNELS = ("lots", "models", "liquidation", "position")
# Compiled by an earlier build, no longer: a library of theirs left in a work tree must not
# shadow the source (tiers: a compiled frozen Tier cannot be unpickled on another process).
RETIRED = ("core.tiers",)
PACKAGE = Path(__file__).resolve().parent  # src/sizeguard
CORE = PACKAGE / "core"
ROOT = PACKAGE.parent  # where mypyc puts the group's shared library (<hash>__mypyc.<suffix>)
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
# An installer writes a wheel's sources and builds within moments of each other, in any order;
# a source edited after the build is newer by more than this.
SLACK_S = 2.0


def _path(name: str, suffix: str) -> Path:
    """Where module ``name`` (``"core.decide"``) of the package has its ``suffix`` file."""
    return PACKAGE.joinpath(*name.split(".")).with_name(name.rpartition(".")[2] + suffix)


def _built(name: str) -> Path | None:
    for suffix in SUFFIXES:
        path = _path(name, suffix)
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
            if _path(name, ".py").stat().st_mtime > when + SLACK_S:
                return False
    except OSError:
        return False
    return True


class _SourceFirst:
    """A meta-path finder that loads the named modules (``"core.decide"``) of the package from
    their ``.py`` source."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != "sizeguard" or name not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, _path(name, ".py"))


def compiled() -> bool:
    """Whether the decision pipeline running in this process is the compiled build."""
    module = sys.modules.get("sizeguard.core.decide")
    return module is not None and not str(getattr(module, "__file__", "")).endswith(".py")


_SOURCES: dict[str, ModuleType] = {}


def source(name: str) -> ModuleType:
    """The core module ``name`` (one of :data:`KERNELS`) as Python source: functions with a
    ``__code__`` that numba compiles. On the pure build this is the imported module; on the
    compiled one, a second copy executed from the same ``.py`` file (its imports of the other
    kernel modules bound to their source copies too: the whole copy is Python source)."""
    if name not in KERNELS:
        raise ValueError(f"{name!r} is not a kernel module ({', '.join(KERNELS)})")
    module = importlib.import_module(f"sizeguard.core.{name}")
    if str(getattr(module, "__file__", "")).endswith(".py"):
        return module
    if not _SOURCES:
        _load_sources()
    return _SOURCES[name]


def python_source(kernel: F) -> F:
    """The Python-source version of a core kernel (``core.position.pnl`` -> the ``pnl`` of
    :func:`source` ("position")): what numba compiles; the kernel itself on the pure build."""
    module = str(kernel.__module__).rpartition(".")[2]
    return cast(F, getattr(source(module), kernel.__name__))


def _load_sources() -> None:
    _imp.acquire_lock()  # the kernels' names point at their source copies while these execute
    saved = {name: sys.modules.get(f"sizeguard.core.{name}") for name in KERNELS}
    try:
        loaded: dict[str, ModuleType] = {}
        for name in KERNELS:
            fullname = f"sizeguard.core.{name}"
            spec = importlib.util.spec_from_file_location(fullname, CORE / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[fullname] = module
            spec.loader.exec_module(module)
            loaded[name] = module
        _SOURCES.update(loaded)
    finally:
        for name, original in saved.items():
            if original is None:
                sys.modules.pop(f"sizeguard.core.{name}", None)
            else:
                sys.modules[f"sizeguard.core.{name}"] = original
        _imp.release_lock()


def _install() -> None:
    if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(RETIRED if usable() else COMPILED + RETIRED))


_install()
