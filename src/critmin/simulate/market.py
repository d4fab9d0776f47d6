"""Market-clearing equations of one commodity-stage node (pure, vectorised over any array shape).

Quantities are fractions of baseline world output ``Q0`` (annual rates); prices are ratios ``p = P/P0``.
Constant-elasticity curves: supply ``S p^εs`` (``εs >= 0``), demand ``D p^εd`` (``εd < 0``).
Equations and their derivation: docs/simulation.md.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def closed_form_price(q0: Array | float, lost: Array | float, spare: Array | float, ed: Array | float, es: Array | float) -> Array:
    """Single-market price ratio after losing ``lost`` of supply with ``spare`` capacity available.

    ``P1/P0 = ((Q0 - D + X)/Q0)^(1/(εd - εs))`` when ``D > X``, else 1 (methods.md §5; USGS OFR 2025-1047).
    """
    q0, lost, spare = np.asarray(q0, float), np.asarray(lost, float), np.asarray(spare, float)
    ratio = (q0 - lost + spare) / q0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.power(ratio, 1.0 / (np.asarray(ed, float) - np.asarray(es, float)))
    return np.where(lost > spare, p, 1.0)


def segment_price(supply: Array, demand: Array, ed: Array, es: Array) -> Array:
    """Price ratio clearing ``supply p^εs = demand p^εd``, floored at 1 (spare output is idle at p <= 1).

    ``p = (D/S)^(1/(εs - εd))`` when ``S < D``, else 1.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.exp(np.log(demand / supply) / (es - ed))
    return np.where(supply < demand, p, 1.0)


def release_to_cap(supply: Array, demand: Array, cap: Array, ed: Array, es: Array) -> Array:
    """Stock release (annual rate) that holds the price at ``cap``: ``k = D cap^εd - S cap^εs`` (>= 0)."""
    return np.maximum(demand * np.power(cap, ed) - supply * np.power(cap, es), 0.0)


def price_with_release(supply: Array, demand: Array, release: Array, ed: Array, es: Array, p_max: Array | float = np.inf,
                       iterations: int = 60, tol: float = 1e-13) -> Array:
    """Price ratio clearing ``S p^εs + k = D p^εd`` (``k >= 0``), floored at 1 and capped at ``p_max``.

    Newton's method on ``g(y) = ln(S e^{εs y} + k) - ln D - εd y`` with ``y = ln p``: ``g`` is increasing and
    convex, so Newton started right of the root (the ``k = 0`` closed form, or ``ln p_max`` when that is
    smaller and still right of the root) decreases monotonically to it. When ``g(ln p_max) <= 0`` the root
    lies beyond the cap and the price is ``p_max``.
    """
    supply, demand, release = np.broadcast_arrays(np.asarray(supply, float), np.asarray(demand, float), np.asarray(release, float))
    ed, es = np.broadcast_to(ed, supply.shape), np.broadcast_to(es, supply.shape)
    y_max = np.broadcast_to(np.log(np.asarray(p_max, float)), supply.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y = np.minimum(np.maximum(np.log(demand / supply) / (es - ed), 0.0), y_max)
        g_start = np.log(supply * np.exp(es * y) + release) - np.log(demand) - ed * y
    beyond_cap = g_start <= 0.0  # only possible when y was cut to y_max: the cap binds
    active = (supply + release < demand) & (release > 0) & ~beyond_cap
    idx = np.flatnonzero(active)
    out = np.exp(y)
    if idx.size:
        s, d, k = supply.ravel()[idx], demand.ravel()[idx], release.ravel()[idx]
        a, b = es.ravel()[idx], ed.ravel()[idx]
        yy = y.ravel()[idx]
        lnd = np.log(d)
        for _ in range(iterations):
            se = s * np.exp(a * yy)
            g = np.log(se + k) - lnd - b * yy
            step = g / (a * se / (se + k) - b)
            yy = yy - step
            if np.all(np.abs(step) <= tol):
                break
        flat = out.ravel()
        flat[idx] = np.exp(np.maximum(yy, 0.0))
        out = flat.reshape(supply.shape)
    return np.where(supply + release < demand, out, 1.0)
