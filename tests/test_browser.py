"""The console, /docs and the backtest report in a real browser: Debian's headless Chromium
driven by Playwright (never a downloaded browser), loopback only. Every request the page makes
to anything but the service on 127.0.0.1 (or the report's own file) is aborted and fails the
test: the pages work offline.

Heavy: a real ``sizeguard serve``, a Chromium and a small backtest; about 30-60 s in all.
Screenshots go to the test's tmp dir, and also to ``SIZEGUARD_SCREENSHOTS`` when set
(``SIZEGUARD_SCREENSHOTS=docs`` regenerates the ones in docs/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from httpfix import BTC, SIZEGUARD, Server, add_bot, auth, clean_env, serving

pytestmark = pytest.mark.timeout(180)
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ENV = {"SIZEGUARD_PRESET": "viper-fixed-margin", "SIZEGUARD_LIMITS__MAX_POSITIONS": "4"}


def _need_browser() -> None:
    why = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why = "playwright is not installed (pip install -e '.[test]')"
    if why is None and not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing (apt-get install chromium; scripts/test installs it)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why + ": CI must have it")
        pytest.skip(why)


def _save(shot: Path, name: str) -> None:
    target = os.environ.get("SIZEGUARD_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(target) / name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Offline:
    """Aborts (and records) every request that leaves the service or the local file."""

    def __init__(self, page: Any, allowed: str) -> None:
        self.outside: list[str] = []
        self.allowed = allowed

        def route(r: Any) -> None:
            url = r.request.url
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob") or url.startswith(self.allowed) or (
                    parts.scheme == "file" and self.allowed.startswith("file:")):
                r.continue_()
            else:
                self.outside.append(url)
                r.abort()
        page.route("**/*", route)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    """The real server with two bots and the admin (its token made by the CLI)."""
    _need_browser()
    d = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{d / 'state.db'}"
    token = add_bot(url, "alpha", budget=0.75)  # 3 of the account's 4 slots
    add_bot(url, "beta", budget=0.25, max_positions=2)
    made = subprocess.run([SIZEGUARD, "admin", "token", "ops", "--store", url, "--json"],
                          capture_output=True, text=True, env=clean_env(), check=True, timeout=60)
    admin = json.loads(made.stdout)["token"]
    with serving(url, d, env=ENV) as s:
        yield s, token, admin


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, errors  # no JavaScript error on any page


def _sign_in(page: Any, s: Server, token: str) -> Offline:
    off = Offline(page, s.url)
    page.goto(s.url + "/ui")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])", timeout=10_000)
    return off


def test_console_shows_a_reservation_made_through_the_api_within_2s(
        page: Any, server: tuple[Server, str, str], tmp_path: Path) -> None:
    s, token, admin = server
    off = _sign_in(page, s, admin)
    assert page.text_content("#role") == "admin"
    r = httpx.post(s.url + "/v1/decisions", headers=auth(token), timeout=30, json={
        "symbol": BTC, "side": "long", "price": 50000.0, "equity": 10000.0, "stop_pct": 2.0,
        "reserve": True})
    res = r.json()["reservation"]
    # the page polls every second: the reservation is on screen within 2 s
    page.wait_for_selector(f'#reservations tr[data-id="{res["id"]}"]', timeout=2000)
    row = page.text_content(f'#reservations tr[data-id="{res["id"]}"]') or ""
    assert "alpha" in row and BTC in row and res["amount"] in row
    # the decision is in the live feed, its trace one click away
    item = page.locator(f'#feed-list li[data-journal-id="{r.json()["journal_id"]}"]')
    item.wait_for(timeout=2000)
    item.locator("summary").click()
    assert "liquidation_guard" in (item.locator("table.trace").text_content() or "")
    # two more, so the screenshot shows a book and a feed
    for sym, price in (("ETH/USDT:USDT", 3000.0), ("ADA/USDT:USDT", 0.5)):
        httpx.post(s.url + "/v1/decisions", headers=auth(token), timeout=30, json={
            "symbol": sym, "side": "short", "price": price, "stop_pct": 3.0, "reserve": True})
    page.locator("#reservations tbody tr[data-id]").nth(2).wait_for(timeout=3000)
    shot = tmp_path / "console.png"
    page.screenshot(path=str(shot), full_page=True)
    _save(shot, "console.png")
    # the admin releases one
    page.once("dialog", lambda d: d.accept())
    page.click(f'#reservations tr[data-id="{res["id"]}"] button.danger')
    page.wait_for_selector(f'#reservations tr[data-id="{res["id"]}"]', state="detached",
                           timeout=3000)
    held = httpx.get(s.url + "/v1/positions", headers=auth(token), timeout=30).json()
    assert res["id"] not in {x["id"] for x in held["reservations"]}
    # the admin halts trading: the banner says why and how it lifts; a bot's decision skips
    page.fill("#halt-reason", "exchange maintenance")
    page.once("dialog", lambda d: d.accept())
    page.click("#halt-form button[type=submit]")
    banner = page.locator("#halts .banner.halt")
    banner.wait_for(timeout=3000)
    assert "HALTED_BY_ADMIN" in (banner.text_content() or "")
    assert "exchange maintenance" in (banner.text_content() or "")
    d = httpx.post(s.url + "/v1/decisions", headers=auth(token), timeout=30, json={
        "symbol": BTC, "side": "long", "price": 50000.0, "stop_pct": 2.0}).json()
    assert d["reasons"] == ["HALTED_BY_ADMIN"]
    page.locator('#feed-list li[data-journal-id] .st.skipped').first.wait_for(timeout=3000)
    page.locator("#account").screenshot(path=str(tmp_path / "halted.png"))
    _save(tmp_path / "halted.png", "console-halted.png")
    page.once("dialog", lambda d: d.accept())
    page.click("#resume")
    page.locator("#halts .banner.ok").wait_for(timeout=3000)
    assert not off.outside, off.outside


def test_a_bot_token_gives_a_read_only_view(page: Any, server: tuple[Server, str, str]) -> None:
    s, token, _ = server
    off = _sign_in(page, s, token)
    assert "bot" in (page.text_content("#role") or "")
    page.wait_for_selector("#bots-table tbody tr")
    assert page.locator("#bots-table tbody tr").count() == 1  # itself only
    assert page.locator("#reservations button.danger").count() == 0
    assert not page.locator("#alerts").is_visible()
    assert not off.outside, off.outside


def test_what_if_form_gives_the_decision_of_size_json(page: Any, server: tuple[Server, str, str],
                                                      tmp_path: Path) -> None:
    s, _, admin = server
    cli = subprocess.run(
        [SIZEGUARD, "size", BTC, "--side", "short", "--price", "87669", "--equity", "8930.41",
         "--atr", "2000", "--confidence", "0.52", "--preset", "ai-atr-risk", "--json"],
        capture_output=True, text=True, env=clean_env(ENV), check=True, timeout=60)  # as served
    expected = json.loads(cli.stdout)
    off = _sign_in(page, s, admin)
    form = "#whatif-form"
    page.select_option(f"{form} [name=symbol]", BTC)
    page.select_option(f"{form} [name=side]", "short")
    page.fill(f"{form} [name=price]", "87669")
    page.fill(f"{form} [name=equity]", "8930.41")
    page.fill(f"{form} [name=atr]", "2000")
    page.fill(f"{form} [name=confidence]", "0.52")
    page.select_option(f"{form} [name=preset]", "ai-atr-risk")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("#whatif-json", state="attached", timeout=5000)
    shown = json.loads(page.text_content("#whatif-json") or "")
    assert shown == expected
    assert page.text_content("#whatif-reasons") == (", ".join(expected["reasons"]) or "none")
    page.locator("#whatif").screenshot(path=str(tmp_path / "whatif.png"))
    _save(tmp_path / "whatif.png", "console-whatif.png")
    assert not off.outside, off.outside


def test_docs_render_every_operation_offline(page: Any, server: tuple[Server, str, str]) -> None:
    s, _, _ = server
    off = Offline(page, s.url)
    page.goto(s.url + "/docs")
    schema = httpx.get(s.url + "/openapi.json", timeout=30).json()
    n = sum(len(ops) for ops in schema["paths"].values())
    page.wait_for_selector(".opblock", timeout=15_000)
    assert page.locator(".opblock").count() == n
    assert "/v1/decisions" in (page.text_content(".swagger-ui") or "")
    assert not off.outside, off.outside


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of the five presets: ``SIZEGUARD_REPORT_HTML`` when given (the docs pictures
    use the BTC 1h one), else a fresh one on Coinbase BTC/USD daily candles."""
    _need_browser()
    given = os.environ.get("SIZEGUARD_REPORT_HTML")
    if given:
        return Path(given)
    from conftest import shared_path

    candles = shared_path("ohlcv", "coinbase", "BTC_USD-1d.csv")
    out = tmp_path_factory.mktemp("report") / "report.html"
    subprocess.run([SIZEGUARD, "backtest", "--candles", str(candles), "--strategy", "ema-cross",
                    "--fast", "5", "--slow", "20", "--tp-r", "2", "--report", str(out),
                    "--montecarlo", "500", "--no-progress", "--json"],
                   capture_output=True, text=True, env=clean_env(), check=True, timeout=120)
    return out


