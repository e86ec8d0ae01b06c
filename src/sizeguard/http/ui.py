"""The operator's console (``/ui``) and the offline API docs (``/docs``).

Every asset is served from the package (``sizeguard/http/static``): no CDN, so both pages work
on a host without internet. Swagger UI is vendored from the npm package ``swagger-ui-dist``
(Apache-2.0; see ``static/swagger-ui/SOURCE.md``); the console is plain HTML, CSS and JS.

Sign-in: the account admin's token (``sizeguard admin token NAME``) sees and runs the whole
account; a bot's token gives a read-only view of that bot. The session is a signed cookie (HttpOnly,
SameSite=Strict, ``Path=/ui``); every state-changing request must also carry the session's CSRF
value in ``X-CSRF-Token`` (double submit: the value is in a second, script-readable cookie) and,
when the browser sends one, an ``Origin`` of this host. The console's JSON endpoints live under
``/ui/api`` and are not part of the bots' API (not in the OpenAPI schema).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import math
import secrets
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sizeguard.adapters.bots import Bot
from sizeguard.adapters.notify import AppriseNotifier, Throttled, split_urls
from sizeguard.config.loader import preset_names
from sizeguard.config.settings import env_from_os, resolve
from sizeguard.core.account import Account
from sizeguard.core.decide import decide
from sizeguard.core.intent import Intent
from sizeguard.core.limits import gate as gates
from sizeguard.core.policy import Policy
from sizeguard.http.alerts import Alerter
from sizeguard.http.problems import Problem
from sizeguard.http.service import Gate
from sizeguard.ports import Notifier

STATIC = "/ui/static"
SESSION_COOKIE = "sg_session"
CSRF_COOKIE = "sg_csrf"
CSRF_HEADER = "X-CSRF-Token"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


# ----------------------------------------------------------------------------- docs


def mount_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI over ``/openapi.json`` with its script and style from the package.
    (Create the app with ``docs_url=None`` so FastAPI's CDN page is not registered too.)"""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            swagger_js_url=f"{STATIC}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/swagger-ui/favicon-32x32.png")


# ----------------------------------------------------------------------------- sessions


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    role: Literal["admin", "bot"]
    bot_id: str | None
    csrf: str
    expires: float
    token_tag: str  # the first hex digits of the token's digest: a new token ends old sessions

    @property
    def admin(self) -> bool:
        return self.role == "admin"


class Sessions:
    """Signed, expiring session cookies. The key comes from ``session_secret`` (``sizeguard
    serve`` makes one for all its workers), else it is random per process."""

    def __init__(self, secret: str | None, ttl: float) -> None:
        seed = secret or secrets.token_hex(32)
        self._key = hashlib.sha256(b"sizeguard-console\0" + seed.encode()).digest()
        self.ttl = ttl

    def issue(self, role: Literal["admin", "bot"], bot_id: str | None, token_tag: str) -> tuple[
            str, Session]:
        s = Session(role, bot_id, secrets.token_urlsafe(24), time.time() + self.ttl, token_tag)
        raw = base64.urlsafe_b64encode(json.dumps(
            [s.role, s.bot_id, s.csrf, s.expires, s.token_tag]).encode()).decode().rstrip("=")
        return f"{raw}.{self._sign(raw)}", s

    def _sign(self, raw: str) -> str:
        return hmac.new(self._key, raw.encode(), hashlib.sha256).hexdigest()

    def read(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > 1024 or "." not in cookie:
            return None
        raw, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(self._sign(raw), sig):
            return None
        try:
            role, bot_id, csrf, expires, tag = json.loads(
                base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, TypeError):
            return None
        if role not in ("admin", "bot") or not isinstance(expires, int | float) or \
                expires < time.time():
            return None
        return Session(role, bot_id, str(csrf), float(expires), str(tag))


# ----------------------------------------------------------------------------- bodies


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=300)


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reservation_id: str = Field(min_length=1, max_length=64)


class Halt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, min_length=1, max_length=200)  # None: resume


