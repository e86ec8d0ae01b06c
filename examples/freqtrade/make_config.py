"""The freqtrade config of the example backtest (printed as JSON): Binance USD-M futures,
isolated margin, 10,000 USDT, the BTC and XRP perpetuals on 5m candles, order-book pricing
(Binance futures needs it), and the sizeguard policy of SizeguardTrend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
config = {
    "trading_mode": "futures",
    "margin_mode": "isolated",
    "max_open_trades": 3,
    "stake_currency": "USDT",
    "stake_amount": "unlimited",
    "tradable_balance_ratio": 1.0,
    "dry_run": True,
    "dry_run_wallet": 10_000,
    "timeframe": "5m",
    "dataformat_ohlcv": "feather",
    "user_data_dir": str(out / "user_data"),
    "exchange": {"name": "binance", "key": "", "secret": "",
                 "pair_whitelist": ["BTC/USDT:USDT", "XRP/USDT:USDT"],
                 "ccxt_config": {}, "ccxt_async_config": {}},
    "pairlists": [{"method": "StaticPairList"}],
    "entry_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
    "exit_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
    "internals": {"process_throttle_secs": 5},
    # sizeguard: risk 1% of equity to a 1.5 x ATR stop (ai-atr-risk), at most 2 positions,
    # 20x at most, a position at most 15,000 notional, all of them at most 40,000 and 4 x equity.
    "sizeguard": {
        "preset": "ai-atr-risk",
        "overrides": {"limits.max_positions": 2, "limits.max_notional": 15_000,
                      "limits.max_gross_exposure": 40_000, "limits.max_equity_leverage": 4,
                      "leverage.value": 20, "leverage.max": 20},
    },
}
print(json.dumps(config, indent=2))
