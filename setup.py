"""Build hook: compile the decision pipeline (and the backtest's entry side) with mypyc where a
C compiler exists.

The metadata lives in pyproject.toml; this file only adds the compiled modules. The same typed
source runs as pure Python wherever the build finds no compiler (or mypyc), or when
``SIZEGUARD_PURE=1`` is set at build time. The float kernels (``core/lots.py``,
``core/liquidation.py``, ``core/models.py``, ``core/position.py``) are compiled here for the
decision, and the backtest hands numba their Python source (``sizeguard._native.source``, the
same ``.py`` files). At import, :mod:`sizeguard._native` falls back to the Python source
of every compiled module when any of them is older than its source (an edit since the build)
or when ``SIZEGUARD_PURE=1`` is set, so a stale build never runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

# The modules compiled together (one mypyc group; they call each other natively). numba
# compiles Python bytecode: the backtest takes the kernels of lots, liquidation, models and
# position from _native.source (their .py files), never from these builds. A frozen dataclass
# that crosses processes must stay a Python class (a compiled one cannot be unpickled: the sweep
# ships markets with their tiers to Dask workers), hence core/tiers.py, market.py, policy.py and
# the inputs stay Python: the decision reads them once per object (core/decide.py, MarketView).
# Keep _native.COMPILED the same list.
COMPILED = [
    "src/sizeguard/core/decide.py",
    "src/sizeguard/core/limits.py",
    "src/sizeguard/core/adjust.py",
    "src/sizeguard/core/tolerances.py",
    "src/sizeguard/core/decision.py",
    "src/sizeguard/core/lots.py",
    "src/sizeguard/core/models.py",
    "src/sizeguard/core/liquidation.py",
    "src/sizeguard/core/position.py",
    # the backtest's entry side: between the numba loop's stops, it reads the decision's fields
    # natively (no numba here: the loop and its kernels stay numba's, from the core's source)
    "src/sizeguard/backtest/entries.py",
]


def _why_pure() -> str | None:
    if os.environ.get("SIZEGUARD_PURE") == "1":
        return "SIZEGUARD_PURE=1"
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(os.environ.get("CC", cc).split()[0]) is None:
        return f"no C compiler ({cc})"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python headers (Python.h)"
    try:
        import mypyc.build  # noqa: F401, PLC0415
    except ImportError:
        return "mypyc is not installed"
    return None


def ext_modules() -> list[object]:
    why = _why_pure()
    if why is not None:
        print(f"sizeguard: pure Python build ({why})", file=sys.stderr)
        return []
    from mypyc.build import mypycify  # noqa: PLC0415

    here = Path(__file__).resolve().parent
    os.chdir(here)  # mypyc wants the paths relative to the project
    extensions = list(mypycify(COMPILED, opt_level="3"))
    for ext in extensions:  # a compiler that fails leaves the pure-Python package working
        ext.optional = True
    return extensions


setup(ext_modules=ext_modules())
