"""Adapters: the only code that touches files, ccxt, databases or the network."""
