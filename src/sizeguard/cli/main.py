"""``sizeguard``: the entry point. It only assembles the commands: each command module registers
its commands on :data:`sizeguard.cli.app.app` when imported here, in the order of ``--help``.

Exit codes: 0 done (a decision was made, accepted or skipped), 1 findings or a failure that is not
the user's input (an exchange, the store, an unexpected error with its crash report), 2 invalid
input (one line on stderr naming the option or field and the value).
"""

from __future__ import annotations

from sizeguard.cli import backtest as _backtest  # backtest, montecarlo
from sizeguard.cli import config_cmd as _config_cmd  # config show|check|scan|aliases
from sizeguard.cli import markets as _markets  # markets, markets refresh
from sizeguard.cli import serve as _serve  # serve, bots
from sizeguard.cli import sizing as _sizing  # size, explain, presets, demo
from sizeguard.cli import state as _state  # trade, close, positions, state, journal, sync
from sizeguard.cli import store_cmd as _store_cmd  # store prune|size
from sizeguard.cli import sweep as _sweep  # sweep
from sizeguard.cli.app import app

COMMAND_MODULES = (_sizing, _markets, _config_cmd, _backtest, _sweep, _serve, _state, _store_cmd)


def main() -> None:
    app(prog_name="sizeguard")


__all__ = ["COMMAND_MODULES", "app", "main"]


if __name__ == "__main__":
    main()
