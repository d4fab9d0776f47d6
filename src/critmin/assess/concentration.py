"""Concentration and exposure metrics: pure functions on share vectors.

Shares are fractions of world supply (0..1). Throughout, the remainder that no source attributes to a
named country ("Other countries", IEA "Rest of world", or the part of a published share table not listed)
is *not* a country: it is excluded from concentration indices, which are therefore lower bounds when the
remainder is large. Every function accepts an extra leading scenario/draw dimension (arrays of shape
``(..., n_countries)``) so callers can vectorise over perturbed share sets.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def shares(quantities: npt.ArrayLike, other: npt.ArrayLike = 0.0) -> FloatArray:
    """Country shares of world supply: ``s_i = q_i / (Σ_j q_j + q_other)``.

    ``quantities``: tonnes (any unit) per country, last axis = countries; ``other``: the unattributed
    remainder (same unit). Returns fractions; all zeros when the total is zero.
    """
    q = np.asarray(quantities, dtype=float)
    o = np.asarray(other, dtype=float)
    if np.any(q < 0) or np.any(o < 0):
        raise ValueError("quantities must be non-negative")
    total = (q.sum(axis=-1) + o)[..., None]
    return np.divide(q, total, out=np.zeros_like(q), where=total > 0)


def hhi(s: npt.ArrayLike) -> FloatArray:
    """Herfindahl-Hirschman index on the 0-10,000 scale: ``HHI = Σ_i (100·s_i)^2``.

    ``s``: country shares as fractions (last axis = countries). 10,000 = one supplier; >= 2,500 is "highly
    concentrated" in U.S. antitrust practice.
    """
    a = np.asarray(s, dtype=float)
    return np.sum((100.0 * a) ** 2, axis=-1)


def wgi_scaled(mean_estimate: npt.ArrayLike) -> FloatArray:
    """Rescale the mean of the six WGI estimates (about -2.5 good ... +2.5) to the EU 0 (best) - 10 (worst) scale.

    ``WGI_i = 5 - 2·mean_i``, clipped to [0, 10] (EU CRM methodology, 2017 guidelines).
    """
    return np.clip(5.0 - 2.0 * np.asarray(mean_estimate, dtype=float), 0.0, 10.0)


def hhi_wgi(s: npt.ArrayLike, wgi: npt.ArrayLike, trade_factor: npt.ArrayLike = 1.0) -> FloatArray:
    """Governance-weighted HHI (EU CRM method): ``HHI_WGI,t = Σ_i s_i^2 · WGI_i · t_i``.

    ``s`` shares as fractions; ``wgi`` on the 0-10 scale of :func:`wgi_scaled`; ``t`` the trade adjustment
    (1 by default; up to ~1.5 for export restrictions, 0.8 under a trade agreement). Range 0-10 (x t).
    """
    a = np.asarray(s, dtype=float)
    return np.sum(a**2 * np.asarray(wgi, dtype=float) * np.asarray(trade_factor, dtype=float), axis=-1)


def top_n_share(s: npt.ArrayLike, n: int = 1) -> FloatArray:
    """Combined share of the ``n`` largest suppliers: ``Σ_{i in top n} s_i`` (fraction)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    a = np.sort(np.asarray(s, dtype=float), axis=-1)
    return np.sum(a[..., -n:], axis=-1)


def group_share(s: npt.ArrayLike, countries: Iterable[str], members: Iterable[str]) -> FloatArray:
    """Share of supply from a group of countries: ``Σ_{i in group} s_i`` (fraction).

    Used for the share of countries of concern and the share of the bloc. ``countries`` names the last axis.
    """
    names = list(countries)
    group = set(members)
    mask = np.array([c in group for c in names], dtype=bool)
    a = np.asarray(s, dtype=float)
    return np.sum(np.where(mask, a, 0.0), axis=-1)
