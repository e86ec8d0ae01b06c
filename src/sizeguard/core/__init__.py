"""The pure core: plain values in, plain values out. No I/O, no ccxt, no database, no pydantic.

The arithmetic kernels (lots, liquidation, sizing formulas) are functions of floats in the subset
numba compiles, so the backtest runs the very same functions compiled.
"""