def test_report_shows_every_policy_offline(page: Any, report: Path, tmp_path: Path) -> None:
    from sizeguard.config.loader import PRESETS

    off = Offline(page, "file:")
    page.goto(report.resolve().as_uri())
    page.wait_for_selector("#montecarlo .main-svg", timeout=30_000)
    for div in ("equity", "risk", "equity-panels", "drawdown", "per-trade", "skips",
                "montecarlo"):
        assert page.locator(f"#{div} .main-svg").count() >= 1, div
    legend = page.locator("#equity .legendtext").all_text_contents()
    panels = page.locator("#equity-panels .gtitle, #equity-panels .annotation-text"
                          ).all_text_contents()
    fans = " ".join(page.locator("#montecarlo .annotation-text").all_text_contents())
    per_trade = " ".join(page.locator("#per-trade .annotation-text").all_text_contents())
    for p in PRESETS:
        assert any(t.startswith(p) for t in legend), (p, legend)  # on the equity chart
        assert any(t.startswith(p) for t in panels), (p, panels)  # its own equity panel
        name = rf"{re.escape(p)}(@\S+)?"  # kraken-micro@BTC/USD trades its own market
        assert re.search(name + ": risk per trade", per_trade), (p, per_trade)
        assert re.search(name + ": leverage per trade", per_trade), (p, per_trade)
        assert re.search(name + r": P\(ruin\)", fans), (p, fans)
    # the policies are told apart by dash style as well as colour
    dashes = page.eval_on_selector_all(
        "#equity .scatterlayer .trace .js-line",
        "els => els.map(e => e.style.strokeDasharray || 'solid')")
    assert len(set(dashes)) >= min(5, len(PRESETS)), dashes
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    _save(shot, "report.png")
    # the README's picture: equity on both scales and the risk per trade, from this report
    top, bottom = page.locator("#equity").bounding_box(), page.locator("#risk").bounding_box()
    assert top is not None and bottom is not None
    page.screenshot(path=str(tmp_path / "readme.png"), full_page=True, clip={
        "x": 0, "y": top["y"], "width": top["x"] + top["width"] + 8,
        "height": bottom["y"] + bottom["height"] - top["y"]})
    _save(tmp_path / "readme.png", "backtest-btc-1h.png")
    assert not off.outside, off.outside
