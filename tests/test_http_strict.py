"""The strict body parser's shortcut: a body without a backslash skips the string checks (no
string in it can hold a control character or a lone surrogate); every body gets the same
answer, or the same refusal naming the same field, as with the checks."""

from __future__ import annotations

import json

import pytest

from sizeguard.http import strict

BODIES = [
    b'{"symbol":"BTC/USDT:USDT","side":"long","price":50000.0,"reserve":true,"ttl":0.05}',
    b'{"a":{"b":[1,2.5,"x",null,{"c":"d"}]},"e":"f"}',
    b'{"a":"x\\u0000y"}', b'{"a\\u0001":1}', b'{"a":"\\ud800"}', b'{"a":["ok","\\n"]}',
    b'{"a":"caf\\u00e9","b":"\\/"}', b'{"a":"\x7f"}', b'{"\x7f":1}',
    b'{"a":1,"a":2}', b'{"a":{"b":1,"b":2}}', b'{"a":1e400}', b'{"a":[NaN]}',
    b'{"a":' + b'1' * 50 + b'}', b'[[[[[[[[[1]]]]]]]]]', b'{"a":[[[[[[[["\\n"]]]]]]]]}',
    b'"plain"', b'"\\u0007"', b'{"a":"b","c":{"d":"e\\u0002"}}', b'{"x":true,"y":"z\x7f"}',
]


def _slow(body: bytes) -> object:
    """The parse with every string checked (the walk without its shortcut)."""
    value = strict._DECODER.decode(body.decode("utf-8"))  # noqa: SLF001 - its own parts
    strict._walk(value, "", 0, False)  # noqa: SLF001
    return value


@pytest.mark.parametrize("body", BODIES)
def test_the_shortcut_answers_as_the_full_check(body: bytes) -> None:
    try:
        expected: object = ("ok", json.dumps(_slow(body), default=repr))
    except strict.BodyError as exc:
        expected = ("refused", exc.status, exc.field, exc.reason, exc.value)
    try:
        got: object = ("ok", json.dumps(strict.loads(body), default=repr))
    except strict.BodyError as exc:
        got = ("refused", exc.status, exc.field, exc.reason, exc.value)
    assert got == expected
