"""sizeguard: how big a leveraged crypto trade may be, and which ones must not happen."""

from sizeguard import _native  # noqa: F401  (first: picks the compiled or the pure-Python core)
from sizeguard.core.account import Account, Position
from sizeguard.core.decide import decide
from sizeguard.core.decision import Decision, Reason, Status
from sizeguard.core.intent import Intent
from sizeguard.core.market import MarketRules
from sizeguard.errors import InvalidInput, PolicyError, SizeguardError, UnknownSymbol

__all__ = [
    "Account",
    "Decision",
    "Intent",
    "InvalidInput",
    "MarketRules",
    "PolicyError",
    "Position",
    "Reason",
    "SizeguardError",
    "Status",
    "UnknownSymbol",
    "decide",
]
__version__ = "0.1.0"