class WhatIf(BaseModel):
    """An intent to size, as ``sizeguard size`` takes it."""

    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(min_length=1, max_length=64)
    side: Literal["long", "short"]
    price: float = Field(gt=0)
    equity: float | None = Field(default=None, gt=0)
    available: float | None = Field(default=None, ge=0)
    stop: float | None = Field(default=None, gt=0)
    stop_pct: float | None = Field(default=None, gt=0)
    atr: float | None = Field(default=None, gt=0)
    atr_mult: float | None = Field(default=None, gt=0)
    stop_roe: float | None = Field(default=None, gt=0)
    confidence: float | None = Field(default=None, ge=0, le=1)
    regime: str | None = Field(default=None, max_length=32)
    volatility: str | None = Field(default=None, max_length=32)
    leverage: float | None = Field(default=None, gt=0)
    preset: str | None = Field(default=None, max_length=64)
    on_account: bool = False  # on the account as it stands (positions, peak, ...) instead of equity


# ----------------------------------------------------------------------------- views


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def halts(account: Account, policy: Policy, day: str) -> list[dict[str, Any]]:
    """The account-wide halts in force: the admin's, then the core's own gates, each checked
    alone."""
    probe = Intent(symbol="\0probe", side="long", price=1.0, stop_pct=1.0)
    out: list[dict[str, Any]] = []
    if account.halted is not None:
        out.append({"reason": "HALTED_BY_ADMIN", "note": account.halted, "lifts_at": None,
                    "lifts": "when the admin resumes trading (here, POST /v1/admin/resume or "
                             "sizeguard admin resume)"})
        account = dataclasses.replace(account, halted=None)
    lim = policy.limits
    daily = dataclasses.replace(lim, max_drawdown=0.0, max_positions=0, cooldown=0.0)
    code, note = gates(probe, account, daily)
    if code is not None:
        nxt = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
        out.append({"reason": str(code), "note": note, "lifts_at": nxt.timestamp(),
                    "lifts": f"at {nxt:%Y-%m-%d %H:%M} UTC (a new trading day)"})
    dd = dataclasses.replace(lim, daily_loss=0.0, max_positions=0, cooldown=0.0)
    code, note = gates(probe, account, dd)
    if code is not None:
        peak = account.peak_equity or account.equity
        back = peak * (1 - lim.max_drawdown)
        out.append({"reason": str(code), "note": note, "lifts_at": None,
                    "lifts": f"when equity is back above {back:,.2f} (drawdown under "
                             f"{lim.max_drawdown:.0%} of the peak {peak:,.2f}), or the admin "
                             "resets equity"})
    return out


def caps(rs: Any, policy: Policy, account: Account | None = None) -> list[dict[str, Any]]:
    """Exposure against each account-wide cap: used, cap and their ratio (and, with a per-symbol
    cap, each symbol's notional against it)."""
    lim = policy.limits
    eq = rs.equity if rs.equity > 0 else float("nan")
    rows = [
        ("open positions + reservations", rs.open_positions + rs.live_reservations,
         lim.max_positions or math.inf),
        ("gross exposure", rs.gross_exposure, lim.max_gross_exposure),
        ("equity leverage (gross / equity)", rs.gross_exposure / eq, lim.max_equity_leverage),
        ("margin utilisation (margin / equity)", rs.margin_in_use / eq,
         lim.max_margin_utilisation),
        ("drawdown from peak", (1 - rs.equity / rs.peak_equity) if rs.peak_equity > 0 else 0.0,
         lim.max_drawdown or math.inf),
        ("realised loss today / day start",
         max(0.0, -rs.realised_pnl_today) / (rs.equity - rs.realised_pnl_today)
         if rs.equity - rs.realised_pnl_today > 0 else 0.0, lim.daily_loss or math.inf),
    ]
    if account is not None and math.isfinite(lim.max_symbol_notional):
        by_symbol: dict[str, float] = {}
        for p in account.positions:
            by_symbol[p.symbol] = by_symbol.get(p.symbol, 0.0) + abs(p.notional)
        rows += [(f"{sym} notional", n, lim.max_symbol_notional)
                 for sym, n in sorted(by_symbol.items())]
    return [{"name": n, "used": _finite(float(u)), "cap": _finite(float(c)),
             "ratio": _finite(float(u) / float(c)) if math.isfinite(c) and c > 0 else None}
            for n, u, c in rows]


