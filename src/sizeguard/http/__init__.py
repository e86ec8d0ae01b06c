"""The HTTP service: one risk gate for many bots (``sizeguard serve``).

:func:`sizeguard.http.app.create_app` builds the FastAPI application from injected
dependencies (settings, store, market source, exchange factory); ``app_from_env`` builds it
from the ``SIZEGUARD_*`` environment, which is how ``sizeguard serve`` starts its workers.
"""
