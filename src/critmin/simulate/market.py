"""Market-clearing equations of one commodity-stage node (pure, vectorised over any array shape).

Quantities are fractions of baseline world output ``Q0`` (annual rates); prices are ratios ``p = P/P0``.
Constant-elasticity curves: producers supply ``S p^εs`` (``εs >= 0``); buyers demand ``D p^ε`` (``ε < 0``).
Equations and their derivation: docs/simulation.md §4-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray


def closed_form_price(q0: Array | float, lost: Array | float, spare: Array | float, ed: Array | float, es: Array | float) -> Array:
    """Single-market price ratio after losing ``lost`` of supply with ``spare`` capacity available.

    ``P1/P0 = ((Q0 - D + X)/Q0)^(1/(εd - εs))`` when ``D > X``, else 1 (methods.md §5; USGS OFR 2025-1047).
    The engine's targeted segment reaches this price in its steady state (no stocks, no hoarding, after the
    ramp), which the tests check.
    """
    q0, lost, spare = np.asarray(q0, float), np.asarray(lost, float), np.asarray(spare, float)
    ratio = (q0 - lost + spare) / q0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.power(ratio, 1.0 / (np.asarray(ed, float) - np.asarray(es, float)))
    return np.where(lost > spare, p, 1.0)


@dataclass
class Clearing:
    """One month of one segment: price and flows (fractions of Q0, annual rates)."""

    price: Array
    supplied: Array  # producers' output S p^εs
    consumed: Array  # what buyers consume
    stock_flow: Array  # commercial stock change (+ bought into stock, - released)
    release: Array  # strategic (public) stock delivered
    capped: Array  # the price reached the ceiling: buyers are rationed


def clear_month(supply: Array, demand: Array, stock_demand: Array, release: Array, es: Array, ed: Array,
                p_lo: Array | float, p_hi: Array | float) -> Clearing:
    """Clear ``S p^εs = (D + A - k) p^ε`` for ``p`` in ``[p_lo, p_hi]``.

    ``S`` producers' supply at the old price, ``D`` buyers' demand at the old price, ``A`` the commercial
    stock demand (positive: holders buy into stock; negative: they release), ``k`` a strategic release
    (public stocks). Holders and the release trade at the market price with the buyers' elasticity, so the
    price has the closed form

        p = ((D + A - k) / S)^(1/(εs - ε))

    - Below ``p_lo`` (a glut): ``p = p_lo``; buyers take ``D p^ε``, holders ``A p^ε``, the rest of supply idles.
    - Above ``p_hi`` (the choke price): ``p = p_hi`` and buyers are rationed to what is there: holders who
      want to buy (A > 0) come after the buyers; released stock (A < 0) and the strategic release are sold.
    - ``D + A - k <= 0``: nothing is bought at any price; ``p = p_lo``.
    """
    supply, demand, stock_demand, release = np.broadcast_arrays(
        np.asarray(supply, float), np.asarray(demand, float), np.asarray(stock_demand, float), np.asarray(release, float))
    net = demand + stock_demand - release
    lo, hi = np.log(p_lo), np.log(p_hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(net / supply) / (es - ed)
    y = np.where(net > 0, y, -np.inf)
    capped = y > hi
    y = np.clip(y, lo, hi)
    p = np.exp(y)
    pe = np.exp(ed * y)
    supplied = supply * np.exp(es * y)
    want = demand * pe
    flow = stock_demand * pe
    rel = release * pe
    if capped.any():
        avail = supplied + rel
        flow = np.where(capped & (stock_demand > 0), np.minimum(flow, np.maximum(avail - want, 0.0)), flow)
        consumed = np.where(capped, np.minimum(want, avail - flow), want)
    else:
        consumed = want
    return Clearing(p, supplied, consumed, flow, rel, capped)


def release_to_cap(supply: Array, demand: Array, stock_demand: Array, cap: Array, es: Array, ed: Array) -> Array:
    """Strategic release that holds the price at ``cap``: ``k = D + A - S cap^(εs - ε)`` (>= 0)."""
    return np.maximum(demand + stock_demand - supply * np.power(cap, es - ed), 0.0)


def stock_demand(stock: Array, hoard_left: Array, excess: Array, consumption: Array, adjust: Array, half_months: Array) -> Array:
    """Commercial holders' net purchases (annual rate; negative = release) in one month:

        A = θ·12·H - c·X,   c = I / (I + h·C/12),   A >= -12 I

    ``H`` the precautionary stock still to be built (hoarding after an announced control, less what has been
    bought), ``θ`` the share of it bought per month, ``X`` the month's excess demand at the old price (supply
    gap; negative in a glut, which holders absorb in the same proportion), ``I`` the stock held, ``C`` the
    segment's consumption and ``h`` the stock (months of consumption) at which holders cover half the gap:
    large stocks (gold's decades) cover nearly all of it, thin stocks little, and the cover falls as stocks are
    drawn. Holders cannot release more than they hold. Quantities are fractions of world output.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        cover = np.where(stock > 0, stock / (stock + half_months * consumption / 12.0), 0.0)
    return np.maximum(adjust * 12.0 * hoard_left - cover * excess, -12.0 * stock)
