#!/usr/bin/env bash
# A real, offline `freqtrade backtesting` of the example strategies, futures with leverage:
#   examples/freqtrade/backtest.sh OUTDIR [STRATEGY ...]   (default: SizeguardTrend PlainTrend)
# Sets up its own environment (setup.sh), converts the BTC perpetual and XRP perpetual candles
# of the shared data into freqtrade's format under OUTDIR/data, injects the real Binance USD-M
# markets for the offline run (launcher.py) and writes into OUTDIR:
#   <STRATEGY>/         freqtrade's trade export (backtest-result-*.zip + .meta.json)
#   <STRATEGY>/decisions.jsonl, events.jsonl   the mixin's decision log (SizeguardTrend)
#   config.json, <STRATEGY>/backtest.log, comparison.md (the table of docs/freqtrade.md)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [STRATEGY ...]" >&2; exit 2; }
mkdir -p "$1"; OUT=$(cd "$1" && pwd); shift
STRATEGIES=("$@"); [ ${#STRATEGIES[@]} -gt 0 ] || STRATEGIES=(SizeguardTrend PlainTrend)
DATA=${SIZEGUARD_SHARED_DATA:-$ROOT/../shared/data}
VENV=${FREQTRADE_VENV:-$ROOT/.venv-freqtrade}
[ -f "$DATA/markets/binanceusdm.json" ] || { echo "no shared data at $DATA" >&2; exit 1; }
"$HERE/setup.sh"
PY="$VENV/bin/python"

"$PY" "$HERE/convert_data.py" "$OUT/data/binance" \
  "$DATA/ohlcv/unattributed/BTC-PERP-1m.csv=BTC/USDT:USDT=5m" \
  "$DATA/ohlcv/freqtrade-testdata/XRP_USDT_USDT-5m-futures.csv=XRP/USDT:USDT=5m" >/dev/null
"$PY" "$HERE/make_config.py" "$OUT" > "$OUT/config.json"
[ -d "$OUT/user_data/strategies" ] || "$VENV/bin/freqtrade" create-userdir --userdir "$OUT/user_data" >/dev/null

for S in "${STRATEGIES[@]}"; do
  mkdir -p "$OUT/$S"
  rm -f "$OUT/$S"/decisions.jsonl "$OUT/$S"/events.jsonl "$OUT/$S"/backtest-result-*
  SIZEGUARD_DECISION_LOG="$OUT/$S/decisions.jsonl" \
  "$PY" "$HERE/launcher.py" "$DATA/markets/binanceusdm.json" freqtrade backtesting \
    --config "$OUT/config.json" --userdir "$OUT/user_data" --datadir "$OUT/data/binance" \
    --strategy-path "$HERE/strategies" --strategy "$S" --cache none --export trades \
    --backtest-directory "$OUT/$S" > "$OUT/$S/backtest.log" 2>&1 \
    || { tail -40 "$OUT/$S/backtest.log" >&2; exit 1; }
  ls "$OUT/$S"/backtest-result-*.zip >/dev/null
  echo "$S: $(ls "$OUT/$S"/backtest-result-*.zip)"
done
"$PY" "$HERE/compare.py" "$OUT" "${STRATEGIES[@]}" | tee "$OUT/comparison.md"
