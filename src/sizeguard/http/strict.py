"""Strict JSON for request bodies: what :func:`json.loads` lets through and a risk gate must not.

* duplicate keys are refused (``json`` keeps the last one silently);
* ``NaN``, ``Infinity`` and numbers that do not fit a double (``1e400``) are refused;
* integers longer than :data:`MAX_DIGITS` digits are refused (a 5,000-digit integer is not a
  price; Python would raise a generic ValueError past 4,300 digits);
* nesting deeper than :data:`MAX_DEPTH` is refused (no request body nests at all);
* the bytes must be UTF-8, and no string may hold a control character (NUL included) or a lone
  surrogate: they reach the store and the logs.

Every refusal is a :class:`BodyError` naming the field (a dotted path, ``body`` for the whole
document), so the answer is a problem+json that says where.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DIGITS = 40  # digits of an integer; 1e15 (the largest amount accepted) has 16
MAX_DEPTH = 8  # objects/arrays inside each other; request bodies are flat
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class BodyError(ValueError):
    """A body the gate refuses: ``status`` 400 (not JSON at all) or 422 (a field is wrong)."""

    def __init__(self, status: int, field: str, reason: str, value: Any = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.status = status
        self.field = field
        self.reason = reason
        self.value = value


class _Pairs(dict[str, Any]):
    """An object that had a duplicate key (kept to name it after the parse)."""

    duplicate: str = ""


class _Bad:
    """A number the gate refuses, kept as its text until the walk names its field."""

    __slots__ = ("reason", "text")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            dup = _Pairs(out)
            dup.duplicate = key
            return dup
        out[key] = value
    return out


def _int(text: str) -> Any:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_DIGITS:
        return _Bad(text, f"an integer of {digits} digits (at most {MAX_DIGITS})")
    return int(text)


def _float(text: str) -> Any:
    value = float(text)
    if not math.isfinite(value):
        return _Bad(text, "a number too large for a double")
    return value


def _constant(text: str) -> Any:
    return _Bad(text, f"{text} is not JSON")


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


# json.loads with these hooks, built once (json.loads builds a decoder on every call)
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int, parse_float=_float,
                            parse_constant=_constant)


def loads(body: bytes) -> Any:
    """The parsed body, or :class:`BodyError` naming what is wrong where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, "body", f"not UTF-8 (byte {exc.start}: {body[exc.start:exc.start + 1]!r})"
                        ) from None
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BodyError(400, "body", f"not JSON: {exc.msg} at line {exc.lineno} column "
                        f"{exc.colno}") from None
    except RecursionError:
        raise BodyError(422, "body", f"nested deeper than {MAX_DEPTH} levels") from None
    # without a backslash no string was escaped, so none holds a control character (the
    # decoder refuses them raw) or a lone surrogate (UTF-8 cannot carry one); DEL may be raw
    _walk(value, "", 0, "\\" not in text and "\x7f" not in text)
    return value


_PLAIN = (float, int, bool, type(None))  # nothing to check in these (a refused number is _Bad)


def _walk(value: Any, path: str, depth: int, clean: bool = False) -> None:
    where = path or "body"
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise BodyError(422, where, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, _Pairs):
            key = value.duplicate
            raise BodyError(422, f"{path}.{key}" if path else key,
                            "the key appears more than once")
        for key, item in value.items():
            if clean:
                if type(item) in _PLAIN or type(item) is str:
                    continue
            else:
                _string(key, f"{path}.{key}" if path else key, "key")
            _walk(item, f"{path}.{key}" if path else key, depth + 1, clean)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise BodyError(422, where, f"nested deeper than {MAX_DEPTH} levels")
        for i, item in enumerate(value):
            _walk(item, f"{path}.{i}" if path else str(i), depth + 1, clean)
    elif isinstance(value, _Bad):
        raise BodyError(422, where, value.reason, _short(value.text))
    elif isinstance(value, str) and not clean:
        _string(value, where, "value")


def _string(text: str, field: str, what: str) -> None:
    bad = _CONTROL.search(text)
    if bad is not None:
        char = bad.group()
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        raise BodyError(422, field, f"the {what} holds {kind} (U+{ord(char):04X})",
                        _short(text.encode("unicode_escape").decode("ascii")))


def check_text(text: str, field: str) -> None:
    """Refuse a control character or lone surrogate in a path or query value."""
    _string(text, field, "value")
