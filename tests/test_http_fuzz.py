"""Property-based fuzzing of the real server from its own OpenAPI schema (schemathesis): valid
and invalid requests on every operation, with a valid token and without; not one 5xx.
Bounded: a fixed number of examples per operation, derandomised."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from httpfix import BTC, add_bot, auth, many_markets, serving  # noqa: E402

pytestmark = pytest.mark.timeout(420)
EXAMPLES = 50


def test_no_request_gets_a_5xx(tmp_path: Path) -> None:
    from schemathesis import GenerationMode
    from schemathesis.openapi import from_url

    url = f"sqlite:///{tmp_path / 'state.db'}"
    token = add_bot(url, "fuzzer", budget=0.5, max_positions=3)
    markets = many_markets(tmp_path / "markets.json", 4)
    env = {"SIZEGUARD_PRESET": "quantum-4x30"}
    with serving(url, tmp_path, env=env, args=("--markets", str(markets))) as server:
        import httpx

        # open the account so the deeper paths (state, fills, closes) run too
        r = httpx.post(server.url + "/v1/decisions", headers=auth(token), timeout=30,
                       json={"symbol": BTC, "side": "long", "price": 50000.0, "equity": 10000.0,
                             "reserve": True})
        assert r.status_code == 200, r.text
        schema = from_url(server.url + "/openapi.json")
        statuses: Counter[int] = Counter()
        failures: list[str] = []
        unnamed: list[str] = []  # a 4xx that is not problem+json, or a 400/422 naming no field
        operations = [op.ok() for op in schema.get_all_operations()]
        assert len(operations) >= 11
        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = op.as_strategy(generation_mode=mode)

                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy, with_token=st.sampled_from([True, True, True, False]))
                def check(case: object, with_token: bool) -> None:
                    headers = auth(token) if with_token else {}
                    response = case.call(base_url=server.url, headers=headers,  # type: ignore[attr-defined]
                                         timeout=30)
                    statuses[response.status_code] += 1
                    what = (f"{case.method} {case.formatted_path} "  # type: ignore[attr-defined]
                            f"{case.body!r} -> {response.status_code} "  # type: ignore[attr-defined]
                            f"{response.text[:300]}")
                    if response.status_code >= 500:
                        failures.append(what)
                    elif response.status_code >= 400 and not _problem_naming_field(response):
                        unnamed.append(what)

                try:
                    check()
                except Unsatisfiable:  # nothing invalid to send (e.g. no parameters at all)
                    assert mode == GenerationMode.NEGATIVE
        log = server.output()
    print(dict(statuses))
    assert not failures, "\n".join(failures[:10])
    assert not unnamed, "\n".join(unnamed[:10])
    assert "Traceback" not in log, log[-3000:]
    assert sum(statuses.values()) >= 11 * EXAMPLES
    assert statuses[200] > 0 and statuses[401] > 0 and statuses[422] > 0, statuses


def _problem_naming_field(response: object) -> bool:
    """Every 4xx of the API is problem+json; a 400, 413 or 422 names the field (strict input)."""
    from urllib.parse import urlsplit

    r = response  # schemathesis's response
    if not urlsplit(str(r.request.url)).path.startswith(  # type: ignore[attr-defined]
            ("/v1/", "/healthz", "/metrics")):
        return True  # the console's HTML pages answer for themselves
    headers = {k.lower(): v for k, v in r.headers.items()}  # type: ignore[attr-defined]
    ctype = headers.get("content-type")
    if isinstance(ctype, list):  # schemathesis keeps every value of a header
        ctype = ctype[0] if ctype else None
    if ctype != "application/problem+json":
        return False
    if r.status_code in (400, 413, 422):  # type: ignore[attr-defined]
        body = r.json()  # type: ignore[attr-defined]
        return bool(body.get("field")) and bool(body.get("errors"))
    return True
