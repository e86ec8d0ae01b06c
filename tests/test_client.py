"""sizeguard.client against the REAL server (``sizeguard serve`` on loopback, SQLite): every
endpoint, sync and async, idempotent retries that never reserve twice, Retry-After honoured.

One server for the module (starting one costs a few seconds); each test uses its own bots.
Runtime ~10 s."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import httpx
import pytest

from httpfix import BTC, ETH, Server, add_bot, many_markets, serving, sym
from sizeguard.client import (
    AsyncGateClient,
    GateClient,
    GateError,
    RetryPolicy,
    intent_key,
)

pytestmark = pytest.mark.timeout(120)

# viper-fixed-margin: 2 USDT margin x 50x = 100 USDT notional a trade. The tests share one
# account, so each trades its own symbols (C00/USDT:USDT... have BTC's rules).
ENV = {"SIZEGUARD_PRESET": "viper-fixed-margin", "SIZEGUARD_LIMITS__MAX_POSITIONS": "50"}
_names = itertools.count()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("client")
    url = f"sqlite:///{tmp / 'state.db'}"
    markets = many_markets(tmp / "markets.json", 8)
    with serving(url, tmp, env=ENV, args=("--markets", str(markets))) as server:
        yield server, url


@pytest.fixture
def server(served: tuple[Server, str]) -> Server:
    return served[0]


@pytest.fixture
def token(served: tuple[Server, str]) -> str:
    return add_bot(served[1], f"bot{next(_names)}")


class Recorder:
    """Records the waits a client asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_reserve_fill_close_round_trip(server: Server, token: str) -> None:
    with GateClient(server.url, token, sleep=Recorder()) as gate:
        d = gate.reserve(BTC, "long", 50_000, equity=10_000, stop=49_800, key="sig-1")
        # 2 USDT margin x 50x = 100 USDT; 100 / 50,000 = 0.002 BTC (step 0.001)
        assert d.accepted and d.amount == "0.002" and d.leverage == 50.0
        assert d.notional == pytest.approx(100.0) and d.stop_price == 49_800.0
        assert d.reservation is not None and d.reservation.status == "held"
        assert not d.replayed
        core = d.decision()  # the core's typed decision, trace included
        assert core.accepted and core.amount == "0.002" and core.trace
        held = gate.positions()
        assert [r.id for r in held.reservations] == [d.reservation_id]
        pos = gate.fill(d.reservation_id, amount=d.amount, price=50_010, fee=0.05,
                        stop_price=49_800, order_id="ex-1")
        assert pos.status == "open" and pos.amount == "0.002" and pos.entry_price == 50_010.0
        assert [p.id for p in gate.positions().positions] == [pos.id]
        closed = gate.close(pos.id, price=51_010, fee=0.05)
        # (51,010 - 50,010) x 0.002 = 2.0 gross, minus the exit fee 0.05 (the entry fee was
        # booked at the fill) -> 1.95
        assert closed.position.status == "closed"
        assert closed.position.pnl == pytest.approx(1.95)
        assert gate.positions().positions == ()
        assert gate.state()["open_positions"] == 0
        assert gate.market(BTC)["symbol"] == BTC
        assert gate.health()["status"] == "ok"
        assert any(e["symbol"] == BTC for e in gate.journal(symbol=BTC))


def test_same_key_reserves_once(server: Server, token: str) -> None:
    """A retried intent (same key: even after a restart) gets the first answer back."""
    with GateClient(server.url, token) as gate:
        key = intent_key("bot", sym(0), "long", "2026-11-21T10:00")
        first = gate.reserve(sym(0), "long", 50_000, equity=10_000, key=key)
        again = gate.reserve(sym(0), "long", 50_000, equity=10_000, key=key)
        assert again.replayed and again.reservation_id == first.reservation_id
        assert len(gate.positions().reservations) == 1
        assert gate.release(first.reservation_id) is True
        assert gate.positions().reservations == ()


def test_lost_answer_is_retried_without_reserving_twice(server: Server, token: str) -> None:
    """The first attempt reaches the server and reserves, but its answer is lost on the way
    back (the connection drops): the retry carries the same Idempotency-Key and gets the
    first answer, so exactly one reservation is held."""
    real = httpx.HTTPTransport()
    sent: list[str | None] = []

    class DropFirstAnswer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = real.handle_request(request)
            sent.append(request.headers.get("Idempotency-Key"))
            if request.method == "POST" and len(sent) == 1:
                response.read()
                raise httpx.ReadError("connection reset", request=request)
            return response

    waits = Recorder()
    with GateClient(server.url, token, transport=DropFirstAnswer(), sleep=waits) as gate:
        d = gate.reserve(ETH, "long", 3000, equity=10_000)
        assert d.accepted and d.replayed
        assert len(sent) == 2 and sent[0] == sent[1] and sent[0]  # one key, both attempts
        assert len(waits.waits) == 1 and waits.waits[0] <= 0.25  # backoff, no Retry-After
        assert [r.id for r in gate.positions().reservations] == [d.reservation_id]


