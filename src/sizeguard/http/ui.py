"""The operator's console (``/ui``) and the offline API docs (``/docs``).

Every asset is served from the package (``sizeguard/http/static``): no CDN, so both pages work
on a host without internet. Swagger UI is vendored from the npm package ``swagger-ui-dist``
(Apache-2.0; see ``static/swagger-ui/SOURCE.md``).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/ui/static"


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


def mount_static(app: FastAPI) -> None:
    app.mount(STATIC, StaticFiles(packages=[("sizeguard.http", "static")]), name="ui-static")


def mount_console(app: FastAPI) -> None:
    """Register the console's routes and assets on the service's application."""
    mount_static(app)
    mount_docs(app)
