"""Net import reliance (NIR) of a country and of a bloc."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def net_import_reliance(
    production: npt.ArrayLike, imports: npt.ArrayLike, exports: npt.ArrayLike, stock_decrease: npt.ArrayLike = 0.0
) -> FloatArray:
    """Net import reliance as a fraction of apparent consumption (USGS definition).

    ``NIR = (I - E + ΔS) / (P + I - E + ΔS)`` with P primary + secondary production, I imports, E exports and
    ΔS the decrease of stocks, all in one unit. Clipped to [0, 1]: a net exporter (USGS prints "E") has 0.
    NaN when apparent consumption is not positive.
    """
    p, i, e, ds = (np.asarray(x, dtype=float) for x in (production, imports, exports, stock_decrease))
    net = i - e + ds
    consumption = p + net
    with np.errstate(invalid="ignore", divide="ignore"):
        nir = np.where(consumption > 0, net / np.where(consumption > 0, consumption, 1.0), np.nan)
    return np.clip(nir, 0.0, 1.0)


def bloc_reliance(nir: npt.ArrayLike, consumption: npt.ArrayLike) -> FloatArray:
    """Net import reliance of a bloc whose internal trade counts as domestic.

    With apparent consumption ``C_p = P_p + I_p - E_p`` of each participant p and ``P_p = C_p (1 - NIR_p)``,
    ``NIR_bloc = 1 - Σ_p P_p / Σ_p C_p = Σ_p C_p·NIR_p / Σ_p C_p``: the consumption-weighted mean (imports
    from one participant to another cancel in the sum). Last axis = participants.
    """
    n = np.asarray(nir, dtype=float)
    c = np.asarray(consumption, dtype=float)
    if np.any(c < 0):
        raise ValueError("consumption must be non-negative")
    total = c.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (c * n).sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)
