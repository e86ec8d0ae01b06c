"""``/docs`` works without internet: the page names no other host, and every script, style and
icon it loads is served by the service itself from the package (Swagger UI vendored from
``swagger-ui-dist``). The browser test (tests/test_browser.py) checks it renders the operations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sizeguard.adapters.market_snapshot import FileMarketSource
from sizeguard.adapters.sql_store import open_store
from sizeguard.http.app import create_app
from sizeguard.http.settings import ServeSettings

pytestmark = pytest.mark.timeout(60)


def test_docs_loads_only_assets_served_by_the_service(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    app = create_app(ServeSettings(), store=store, markets=FileMarketSource(None))
    with TestClient(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        # no CDN: not one absolute URL in the page (the old page loaded jsdelivr)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), html
        assert "cdn" not in html.lower()
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        kinds = {a.rsplit(".", 1)[-1] for a in assets}
        assert {"js", "css", "png"} <= kinds, assets
        for asset in assets:
            r = client.get(asset)
            assert r.status_code == 200, asset
            assert len(r.content) > 500, asset
        js = client.get("/ui/static/swagger-ui/swagger-ui-bundle.js")
        assert "SwaggerUIBundle" in js.text
        assert js.headers["content-type"].split(";")[0] in ("text/javascript",
                                                              "application/javascript")
        # the schema the page renders is the service's own
        assert "/v1/decisions" in client.get("/openapi.json").json()["paths"]
        # the vendored files carry their licence
        assert "Apache License" in client.get("/ui/static/swagger-ui/LICENSE").text
    store.close()
