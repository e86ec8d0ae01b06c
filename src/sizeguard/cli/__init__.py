"""Command-line entry points: parse, call, render. No arithmetic lives here."""
