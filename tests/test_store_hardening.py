"""The store under failure (#11 item 4), on the real databases: a connection the server killed
is replaced transparently; a statement longer than the time bound is cut (503, not a hang); a
client's value the database refuses (NUL, an integer out of range) is InvalidInput (4xx), never
"store unavailable"; no password, token or key reaches a message or a log line.
(The restart and hung-server cases on the real service are in test_http_outage.py.)"""

from __future__ import annotations

import io
import logging
import time

import pytest

import storefix
from sizeguard import redact
from sizeguard.adapters.bots import BotRegistry
from sizeguard.adapters.sql_store import SqlStore, open_store
from sizeguard.errors import InvalidInput, StoreError

store_url = storefix.store_url
clock = storefix.clock
store = storefix.store


# ----------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(("text", "secret"), [
    ("postgresql://sizeguard:s3cr3t-pw@db.example:5432/prod?schema=x", "s3cr3t-pw"),
    ("cannot open the store postgres://u:p%40ss@h/db: refused", "p%40ss"),
    ("token sg_0123456789abcdef_Zq8xK-secretpart_9 rejected", "Zq8xK-secretpart_9"),
    ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ("connect(password=hunter22, user=x)", "hunter22"),
    ("api_key='AKIA1234' secret: s3cr3t", "AKIA1234"),
    ("api_key='AKIA1234' secret: s3cr3t", "s3cr3t"),
    ("GET https://x/api/v3/order?symbol=BTC&timestamp=1&signature=9f8e7d6c", "9f8e7d6c"),
])
def test_redact_masks_secrets(text: str, secret: str) -> None:
    out = redact.redact(text)
    assert secret not in out and redact.MASK in out, out


def test_redact_keeps_ordinary_text() -> None:
    for text in ("postgresql://postgres@127.0.0.1:5432/test", "BTC/USDT:USDT long 0.002",
                 "sqlite:////tmp/state.db", "reservation res_0123 released"):
        assert redact.redact(text) == text


def test_exchange_keys_from_the_environment_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIZEGUARD_API_KEY", "live-key-0xDEADBEEF")
    assert "0xDEADBEEF" not in redact.redact("ccxt said: invalid key live-key-0xDEADBEEF")


def test_every_log_record_is_redacted() -> None:
    redact.install()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("sizeguard.test-redact")
    logger.addHandler(handler)
    try:
        url = "postgresql://u:pw-in-url@h/db"
        logger.warning("store error on %s", url)
        logger.warning("plain message with %s", "Bearer tok-in-header")
        try:
            raise StoreError(f"{url}: connection refused")
        except StoreError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "failed" in text and "StoreError" in text  # the traceback is still there
    for secret in ("pw-in-url", "tok-in-header"):
        assert secret not in text, text


def test_an_exchange_error_answer_names_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from sizeguard.errors import ExchangeError
    from sizeguard.http.problems import problem_for

    monkeypatch.setenv("SIZEGUARD_API_KEY", "k-0123456789")
    exc = ExchangeError("binance GET /order?apiKey=k-0123456789&signature=abcdef0123 -> 401")
    detail = problem_for(exc).detail or ""
    assert "k-0123456789" not in detail and "abcdef0123" not in detail, detail


def test_a_store_error_names_no_password() -> None:
    with pytest.raises(StoreError) as err:
        open_store("postgresql://someone:pw-never-shown@127.0.0.1:1/db", timeout=1)
    assert "pw-never-shown" not in str(err.value) and "127.0.0.1" in str(err.value)


# ----------------------------------------------------------------------------- client errors


def test_an_integer_out_of_range_is_the_clients_error(store: SqlStore) -> None:
    """Measured before: an OverflowError (SQLite) or a 503 "store unavailable" (PostgreSQL)."""
    reg = BotRegistry(store)
    with pytest.raises(InvalidInput):
        reg.add("big", account_id="acc", max_positions=2**63)
    assert reg.bots() == []


def test_a_nul_byte_is_never_an_outage(store: SqlStore) -> None:
    try:
        entries = store.journal("acc", symbol="BTC\x00")
    except InvalidInput:
        return  # PostgreSQL refuses NUL in text: the client's error
    assert entries == []  # SQLite stores it: no such rows


# ----------------------------------------------------------------------------- reconnect, time bounds


def _pg(store: SqlStore) -> None:
    if not store.url.startswith("postgres"):
        pytest.skip("PostgreSQL only")


def test_a_killed_connection_is_replaced_transparently(store: SqlStore) -> None:
    """What a database restart does to every idle connection: the server ends it. The next
    transaction finds it dead as it begins and runs on a new one (before: StoreError, on every
    thread holding such a connection, until that thread happened to reconnect)."""
    _pg(store)
    import psycopg

    with store.tx(write=False) as tx:
        row = tx.one("SELECT pg_backend_pid()")
    assert row is not None
    with psycopg.connect(storefix.PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
    time.sleep(0.2)
    assert store.schema_version() > 0  # no error: reconnected
    with store.tx(write=False) as tx:
        again = tx.one("SELECT pg_backend_pid()")
    assert again is not None and again[0] != row[0]


def test_a_statement_longer_than_the_bound_is_cut(store_url: str) -> None:
    if not store_url.startswith("postgres"):
        pytest.skip("PostgreSQL only")
    s = open_store(store_url, timeout=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(StoreError), s.tx(write=False) as tx:
            tx.one("SELECT pg_sleep(3)")
        assert time.monotonic() - start < 2.5
        assert s.schema_version() > 0  # the connection (or a new one) still serves
    finally:
        s.close()
