#!/usr/bin/env bash
# Prepare freqtrade's own environment (freqtrade is GPL-3.0: never a dependency of sizeguard):
# a virtualenv (default .venv-freqtrade at the repository root) with freqtrade and this
# checkout of sizeguard (editable). Does nothing when it is ready. Needs Python >= 3.11.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${FREQTRADE_VENV:-$ROOT/.venv-freqtrade}
VERSION=${FREQTRADE_VERSION:-2026.9}
PY=${PYTHON:-python3}
ready() {
  [ -x "$VENV/bin/freqtrade" ] && "$VENV/bin/python" - "$VERSION" "$ROOT" <<'PY' 2>/dev/null
import sys, importlib.metadata as md, pathlib
import sizeguard
assert md.version("freqtrade") == sys.argv[1]
assert pathlib.Path(sizeguard.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[2]).resolve())
PY
}
if ready; then exit 0; fi
echo "setting up $VENV (freqtrade $VERSION + sizeguard): a few minutes the first time" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "freqtrade==$VERSION"
# pure-Python build here: the main .venv's install already compiled the decision core in the
# same source tree, and a second mypyc build at the same time would rewrite the same files
SIZEGUARD_PURE=1 "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[freqtrade]"
ready || { echo "freqtrade environment in $VENV is not usable" >&2; exit 1; }
