"""Secrets out of every log line and error message.

:func:`redact` masks what must never be written down: the password in a URL
(``postgresql://user:***@host``), bot tokens (``sg_<id>_***``), bearer credentials, ``password=``,
``secret=``, ``token=``, ``api_key=`` and ``signature=`` pairs, and the exchange keys the live
service reads from ``SIZEGUARD_API_KEY``, ``SIZEGUARD_API_SECRET`` and
``SIZEGUARD_API_PASSWORD``.
:func:`install` makes every log record of the process pass through it (messages, arguments and
tracebacks), whichever handler or formatter writes it.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):(?P<pw>[^@\s/]*)@")
_TOKEN = re.compile(r"\b(?P<head>sg_[0-9a-f]{8,32}_)[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)\b(?P<head>bearer\s+)[A-Za-z0-9._~+/=\-]+")
_PAIR = re.compile(r"(?i)\b(?P<head>(?:password|passwd|secret|token|api_?key|apikey|signature)"
                   r"\s*[=:]\s*['\"]?)[^\s'\"&,;]+")
_ENV_SECRETS = ("SIZEGUARD_API_KEY", "SIZEGUARD_API_SECRET", "SIZEGUARD_API_PASSWORD")


def redact_url(url: str) -> str:
    """``url`` with its password (if any) masked."""
    return redact(url)


def redact(text: str) -> str:
    """``text`` with every secret it holds masked."""
    if not text:
        return text
    out = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    out = _TOKEN.sub(lambda m: m["head"] + MASK, out)
    out = _BEARER.sub(lambda m: m["head"] + MASK, out)
    out = _PAIR.sub(lambda m: m["head"] + MASK, out)
    for name in _ENV_SECRETS:
        value = os.environ.get(name)
        if value and len(value) >= 4 and value in out:
            out = out.replace(value, MASK)
    return out


def _clean(arg: Any) -> Any:
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    text = str(arg)
    masked = redact(text)
    return arg if masked == text else masked


_installed: list[bool] = []


def install() -> None:
    """Redact every log record this process creates from now on (idempotent)."""
    if _installed:
        return
    _installed.append(True)
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