class Console:
    """What the console's endpoints read and do, over the service's :class:`Gate`."""

    def __init__(self, gate: Gate, alerter: Alerter) -> None:
        self.gate = gate
        self.alerter = alerter
        s = gate.settings
        self.sessions = Sessions(s.session_secret, s.session_ttl)

    # -- who is asking ----------------------------------------------------------------------
    def sign_in(self, token: str) -> tuple[str, Session] | None:
        """A session for the account's admin (``sizeguard admin token``) or one of its bots."""
        bot = self.gate.registry.authenticate(token)
        if bot is None or bot.account_id != self.gate.account_id:
            return None
        if bot.is_admin:  # the admin's token made with `sizeguard admin token`
            return self.sessions.issue("admin", bot.id, bot.token_hash[:16])
        return self.sessions.issue("bot", bot.id, bot.token_hash[:16])

    def session(self, request: Request) -> tuple[Session, Bot | None]:
        s = self.sessions.read(request.cookies.get(SESSION_COOKIE))
        if s is None:
            raise Problem(401, "sign in", "sign in to the console with the admin or a bot token")
        who = self.gate.registry.get(s.bot_id or "")
        # the row must still be there with the same token and role: removing a bot or an
        # admin, or replacing its token, ends its sessions
        if who is None or who.token_hash[:16] != s.token_tag or who.is_admin != s.admin or \
                who.account_id != self.gate.account_id:
            raise Problem(401, "sign in", "the session has ended (removed, or a new token); "
                          "sign in again")
        return s, None if s.admin else who

    def admin(self, s: Session) -> Bot:
        """The admin acting in an admin session."""
        who = self.gate.registry.get(s.bot_id or "")
        if who is None or not who.is_admin:
            raise Problem(401, "sign in", "the admin was removed; sign in again")
        return who

    @staticmethod
    def check_csrf(request: Request, s: Session) -> None:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, s.csrf):
            raise Problem(403, "CSRF check failed", f"send the {CSRF_HEADER} header the console "
                          "sets (its value is in the sg_csrf cookie)")
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise Problem(403, "cross-origin request", "the Origin is not this console")

    # -- reads ----------------------------------------------------------------------------
    def overview(self, s: Session, bot: Bot | None) -> dict[str, Any]:
        g, store = self.gate, self.gate.store
        out: dict[str, Any] = {
            "role": s.role, "bot": bot.to_dict() if bot else None, "account_id": g.account_id,
            "policy": g.policy.name, "presets": self.presets(s.admin),
            "exchange": g.settings.exchange,
            "live": g.settings.live, "now": time.time()}
        registry = g.registry
        everyone = registry.bots(g.account_id)
        names = {b.id: b.name for b in everyone}
        if store.has_account(g.account_id):
            rs = store.risk_state(g.account_id)
            account = store.account(g.account_id)
            out["account"] = {**rs.to_dict(), "drawdown": account.drawdown,
                              "halts": halts(account, g.policy, rs.day),
                              "caps": caps(rs, g.policy, account)}
        else:
            out["account"] = None
        bots = [bot] if bot is not None else [b for b in everyone if not b.is_admin]
        rows = []
        for b in bots:
            own = registry.own_positions(b)
            budget = g.budget(b)
            eq = out["account"]["equity"] if out["account"] else None
            rows.append({**b.to_dict(), "unlimited": budget.unlimited,
                         "equity_share": eq * b.budget if eq is not None else None,
                         "slots": budget.max_positions,
                         "slots_used": len(own), "margin_in_use": sum(p.margin for p in own),
                         "gross_exposure": sum(abs(p.notional) for p in own)})
        out["bots"] = rows

        def owner(cid: str | None) -> str | None:
            who = registry.owner(cid)
            return names.get(who, who) if who else None
        positions = store.positions(g.account_id)
        reservations = store.reservations(g.account_id)
        pos = [{**p.to_dict(), "bot": owner(p.client_order_id)} for p in positions]
        res = [{**r.to_dict(), "bot": owner(r.client_order_id)} for r in reservations]
        if bot is not None:
            pos = [p for p in pos if p["bot"] == bot.name]
            res = [r for r in res if r["bot"] == bot.name]
        out["positions"], out["reservations"] = pos, res
        out["alerts"] = [a.to_dict() for a in reversed(self.alerter.recent)] if s.admin else []
        out["store_down_since"] = self.alerter.store_down_since
        return out

    def markets(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self.gate.markets.markets().values()]

    def feed(self, bot: Bot | None, after: int, last: int) -> dict[str, Any]:
        if bot is None:
            entries = self.gate.store.journal(self.gate.account_id, last=last)
        else:
            entries = self.gate.registry.journal(bot, last=last)
        names = {b.id: b.name for b in self.gate.registry.bots(self.gate.account_id)}
        out = []
        for e in entries:
            if e.id > after:
                who = self.gate.registry.owner(e.client_order_id) if e.client_order_id else None
                out.append({**e.to_dict(), "bot": names.get(who, who) if who else None})
        return {"entries": out}

    def presets(self, admin: bool) -> list[str]:
        """The policies the what-if form may name: the service's own, then every shipped preset
        for the admin, the admin's allow-list for a bot."""
        own = self.gate.settings.preset
        names = preset_names() if admin else sorted(self.gate.allowed_presets())
        return ["(service policy)", *(n for n in names if n != own or admin)]

    # -- what-if ---------------------------------------------------------------------------
    def what_if(self, body: WhatIf, admin: bool = True) -> dict[str, Any]:
        """The decision ``sizeguard size --json`` gives for the same intent, preset and equity;
        with ``on_account``, on the account as it stands (nothing journaled or reserved)."""
        g = self.gate
        if body.preset in (None, "", "(service policy)"):
            resolved = resolve(g.settings.preset, g.settings.config, (), env_from_os())
            policy = g.policy
        elif body.preset in self.presets(admin):
            resolved = resolve(body.preset, None, (), env_from_os())
            policy = resolved.policy
        else:
            raise Problem(422, "unknown preset", f"preset {body.preset!r} is not one of "
                          f"{', '.join(self.presets(admin)[1:]) or 'none: the service policy'}",
                          errors=[{"field": "preset", "reason": "unknown", "value": body.preset}])
        market = g.market(body.symbol)
        intent = Intent(symbol=body.symbol, side=body.side, price=body.price, stop=body.stop,
                        stop_pct=body.stop_pct, atr=body.atr, atr_mult=body.atr_mult,
                        stop_roe=body.stop_roe, confidence=body.confidence, regime=body.regime,
                        volatility=body.volatility, leverage=body.leverage)
        if body.on_account:
            if not g.store.has_account(g.account_id):
                raise Problem(404, "no account yet", "the account opens with the first decision")
            account = g.store.account(g.account_id)
            if body.available is not None:
                account = dataclasses.replace(account, available=body.available)
        else:
            if body.equity is None:
                raise Problem(422, "equity needed", "give equity, or size on the account",
                              errors=[{"field": "equity", "reason": "required"}])
            account = Account(equity=body.equity, available=body.available)
        # the keys `size --json` adds: which layers and environment keys set the policy
        return {**decide(intent, account, market, policy).to_dict(),
                "policy_layers": list(resolved.layers), "environment": resolved.from_env()}

    # -- admin ---------------------------------------------------------------------------
    def release(self, s: Session, reservation_id: str) -> dict[str, Any]:
        return self.gate.admin_release(self.admin(s), reservation_id)[1]

    def halt(self, s: Session, reason: str | None) -> dict[str, Any]:
        return self.gate.admin_halt(self.admin(s), reason)[1]


