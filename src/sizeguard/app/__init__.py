"""The application layer: use cases over the ports (:mod:`sizeguard.app.services`), the trader
the CLI drives (:mod:`sizeguard.app.trader`) and the one place adapters are chosen and wired
(:mod:`sizeguard.app.bootstrap`). Entry points (the CLI, the HTTP service) call these; the
core knows nothing of them."""
