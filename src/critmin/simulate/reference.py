"""Scalar reference implementation: one scenario and one draw at a time, prices by scipy root finding.

It restates the equations of docs/simulation.md term by term for each participant and month (no segment
accumulators, no closed form), as a per-scenario solver would. It checks the vectorised engine and is the
baseline of ``critmin bench simulate``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from critmin.simulate.engine import NP, Batch, NodeDraws, keyed_uniforms


def _solve(supply: float, release: float, demand: float, ed: float, es: float, p_max: float) -> float:
    """p in [1, p_max] with ``supply p^εs + release = demand p^εd`` (1 without shortage, p_max when capped)."""
    f = lambda p: supply * p**es + release - demand * p**ed  # noqa: E731
    if f(1.0) >= 0.0:
        return 1.0
    if f(p_max) <= 0.0:
        return p_max
    hi = 2.0
    while f(hi) < 0.0:
        hi *= 2.0
    return float(brentq(f, 1.0, hi, xtol=1e-15, rtol=8.9e-16, maxiter=500))


def _solve_u(supply: float, demand: float, ed: float, es: float, p_min: float) -> float:
    """p_U in [p_min, 1] with ``supply p^εs = demand p^εd`` in the unrestricted segment (1 when not in surplus)."""
    if supply <= 0.0 or demand <= 0.0:
        return 1.0
    f = lambda p: supply * p**es - demand * p**ed  # noqa: E731
    if f(1.0) <= 0.0:
        return 1.0
    if f(p_min) >= 0.0:
        return p_min
    return float(brentq(f, p_min, 1.0, xtol=1e-300, rtol=8.9e-16, maxiter=500))


def scalar_losses(b: Batch, i: int, draws: NodeDraws, d: int, settings: dict[str, float], seed: int) -> np.ndarray:
    """Loss per participant of scenario ``i`` in draw ``d``, in units of the node's world value P0·Q0 per year."""
    n = int(b.node[i])
    par = {k: float(v[n, d]) for k, v in draws.values.items()}
    ed, es = par["elasticity_demand"], par["elasticity_supply"]
    w = float(b.w_lo[i])
    if b.w_hi[i] > b.w_lo[i]:
        w = float(b.w_lo[i] + keyed_uniforms(seed, "scenario:" + b.ids[i], 1, (draws.draws,))[d] * (b.w_hi[i] - b.w_lo[i]))
    lam = float(b.leak[i]) if np.isfinite(b.leak[i]) else (par["leakage_world"] if b.world[i] else par["leakage"])
    h = par["restrictor_domestic_share"]
    sr = float(b.s_r[i])
    exports = (1.0 - h) * sr
    if b.world[i]:
        d_t, x_rt = 1.0 - h * sr, exports
    else:
        d_t, x_rt = float(b.d_t_named[i]), min(float(b.x_rt_named[i]), exports)
    allowed = x_rt * (1.0 - w * (1.0 - lam))
    base_supply = max(1.0 - sr, d_t - x_rt) + allowed
    spare = float(b.spare_data[i]) if np.isfinite(b.spare_data[i]) else par["spare_capacity"] * (1.0 - sr)
    p_u_short = _solve_u(sr - allowed, 1.0 - d_t, ed, es, 1.0 / par["max_price_ratio"])
    m_eff = par["downstream_value_multiple"] * float(b.chain_a[i]) + float(b.chain_b[i])
    # participants in T cannot demand more than T's whole demand
    dem_t = float(sum(b.d_j[i, j] for j in range(NP) if b.in_t[i, j]))
    scale = d_t / dem_t if dem_t > d_t else 1.0
    rho, f_restr = float(b.rho[i]), settings["restraint_loss_fraction"]
    stock, rate, cap = float(b.hold[i]), float(b.rate[i]), float(b.cap[i])
    loss = np.zeros(NP)
    for t in range(1, int(b.duration[i]) + 1):
        ramp = par["ramp_months"]
        supply = max(base_supply + spare * (min(1.0, t / ramp) if ramp > 0 else 1.0), 1e-12)
        short = supply < d_t
        rho_t = min(rho, 1.0 - supply / d_t) if short else 0.0  # restraint never exceeds the gap
        if short:
            demand = d_t * (1.0 - rho_t)
            k = 0.0
            if stock > 0:
                k_req = max(demand * cap**ed - supply * cap**es, 0.0)
                k = min(k_req, rate, stock * 12.0)
                stock -= k / 12.0
            p = _solve(supply, k, demand, ed, es, par["max_price_ratio"])
            p_u = p_u_short
            # share of targeted baseline demand that is served: on the demand curve, or what supply allows
            served = min((1.0 - rho_t) * p**ed, (supply * p**es + k) / d_t)
        else:
            p, p_u, served = 1.0, 1.0, 1.0
        for j in range(NP):
            in_t = bool(b.in_t[i, j])
            pj = p if in_t else p_u
            dj = b.d_j[i, j] * (scale if in_t else 1.0)
            if in_t:
                restrained = rho_t * dj * pj**ed
                bought = dj * served
            else:
                restrained = 0.0
                bought = dj * pj**ed
            price_short = max(dj - bought - restrained, 0.0)
            p_prod = p_u if b.j_restricts[i, j] else p
            input_cost = (pj - 1.0) * bought
            lost_output = (price_short + f_restr * restrained) * m_eff
            producer_gain = (p_prod - 1.0) * b.s_j[i, j] * p_prod**es
            loss[j] += (input_cost + lost_output - producer_gain) / 12.0
    return loss
