"""Scalar reference implementation: one scenario, one draw and one month at a time, prices by root finding.

It restates docs/simulation.md §3-7 from the definitions (the scenario, the node's baseline, the parameter
table and the chain factors), without the engine's compiled arrays, path sharing or closed forms: each month
the targeted and the unrestricted segments are cleared with ``scipy.optimize.brentq`` on

    S p^εs = (D + A - k) p^ε

and each participant's loss is summed term by term. It checks the vectorised engine (``critmin bench
simulate``, the tests) and is the baseline of the benchmark's speed-up. Only the keyed random streams
(``engine.keyed_uniforms``) are shared, because they define which numbers a seed gives.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from critmin.simulate.engine import SAMPLED_NAMES, ChainFactors, keyed_uniforms, random_key
from critmin.simulate.engine import downstream_share_proxy as _downstream_share
from critmin.simulate.nodes import PARTICIPANTS, NodeTable, under_input_control
from critmin.simulate.parameters import Parameters
from critmin.simulate.scenario import Scenario


def _tri(u: float, lo: float, mode: float, hi: float) -> float:
    if hi <= lo:
        return lo
    c = (mode - lo) / (hi - lo)
    return lo + math.sqrt(u * (hi - lo) * (mode - lo)) if u < c else hi - math.sqrt((1 - u) * (hi - lo) * (hi - mode))


def _clear(supply: float, net: float, es: float, ed: float, p_lo: float, p_hi: float) -> tuple[float, bool]:
    """Price in [p_lo, p_hi] with ``supply p^es = net p^ed`` by bisection-safe root finding; (p, capped)."""
    if net <= 0.0:
        return p_lo, False
    f = lambda y: math.log(supply) + es * y - math.log(net) - ed * y  # noqa: E731  (in y = ln p; increasing)
    lo, hi = math.log(p_lo), math.log(p_hi)
    if f(hi) < 0.0:
        return p_hi, True
    if f(lo) > 0.0:
        return p_lo, False
    return math.exp(brentq(f, lo, hi, xtol=1e-15, rtol=8.9e-16, maxiter=500)), False


def _segment(supply: float, demand: float, a: float, k: float, es: float, ed: float, p_lo: float,
             p_hi: float) -> tuple[float, float, float, float]:
    """One month of one segment: (price, consumed, commercial stock flow, strategic release delivered)."""
    p, capped = _clear(supply, demand + a - k, es, ed, p_lo, p_hi)
    pe = p**ed
    want, flow, rel_k, made = demand * pe, a * pe, k * pe, supply * p**es
    if capped:
        if a > 0:
            flow = min(flow, max(made + rel_k - want, 0.0))
        return p, min(want, made + rel_k - flow), flow, rel_k
    return p, want, flow, rel_k


def scalar_losses(s: Scenario, nodes: NodeTable, chain: ChainFactors, params: Parameters, settings: dict[str, float],
                  seed: int, draws: int, d: int) -> np.ndarray:
    """Consumer loss per participant (USA, JPN) of scenario ``s`` in draw ``d`` of ``draws``, in units of the
    node's annual world value P0·Q0 (the engine's ``loss_rel``)."""
    ni = nodes.index[f"{s.commodity}/{s.stage}"]
    n = under_input_control(nodes.nodes[ni], s.restrictors, s.input_control)
    u = keyed_uniforms(seed, "node:" + n.key, 0, (len(SAMPLED_NAMES) + 1, draws))[:, d]
    par = {name: float(params.resolve(name, n.commodity, n.stage, n.group).quantile(np.array([u[k]]))[0])
           for k, name in enumerate(SAMPLED_NAMES)}
    rs = set(s.restrictors)
    sr = sum(n.shares.get(r, 0.0) for r in rs)
    # restrictors' export share: share-weighted triangular over those with trade data, the parameter otherwise
    known = [(n.shares.get(r, 0.0), n.export_share[r]) for r in sorted(rs) if r in n.export_share and n.shares.get(r, 0.0) > 0]
    wk = sum(x for x, _ in known)
    e_known = 0.0
    if wk > 0:
        lo_, mo_, hi_ = (sum(x * float(e[k]) for x, e in known) / wk for k in (1, 0, 2))
        e_known = _tri(float(u[-1]), lo_, mo_, hi_)
    frac = wk / sr if sr > 0 else 1.0
    e_r = frac * e_known + (1.0 - frac) * par["restrictor_export_share"]
    exports, home = e_r * sr, sr * (1.0 - e_r)
    world = s.targets == ["WORLD"]
    # withheld share
    rng = s.withheld_range()
    if rng is None:
        spec = params.resolve("licence_denial", n.commodity, n.stage, n.group)
        rng = (spec.low, spec.high) if s.regime in ("licence", "quota") else (1.0, 1.0)
    rng = (rng[0] * s.scope_low, rng[1] * s.scope_high)  # the measure covers only part of the node's exports
    w = rng[0]
    if rng[1] > rng[0]:
        w = rng[0] + float(keyed_uniforms(seed, "path:" + random_key(s), 1, (draws,))[d]) * (rng[1] - rng[0])
    lam = s.leakage if s.leakage is not None else (par["leakage_world"] if world else par["leakage"])
    members = (set(PARTICIPANTS) - rs) if world else {m for t in s.targets for m in (PARTICIPANTS if t == "BLOC" else (t,))}
    if world:
        d_t, x_rt = 1.0 - home, exports
    else:
        d_t = x_named = 0.0
        for iso in sorted(members):
            if iso in PARTICIPANTS:
                dj = n.demand_share[iso]
                nir = n.nir.get(iso, np.nan)
                if not np.isfinite(nir):
                    nir = min(max(1.0 - n.shares.get(iso, 0.0) / dj, 0.0), 1.0) if dj > 0 else 1.0
                imp = n.import_shares.get(iso, {})
            else:
                dj = _downstream_share(nodes, chain, ni, iso)
                nir = min(max(1.0 - n.shares.get(iso, 0.0) / dj, 0.0), 1.0) if dj > 0 else 0.0
                imp = {}
            m = sum(imp.get(r, 0.0) for r in rs) if imp else sr / max(1.0 - n.shares.get(iso, 0.0), 1e-12)
            d_t += dj
            x_named += dj * nir * min(m, 1.0)
        x_rt = min(x_named, exports)
    d_o = 0.0 if world else max(1.0 - home - d_t, 0.0)

    def lost_at(w_: float) -> float:
        withheld = w_ * (1.0 - lam) * x_rt
        return withheld - min(withheld, max(d_o - (exports - x_rt), 0.0))

    def diverted_at(w_: float) -> float:
        return w_ * (1.0 - lam) * x_rt - lost_at(w_)

    lost = lost_at(w)
    diverted = diverted_at(w)
    # a withheld share stated month by month (withheld_by_month) replaces the drawn one in those months
    u_w = (w - rng[0]) / (rng[1] - rng[0]) if rng[1] > rng[0] else 0.0
    scope = s.scope_low + u_w * (s.scope_high - s.scope_low)
    w_month = [x * scope for x in (s.withheld_by_month or [])]
    lost_m = [lost_at(x) for x in w_month]
    if n.spare_by_country and np.isfinite(n.q0_t) and n.q0_t > 0:
        spare = sum(v for k, v in n.spare_by_country.items() if k not in rs) / n.q0_t
    else:
        spare = par["spare_capacity"] * (1.0 - sr)
    d_u = home + (0.0 if world else exports - x_rt + diverted)
    # the shock as first seen sets the precautionary target
    g_first = lost_m[0] if lost_m else lost
    gi = min(g_first / d_t, 1.0) if d_t > 0 else 0.0
    m_eff = par["downstream_value_multiple"] * float(chain.unlinked[ni]) + float(chain.linked_value[ni])
    # each participant values a tonne short with its own use shares where it has them
    ua = chain.unlinked_p[:, ni] if chain.unlinked_p is not None else np.full(len(PARTICIPANTS), chain.unlinked[ni])
    lb = chain.linked_value_p[:, ni] if chain.linked_value_p is not None else np.full(len(PARTICIPANTS), chain.linked_value[ni])
    m_own = [par["downstream_value_multiple"] * float(ua[j]) + float(lb[j]) for j in range(len(PARTICIPANTS))]
    d_share = float(chain.derivative_share[ni]) if chain.derivative_share is not None else 0.0
    p_hi = min(par["max_price_ratio"], max(m_eff + d_share, 1.0))
    p_lo = 1.0 / par["max_price_ratio"]
    ratio = settings["derived_demand_reference_multiple"] / m_eff if m_eff > settings["derived_demand_reference_multiple"] else 1.0
    kappa = par["demand_substitution_share"] + (1.0 - par["demand_substitution_share"]) * ratio
    ed = kappa * par["elasticity_demand"]
    ed_lr = min(par["elasticity_demand_long"], ed)
    es, tau, ramp = par["elasticity_supply"], par["substitution_months"], par["ramp_months"]
    theta, half, inv_m = par["stock_adjustment"], par["stock_half_cover_months"], par["inventory_months"]
    # stocks: working stock + stocks located in the segment's countries; a stock stated by the scenario replaces T's
    loc_t = loc_u = 0.0
    own = math.nan
    located = sorted(n.located_stocks.items())
    if located or s.stock_months is not None:
        us = float(keyed_uniforms(seed, "stock:" + random_key(s), 2, (draws,))[d])
        tri_t, tri_u = np.zeros(3), np.zeros(3)  # (low, mode, high) summed per segment, then one draw each
        for holder, (mode, lo, hi) in located:
            (tri_u if holder in rs else tri_t)[:] += np.array([lo, mode, hi]) / 12.0
        loc_t, loc_u = _tri(us, *tri_t), _tri(us, *tri_u)
        if s.stock_months is not None:
            lo_m, hi_m = s.stock_range()
            own = _tri(us, lo_m, s.stock_months, hi_m)
    normal_t, normal_u = inv_m / 12.0 * d_t, inv_m / 12.0 * d_u
    stock_t = own / 12.0 * d_t if math.isfinite(own) else normal_t + loc_t
    stock_u = normal_u + loc_u
    # exports to the targets above their baseline before the start sit in the targeted buyers' stocks
    stock_t += s.front_loaded_share * x_rt
    # precautionary stock: normal stock + chi x g months, less what is held
    left_t = max(normal_t + par["hoarding_targeted"] * gi * d_t / 12.0 - stock_t, 0.0)
    left_u = max(normal_u + par["hoarding_restrictor"] * gi * d_u / 12.0 - stock_u, 0.0)
    rho = s.response.demand_restraint
    sp = s.response.stockpile
    q0ok = np.isfinite(n.q0_t) and n.q0_t > 0
    hold = sp.holdings_t / n.q0_t if (sp is not None and q0ok) else 0.0
    rate = 12.0 * sp.max_release_t_per_month / n.q0_t if (sp is not None and q0ok and sp.max_release_t_per_month is not None) else math.inf
    cap = sp.price_cap if (sp is not None and q0ok) else 1.0
    # participants in T never demand more than T's whole demand
    dem_t = sum(n.demand_share[iso] for iso in PARTICIPANTS if iso in members)
    scale = d_t / dem_t if dem_t > d_t else 1.0
    f_r, f_s = settings["restraint_loss_fraction"], settings["substitution_loss_fraction"]
    f_p = settings["price_cut_output_fraction"]
    shocked = lost > 0 or any(x > 0 for x in lost_m) or s.market_surplus != 0 or hold > 0
    p_t = p_u = 1.0
    loss = np.zeros(len(PARTICIPANTS))
    for t in range(1, s.duration_months + 1):
        if not shocked:
            break
        eps = ed + (ed_lr - ed) * min(1.0, (t - 1) / tau)
        ramp_f = min(1.0, t / ramp) if ramp > 0 else 1.0
        lost_t, d_u_t = lost, d_u
        if t <= len(lost_m):
            lost_t = lost_m[t - 1]
            d_u_t = home + (0.0 if world else exports - x_rt + diverted_at(w_month[t - 1]))
        s_u = d_u_t + lost_t
        supply = max(d_t - lost_t + s.market_surplus * d_t + min(spare * ramp_f, lost_t), 1e-12)
        rho_t = min(rho, max(1.0 - supply / d_t, 0.0))
        demand = d_t * (1.0 - rho_t)
        cover = stock_t / (stock_t + half * d_t / 12.0) if stock_t > 0 else 0.0
        a_t = max(theta * 12.0 * left_t - cover * (demand - supply), -12.0 * stock_t)
        k = 0.0
        if hold > 0:
            k = min(max(demand + a_t - supply * cap ** (es - eps), 0.0), rate, 12.0 * hold)
        p_t, consumed, flow, rel_k = _segment(supply, demand, a_t, k, es, eps, p_lo, p_hi)
        pe = p_t**eps
        stock_t = max(stock_t + flow / 12.0, 0.0)
        left_t = max(left_t - min(max(flow, 0.0), theta * 12.0 * left_t * p_t**eps) / 12.0, 0.0)
        hold = max(hold - rel_k / 12.0, 0.0)
        if d_u_t > 0:
            cover_u = stock_u / (stock_u + half * d_u_t / 12.0) if stock_u > 0 else 0.0
            a_u = max(theta * 12.0 * left_u - cover_u * (d_u_t - s_u), -12.0 * stock_u)
            p_home, _, flow_u, _ = _segment(max(s_u, 1e-12), d_u_t, a_u, 0.0, es, eps, p_lo, p_hi)
            p_u = math.exp(par["price_transmission"] * math.log(p_t) + (1.0 - par["price_transmission"]) * math.log(p_home))
            stock_u = max(stock_u + flow_u / 12.0, 0.0)
            left_u = max(left_u - min(max(flow_u, 0.0), theta * 12.0 * left_u * p_home**eps) / 12.0, 0.0)
        served = consumed / d_t if d_t > 0 else 1.0
        restrained = rho_t * pe
        substituted = (1.0 - rho_t) * (p_t**ed - pe) if p_t > 1.0 else 0.0
        not_consumed = max(1.0 - served - restrained - substituted, 0.0)
        # rationed at the choke price: what buyers want at the price and do not get; the rest they give up at it
        at_cap = min(max(demand * pe - consumed, 0.0) / d_t if d_t > 0 else 0.0, not_consumed)
        cut = not_consumed - at_cap
        # a rationed tonne is worth the mean value of the uses at or above the cap (q(v) = v^ε truncated at the top
        # value T, with a mass T^ε at T), as a share of T
        top = max(m_eff + d_share, 1.0)
        floor = min(p_hi * max(1.0 - rho_t, 1e-12) ** (1.0 / eps), top)  # restraint sheds the lowest-valued uses first
        if floor < top:
            if abs(1.0 + eps) < 1e-9:
                mean_v = floor * (math.log(top / floor) + 1.0)
            else:
                mean_v = (-eps / (1.0 + eps) * (top ** (1.0 + eps) - floor ** (1.0 + eps)) + top ** (1.0 + eps)) / floor**eps
            at_cap_value = at_cap * mean_v / top
        else:
            at_cap_value = at_cap
        for j, iso in enumerate(PARTICIPANTS):
            if iso in members:
                dj = n.demand_share[iso] * scale
                cost = (p_t - 1.0) * served * dj
                lost_out = (at_cap_value + f_p * (cut + f_s * substituted + f_r * restrained)) * dj * m_own[j]
                p_x = min(p_t * max(1.0 - rho_t, 1e-12) ** (1.0 / eps), p_hi)  # the last use given up
                lost_out += (1.0 - f_p) * 0.5 * max(p_x - 1.0, 0.0) * (cut + substituted + restrained) * dj
            else:
                dj = n.demand_share[iso]
                cost = (p_u - 1.0) * p_u**eps * dj
                cut_u = max(1.0 - p_u**ed, 0.0)
                subst_u = (p_u**ed - p_u**eps) if p_u > 1.0 else 0.0
                lost_out = f_p * (cut_u + f_s * subst_u) * dj * m_own[j]
                lost_out += (1.0 - f_p) * 0.5 * max(p_u - 1.0, 0.0) * (cut_u + subst_u) * dj
            loss[j] += (cost + lost_out) / 12.0
    return loss
