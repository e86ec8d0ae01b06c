"""Settings of the HTTP service: ``sizeguard serve`` options, each also from the environment
(``SIZEGUARD_HOST``, ``SIZEGUARD_PORT``, ``SIZEGUARD_WORKERS``, ``SIZEGUARD_MARKETS``,
``SIZEGUARD_STORE``, ...). Command-line options win over the environment.

``SIZEGUARD_PRESET`` and ``SIZEGUARD_CONFIG`` choose the service's policy exactly as they do for
the CLI (the policy layers of :mod:`sizeguard.config.settings`); its limits are the
account-wide limits every bot shares.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIZEGUARD_", case_sensitive=False,
                                      extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    markets: str | None = None  # a market snapshot / ccxt markets JSON (default: built-in)
    tiers: str | None = None  # ccxt leverage tiers JSON
    store: str | None = None  # postgresql://... or sqlite:///PATH (default: the user data dir)
    account: str = "default"  # the account every bot of this service trades
    exchange: str = "paper"  # venue name; with live: the ccxt exchange id
    live: bool = False  # /v1/orders on the real exchange (keys: SIZEGUARD_API_KEY/SECRET)
    hedge_mode: bool = False
    preset: str | None = None  # the service policy (as for the CLI)
    config: str | None = None
    reservation_ttl: float = Field(default=300.0, gt=0)  # seconds a reservation is held by default
    auth_cache_ttl: float = Field(default=2.0, ge=0)  # seconds a bot row is cached per process
    max_batch: int = Field(default=64, ge=1, le=1024)  # decisions per group commit
    # seconds the group commit waits for more decisions before a small batch while decisions
    # keep coming (never for a decision alone after a quiet moment); 0: never waits
    batch_delay: float = Field(default=0.0005, ge=0, le=0.05)
    threads: int = Field(default=16, ge=1, le=256)  # worker threads per process (store connections)
    log_level: str = "info"
    access_log: bool = True
    retry_after: int = Field(default=5, ge=1)  # seconds advised to clients on 503
    # request bounds (the guard): a larger body is 413 before it is parsed; a body (or the
    # headers) not arriving in time is 408 (or a closed connection); idle keep-alive closes
    max_body: int = Field(default=65_536, ge=1_024, le=16 * 1024 * 1024)  # bytes
    body_timeout: float = Field(default=10.0, gt=0, le=600)  # seconds for the whole body
    header_timeout: float = Field(default=10.0, gt=0, le=600)  # seconds for a request's headers
    keep_alive: int = Field(default=5, ge=1, le=600)  # seconds an idle connection stays open
    # the store: each statement's (and connection's) time limit, seconds; a hung database
    # answers 503 after it instead of holding a thread
    store_timeout: float = Field(default=5.0, gt=0, le=600)
    # retention: journal rows (and released, expired, filled reservations) older than
    # retention_days, idempotency answers older than idempotency_hours, pruned every
    # prune_interval seconds (0: never; `sizeguard store prune` does it by hand)
    retention_days: float = Field(default=90.0, gt=0, le=36_500)
    idempotency_hours: float = Field(default=24.0, gt=0, le=876_000)
    prune_interval: float = Field(default=3600.0, ge=0, le=30 * 86_400)
    # seconds an Idempotency-Key claim lasts unanswered: a dead process's request is taken
    # over (resumed under the same client order id) after it
    idempotency_lease: float = Field(default=10.0, gt=0, le=3600)
    # a bot's fill must be within this fraction of its decided price, and its close within
    # this fraction of the last price the service knows for the symbol
    fill_price_band: float = Field(default=0.05, gt=0, le=1)
    close_price_band: float = Field(default=0.25, gt=0, le=10)
    # -- console and alerts (sizeguard.http.ui, sizeguard.http.alerts) --
    notify: str | None = None  # Apprise URLs, space or comma separated: where alerts go
    notify_dedup: float = Field(default=600.0, ge=0, le=86400 * 7)  # same alert again after s
    notify_per_minute: int = Field(default=20, ge=1, le=10000)  # alerts sent in any 60 s
    notify_probe: float = Field(default=15.0, ge=0, le=3600)  # s between store checks (0: off)
    session_secret: str | None = None  # signs console sessions (serve sets one for its workers)
    session_ttl: float = Field(default=8 * 3600.0, gt=0, le=30 * 86400)  # console sign-in, s
