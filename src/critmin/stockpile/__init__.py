"""Stockpiles: sizing under simulated disruptions, pooling, rules in use (docs/stockpile.md)."""
