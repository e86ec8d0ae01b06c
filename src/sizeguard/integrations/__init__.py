"""Integrations with trading frameworks (each imports its framework only inside its own module)."""
