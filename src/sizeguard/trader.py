"""Compatibility: the trader lives in :mod:`sizeguard.app.trader` (the application layer)."""

from sizeguard.app.trader import Trader, TradeResult, new_client_order_id

__all__ = ["TradeResult", "Trader", "new_client_order_id"]