# ----------------------------------------------------------------------------- wiring


def make_notifier(settings: Any) -> Notifier | None:
    urls = split_urls(settings.notify)
    if not urls:
        return None
    return Throttled(AppriseNotifier(urls), dedup=settings.notify_dedup,
                     per_minute=settings.notify_per_minute)


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _page(name: str) -> HTMLResponse:
    text = resources.files("sizeguard.http").joinpath(f"static/console/{name}").read_text("utf-8")
    return HTMLResponse(text, headers=PAGE_HEADERS)


def mount_console(app: FastAPI, notifier: Notifier | None = None) -> Console:
    """Register ``/docs``, ``/ui`` and its assets on the service's application, and the alerts
    (through ``notifier``, else the Apprise URLs of ``SIZEGUARD_NOTIFY``)."""
    gate: Gate = app.state.gate
    alerter = Alerter(notifier if notifier is not None else make_notifier(gate.settings),
                      gate.account_id)
    alerter.install(gate)
    if alerter.notifier is not None and gate.settings.notify_probe > 0:
        alerter.watch_store(gate.health, gate.settings.notify_probe)
    console = Console(gate, alerter)
    app.state.console = console
    app.mount(STATIC, StaticFiles(packages=[("sizeguard.http", "static")]), name="ui-static")
    mount_docs(app)
    _session_routes(app, console)
    _read_routes(app, console)
    _write_routes(app, console)
    return console


