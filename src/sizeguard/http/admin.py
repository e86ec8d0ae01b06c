"""The account admin's endpoints (``/v1/admin/...``): account-wide state no bot may write.

An admin token is made with the CLI (``sizeguard admin token NAME``); it administers the
account (equity of a paper account, halt and resume, releasing any reservation, the preset
allow-list, bots' slots, a sync with the exchange) and never trades. Bot tokens get 403 here,
and admin tokens get 403 on the trading endpoints.
"""


from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sizeguard.adapters.bots import Bot
from sizeguard.http.models import Money
from sizeguard.http.problems import PROBLEM, Problem, dumps
from sizeguard.http.service import Answer, Gate


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EquityRequest(_Body):
    equity: Money = Field(description="The paper account's equity (quote).")
    peak: Money | None = Field(None, description="Its peak equity (default: the higher of the "
                               "stored peak and the new equity).")
    quote: Annotated[str, Field(min_length=1, max_length=16)] | None = Field(
        None, description="Quote currency when this opens the account (default USDT).")


class HaltRequest(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class PresetsRequest(_Body):
    presets: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        description="Presets a request may name; null: only the service's own policy.",
        max_length=64)


class SlotsRequest(_Body):
    max_positions: int = Field(ge=0, le=10_000, description="The bot's own slots; 0: its "
                               "budget's share of the account's slots.")


def install_admin(app: FastAPI, gate: Gate) -> None:
    """Add the admin routes to ``app``."""
    registry = gate.registry
    bearer = HTTPBearer(auto_error=False, description="The account admin's token "
                        "(`sizeguard admin token NAME`).")

    async def current_admin(
            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Bot:
        if creds is None or creds.scheme.lower() != "bearer":
            raise Problem(401, "unauthorized", "send Authorization: Bearer <admin token>",
                          headers={"WWW-Authenticate": "Bearer"})
        known, who = registry.cached(creds.credentials)
        if not known:
            who = await run_in_threadpool(registry.authenticate, creds.credentials)
        if who is None:
            raise Problem(401, "unauthorized", "the token is not valid",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not who.is_admin or who.account_id != gate.account_id:
            raise Problem(403, "admin only", "this endpoint needs the account admin's token")
        return who

    Admin = Annotated[Bot, Depends(current_admin)]  # noqa: N806 - a type alias
    problems: dict[int | str, dict[str, Any]] = {
        s: {"content": {PROBLEM: {}}, "description": d}
        for s, d in ((401, "No token, or a wrong one"), (403, "Not the account's admin"),
                     (404, "Not found"), (409, "Not allowed in this state"),
                     (422, "Invalid field"))}

    async def call(fn: Callable[[], Answer]) -> Response:
        status, body, headers = await run_in_threadpool(fn)
        return Response(dumps(body), status_code=status, headers=headers,
                        media_type="application/json")

    @app.post("/v1/admin/equity", tags=["admin"], responses=problems)
    async def set_equity(body: EquityRequest, admin: Admin) -> Response:
        """Set the paper account's equity (opens the account when it has none); a live
        account's comes from the exchange: sync it."""
        data = body.model_dump()
        return await call(lambda: gate.admin_equity(admin, data))

    @app.post("/v1/admin/halt", tags=["admin"], responses=problems)
    async def halt(body: HaltRequest, admin: Admin) -> Response:
        """Halt trading: every decision skips with HALTED_BY_ADMIN until resumed."""
        return await call(lambda: gate.admin_halt(admin, body.reason))

    @app.post("/v1/admin/resume", tags=["admin"], responses=problems)
    async def resume(admin: Admin) -> Response:
        """Resume trading after a halt."""
        return await call(lambda: gate.admin_halt(admin, None))

    @app.delete("/v1/admin/reservations/{reservation_id}", tags=["admin"], responses=problems)
    async def release(reservation_id: Annotated[str, Path(min_length=1, max_length=64)],
                      admin: Admin) -> Response:
        """Release any bot's held reservation."""
        return await call(lambda: gate.admin_release(admin, reservation_id))

    @app.put("/v1/admin/presets", tags=["admin"], responses=problems)
    async def presets(body: PresetsRequest, admin: Admin) -> Response:
        """The presets a request may name (the service's limits and leverage cap still bind)."""
        return await call(lambda: gate.admin_presets(admin, body.presets))

    @app.put("/v1/admin/bots/{bot}/slots", tags=["admin"], responses=problems)
    async def slots(bot: Annotated[str, Path(min_length=1, max_length=64)], body: SlotsRequest,
                    admin: Admin) -> Response:
        """A bot's own slot count (0: its budget's share of the account's slots)."""
        return await call(lambda: gate.admin_slots(admin, bot, body.max_positions))

    @app.post("/v1/admin/sync", tags=["admin"], responses=problems)
    async def sync(admin: Admin) -> Response:
        """Reconcile with the exchange: its balance becomes the equity, its positions count."""
        return await call(lambda: gate.admin_sync(admin))

    @app.get("/v1/admin/state", tags=["admin"], responses=problems)
    async def state(admin: Admin) -> Response:
        """The account's risk state and every bot with its budget and slots."""
        return await call(lambda: gate.admin_state(admin))