def test_retry_after_is_honoured(server: Server, token: str) -> None:
    """503 with Retry-After: 3 -> the client waits 3 s (as told) and tries again."""
    real = httpx.HTTPTransport()
    answers = iterate_first(httpx.Response(503, headers={"Retry-After": "3"},
                                           json={"title": "store unavailable", "status": 503}))

    class Busy(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            canned = next(answers)
            return canned if canned is not None else real.handle_request(request)

    waits = Recorder()
    with GateClient(server.url, token, transport=Busy(), sleep=waits) as gate:
        d = gate.decide(sym(1), "short", 50_000, equity=10_000, stop_pct=1)
        assert d.accepted and d.side == "short" and d.reservation is None
    assert waits.waits == [3.0]


def iterate_first(*canned: httpx.Response) -> Iterator[httpx.Response | None]:
    yield from canned
    while True:
        yield None


def test_retries_give_up_with_the_last_error(server: Server, token: str) -> None:
    class Down(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(503, headers={"Retry-After": "120"},
                                  json={"title": "store unavailable", "status": 503})

    waits = Recorder()
    with GateClient(server.url, token, transport=Down(), sleep=waits,
                    retry=RetryPolicy(attempts=3, max_delay=10)) as gate, \
            pytest.raises(GateError) as err:
        gate.state()
    assert err.value.status == 503 and err.value.retry_after == 120.0
    assert waits.waits == [10.0, 10.0]  # Retry-After capped by max_delay; 3 attempts


def test_errors_name_the_field_and_skips_are_answers(served: tuple[Server, str]) -> None:
    server, url = served
    token = add_bot(url, f"bot{next(_names)}", max_positions=1)
    waits = Recorder()
    with GateClient(server.url, token, sleep=waits) as gate:
        with pytest.raises(GateError) as err:
            gate.decide(BTC, "long", 50_000, equity=10_000, stop=51_000)  # stop above a long
        assert err.value.status == 422 and err.value.field == "stop"
        with pytest.raises(GateError) as unknown:
            gate.decide("NOPE/USDT:USDT", "long", 1.0, equity=10_000)
        assert unknown.value.status == 422 and unknown.value.field == "symbol"
        with pytest.raises(GateError) as missing:
            gate.fill("res_nope", amount="0.002", price=50_000)
        assert missing.value.status == 404
        # a business "no" is an answer, not an error: the bot's one slot is taken
        first = gate.reserve(sym(2), "long", 50_000, equity=10_000)
        second = gate.reserve(sym(3), "long", 3000, equity=10_000)
        assert first.accepted and not second.accepted
        assert second.reasons == ("MAX_POSITIONS",) and second.reservation is None
        assert second.bound_by == "bot"
        with pytest.raises(GateError):
            _ = second.reservation_id
    assert waits.waits == []  # 4xx answers are final: never retried
    with GateClient(server.url, "sg_bad_token") as bad, pytest.raises(GateError) as denied:
        bad.state()
    assert denied.value.status == 401


def test_async_client_round_trip(server: Server, token: str) -> None:
    async def run() -> None:
        async with AsyncGateClient(server.url, token) as gate:
            ds = await asyncio.gather(*(gate.reserve(s, "long", price, equity=10_000,
                                                     key=f"a-{s}")
                                        for s, price in ((sym(4), 50_000), (sym(5), 3000))))
            assert all(d.accepted for d in ds)
            # 100 USDT / 3,000 = 0.0333.. -> 0.033 ETH on a 0.001 step
            assert {d.symbol: d.amount for d in ds} == {sym(4): "0.002", sym(5): "0.033"}
            again = await gate.reserve(sym(5), "long", 3000, equity=10_000, key=f"a-{sym(5)}")
            assert again.replayed and again.reservation_id == ds[1].reservation_id
            pos = await gate.fill(ds[0].reservation_id, amount=ds[0].amount, price=50_000)
            assert (await gate.release(ds[1].reservation_id)) is True
            held = await gate.positions()
            assert [p.id for p in held.positions] == [pos.id] and held.reservations == ()
            closed = await gate.close(pos.id, price=49_000)
            # (49,000 - 50,000) x 0.002 = -2.0
            assert closed.position.pnl == pytest.approx(-2.0)
            assert (await gate.state())["losing_streak"] >= 1
    asyncio.run(run())


def test_intent_key_is_stable_and_bounded() -> None:
    assert intent_key("bot", BTC, 1700000000) == intent_key("bot", BTC, 1700000000)
    assert intent_key("a b\n") == "a_b_"
    long = intent_key("x" * 500)
    assert len(long) <= 200 and long == intent_key("x" * 500)
    assert intent_key("x" * 500) != intent_key("x" * 499 + "y")