def _session_routes(app: FastAPI, console: Console) -> None:
    def cookies(resp: Response, value: str, s: Session) -> None:
        secure = False  # loopback HTTP by default; behind TLS the proxy should add Secure
        max_age = int(console.sessions.ttl)
        resp.set_cookie(SESSION_COOKIE, value, max_age=max_age, path="/ui", httponly=True,
                        samesite="strict", secure=secure)
        resp.set_cookie(CSRF_COOKIE, s.csrf, max_age=max_age, path="/ui", httponly=False,
                        samesite="strict", secure=secure)

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    async def ui_page() -> HTMLResponse:
        return _page("index.html")

    @app.post("/ui/api/login", include_in_schema=False)
    async def ui_login(body: Login) -> Response:
        got = await run_in_threadpool(console.sign_in, body.token)
        if got is None:
            raise Problem(401, "sign-in refused", "not the admin token nor a bot token of this "
                          "account")
        value, s = got
        resp = _json({"role": s.role, "bot_id": s.bot_id, "expires": s.expires})
        cookies(resp, value, s)
        return resp

    @app.post("/ui/api/logout", include_in_schema=False)
    async def ui_logout(request: Request) -> Response:
        s, _ = await run_in_threadpool(console.session, request)
        console.check_csrf(request, s)
        resp = _json({"signed_out": True})
        resp.delete_cookie(SESSION_COOKIE, path="/ui")
        resp.delete_cookie(CSRF_COOKIE, path="/ui")
        return resp


def _read_routes(app: FastAPI, console: Console) -> None:
    @app.get("/ui/api/overview", include_in_schema=False)
    async def ui_overview(request: Request) -> Response:
        def read() -> dict[str, Any]:
            s, bot = console.session(request)
            return console.overview(s, bot)
        return _json(await run_in_threadpool(read))

    @app.get("/ui/api/markets", include_in_schema=False)
    async def ui_markets(request: Request) -> Response:
        await run_in_threadpool(console.session, request)
        return _json(await run_in_threadpool(console.markets))

    @app.get("/ui/api/feed", include_in_schema=False)
    async def ui_feed(request: Request, after: Annotated[int, Query(ge=0)] = 0,
                      last: Annotated[int, Query(ge=1, le=500)] = 50) -> Response:
        def read() -> dict[str, Any]:
            _, bot = console.session(request)
            return console.feed(bot, after, last)
        return _json(await run_in_threadpool(read))


def _write_routes(app: FastAPI, console: Console) -> None:
    async def admin_session(request: Request) -> Session:
        s, _ = await run_in_threadpool(console.session, request)
        console.check_csrf(request, s)
        if not s.admin:
            raise Problem(403, "admin only", "a bot's console is read-only")
        return s

    @app.post("/ui/api/whatif", include_in_schema=False)
    async def ui_what_if(request: Request, body: WhatIf) -> Response:
        s, _ = await run_in_threadpool(console.session, request)
        console.check_csrf(request, s)
        return _json(await run_in_threadpool(console.what_if, body, s.admin))

    @app.post("/ui/api/release", include_in_schema=False)
    async def ui_release(request: Request, body: Release) -> Response:
        s = await admin_session(request)
        return _json(await run_in_threadpool(console.release, s, body.reservation_id))

    @app.post("/ui/api/halt", include_in_schema=False)
    async def ui_halt(request: Request, body: Halt) -> Response:
        """Halt trading with a reason, or (no reason) resume."""
        s = await admin_session(request)
        return _json(await run_in_threadpool(console.halt, s, body.reason))
