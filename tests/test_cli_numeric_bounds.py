"""Every numeric option of ``serve``, ``bots add`` and ``store prune`` is bounded: out of range
is one line on stderr naming the option, exit 2, never a traceback (#11 item 5). Measured
before: ``bots add --max-positions 9223372036854775808`` printed an OverflowError traceback and
``serve --port 99999`` a multi-line pydantic report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from httpfix import SIZEGUARD, clean_env


@pytest.mark.parametrize(("args", "option"), [
    (("serve", "--port", "99999"), "--port"),
    (("serve", "--workers", "0"), "--workers"),
    (("bots", "add", "x", "--max-positions", "9223372036854775808"), "--max-positions"),
    (("store", "prune", "--days", "0"), "--days"),
    (("store", "prune", "--days", "1e999"), "--days"),
    (("store", "prune", "--idempotency-hours", "-1"), "--idempotency-hours"),
])
def test_out_of_range_is_one_line(tmp_path: Path, args: tuple[str, ...], option: str) -> None:
    env = clean_env({"SIZEGUARD_STORE": f"sqlite:///{tmp_path / 'state.db'}"})
    r = subprocess.run([SIZEGUARD, *args], capture_output=True, text=True, env=env, timeout=60,
                       check=False)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "state.db").exists()
