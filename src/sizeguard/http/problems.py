"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the service answers names what was wrong: ``errors`` lists ``{field, reason}``
for each invalid field. Mapping, most specific first:

* request validation (FastAPI/pydantic): malformed JSON 400, anything else invalid 422;
* :class:`~sizeguard.errors.InvalidInput` (the core's and the store's own checks): 422;
* retryable exchange errors (rate limits, network) and store outages: 503 with Retry-After;
  other exchange errors: 502;
* a business "no" is never an error: it is a 200 decision with status ``skipped``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from sizeguard.errors import ExchangeError, InvalidInput, StoreError, UnknownSymbol
from sizeguard.redact import redact

PROBLEM = "application/problem+json"


class Problem(Exception):
    """An HTTP error answer."""

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 errors: Sequence[Mapping[str, Any]] = (), headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if self.errors:
            out["errors"] = self.errors
            out["field"] = self.errors[0].get("field")
        out.update(self.extra)
        return out


def _plain(value: Any) -> Any:
    """A value safe for JSON (no NaN/inf, no bytes, short)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "..."
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def problem_for(exc: BaseException, retry_after: int = 5) -> Problem:
    """The problem answer for an exception raised while serving a request."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, InvalidInput):
        title = "unknown symbol" if isinstance(exc, UnknownSymbol) else "invalid input"
        return Problem(422, title, str(exc),
                       errors=[{"field": exc.field, "reason": exc.reason,
                                "value": _plain(exc.value)}])
    if isinstance(exc, ExchangeError):
        if exc.retryable:
            return Problem(503, "exchange unavailable", redact(f"{type(exc).__name__}: {exc}"),
                           headers={"Retry-After": str(retry_after)},
                           extra={"retryable": True})
        return Problem(502, "exchange error", redact(f"{type(exc).__name__}: {exc}"),
                       extra={"retryable": False})
    if isinstance(exc, StoreError):
        return Problem(503, "state store unavailable", "the state store did not answer; retry",
                       headers={"Retry-After": str(retry_after)}, extra={"retryable": True})
    if isinstance(exc, ValueError | ArithmeticError):
        # a value the checks above let through (a defect to fix where it was raised)
        return Problem(422, "invalid input", redact(f"{type(exc).__name__}: {exc}"))
    return Problem(500, "internal error", "the request could not be answered; it was logged")


MAX_ERRORS = 20  # listed in one answer; a body with a million unknown keys gets 20, not 85 MB


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> Problem:
    """FastAPI's RequestValidationError.errors() as a problem naming each field (the first
    :data:`MAX_ERRORS`; ``more_errors`` counts the rest)."""
    out: list[dict[str, Any]] = []
    malformed = False
    for e in errors[:MAX_ERRORS]:
        loc = [str(p) for p in e.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) or where
        if e.get("type") == "json_invalid":
            malformed = True
            field = "body"
        item: dict[str, Any] = {"field": field, "in": where, "reason": str(e.get("msg", "invalid"))}
        if "input" in e and e.get("type") not in ("missing", "json_invalid"):
            item["value"] = _plain(e["input"])
        out.append(item)
    more = {"more_errors": len(errors) - MAX_ERRORS} if len(errors) > MAX_ERRORS else {}
    if malformed:
        return Problem(400, "malformed request body", "the body is not valid JSON", errors=out,
                       extra=more)
    return Problem(422, "invalid request",
                   "; ".join(f"{i['field']}: {i['reason']}" for i in out[:5]), errors=out,
                   extra=more)


def dumps(body: Mapping[str, Any]) -> bytes:
    """A response body: compact JSON, UTF-8, a non-finite number as null. orjson writes it;
    what orjson refuses (an integer past 64 bits, a lone surrogate) takes json."""
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        pass
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:  # a non-finite float somewhere: write it as null
        return json.dumps(_finite(body), separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
