"""Stockpile sizing: newsvendor per commodity, a linear programme under a budget, pooled against separate stocks.

Pure functions. A stock S (t) held for a year costs ``h S`` (holding: capital + storage, USD per t-year) and
leaves an expected shortage cost ``Σ_s w_s c max(D_s - S, 0)`` over the simulated disruption draws s
(``D_s`` t short in draw s, ``c`` USD lost per tonne short). docs/stockpile.md states the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def expected_cost(stock: float | np.ndarray, shortfall: np.ndarray, weights: np.ndarray, holding: float, shortage: float,
                  refill: np.ndarray | None = None) -> np.ndarray:
    """``h S + Σ_s w_s [c max(D_s - S, 0) + min(π_s, c) min(D_s, S)]`` for one stock or an array of stocks (USD).

    ``refill`` π_s (USD per tonne drawn, per draw): what buying a drawn tonne back costs above the baseline price
    while the disruption still holds; a tonne is released only where it is worth more than that (at most c is
    paid back), so a stock against a squeeze that outlasts the refill saves ``c - π_s`` a tonne, not c
    (docs/stockpile.md §2). None: no refill premium (the stock is full again at the baseline price)."""
    s = np.atleast_1d(np.asarray(stock, dtype=float))
    short = np.maximum(shortfall[None, :] - s[:, None], 0.0) @ weights
    out = holding * s + shortage * short
    if refill is not None:
        out = out + np.minimum(shortfall[None, :], s[:, None]) @ (weights * np.minimum(refill, shortage))
    return out if np.ndim(stock) else out[0]


def cost_by_draw(stock: float, shortfall: np.ndarray, holding: float, shortage: float, refill: np.ndarray | None = None) -> np.ndarray:
    """The cost of one stock in each draw s: ``h S + c max(D_s - S, 0) + min(π_s, c) min(D_s, S)`` (USD); its weighted
    mean is :func:`expected_cost`."""
    out = holding * stock + shortage * np.maximum(shortfall - stock, 0.0)
    if refill is not None:
        out = out + np.minimum(shortfall, stock) * np.minimum(refill, shortage)
    return np.asarray(out, dtype=float)


def pool_worth(saving_by_draw: np.ndarray, weights: np.ndarray, agreement_cost: float) -> tuple[bool, float, float]:
    """Whether a pool is worth its agreement (docs/stockpile.md §4): with ``x_s`` the members' separate cost minus the
    pool's in draw s and weights ``w_s`` summing to 1, the saving ``x̄ = Σ w_s x_s`` and its Monte Carlo standard error
    ``se = sqrt(Σ w_s² (x_s − x̄)²)``; the pool is worth it when ``x̄ − A > 2 se`` (A the agreement cost a year: the
    net saving is positive beyond sampling noise). Returns (worth, x̄, se)."""
    w = weights / weights.sum()
    mean = float(w @ saving_by_draw)
    se = float(np.sqrt(np.sum(w**2 * (saving_by_draw - mean) ** 2)))
    return bool(mean - agreement_cost > 2.0 * se), mean, se


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """Smallest value v with ``Σ_{x_s <= v} w_s >= q`` (the left-continuous inverse of the empirical CDF)."""
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(w[order])
    k = int(np.searchsorted(cum, q * cum[-1] - 1e-12, side="left"))
    return float(x[order][min(k, len(x) - 1)])


def newsvendor(shortfall: np.ndarray, weights: np.ndarray, holding: float, shortage: float,
               refill: np.ndarray | None = None) -> tuple[float, float]:
    """Optimal stock and its expected cost: ``F(S*) = 1 - h/c`` (the critical fractile; S* = 0 when h >= c).

    With a refill premium π_s per draw (:func:`expected_cost`) a tonne of stock saves ``e_s = c - min(π_s, c)``
    in the draws that reach it, and ``S* = min { S : Σ_{s: D_s > S} w_s e_s <= h }`` (the same fractile when π = 0).
    For a discrete distribution any S in the optimal set minimises the cost; the smallest is returned.
    """
    if shortage <= holding or shortage <= 0:
        return 0.0, float(expected_cost(0.0, shortfall, weights, holding, shortage, refill))
    if refill is None:
        q = 1.0 - holding / shortage
        s = weighted_quantile(shortfall, weights, q)
        return s, float(expected_cost(s, shortfall, weights, holding, shortage))
    saved = weights * (shortage - np.minimum(refill, shortage))
    levels, inv = np.unique(np.concatenate([[0.0], shortfall]), return_inverse=True)
    mass = np.bincount(inv[1:], weights=saved, minlength=len(levels))
    beyond = mass.sum() - np.cumsum(mass)  # Σ w_s e_s over the draws with D_s above each level
    k = int(np.argmax(beyond <= holding * (1.0 + 1e-12)))
    s = float(levels[k])
    return s, float(expected_cost(s, shortfall, weights, holding, shortage, refill))


def keep_line(stock: float, cost_with: float, cost_without: float, fixed: float) -> tuple[float, float]:
    """A stock line is held only where it saves more than its fixed cost F (USD a year: procurement, a storage
    contract, assay, rotation, administration, whatever the tonnage):

        (S, cost) = (S*, C(S*) + F)  if C(0) - C(S*) > F,   else (0, C(0))

    ``C`` the expected cost of :func:`expected_cost` (convex in S); a fixed cost never changes the size of a line
    that is kept, since it does not depend on S (docs/stockpile.md §2)."""
    if stock > 0 and cost_without - cost_with > fixed:
        return stock, cost_with + fixed
    return 0.0, cost_without


@dataclass
class StockPlan:
    """Optimal stocks for several commodities under a common budget (LP solution)."""

    stock_t: np.ndarray
    holding_usd: np.ndarray
    shortage_usd: np.ndarray
    total_usd: float
    budget_used_usd: float
    budget_shadow_price: float
    status: str


def stock_lp(shortfall: np.ndarray, weights: np.ndarray, holding: np.ndarray, shortage: np.ndarray, price: np.ndarray,
             budget: float | None = None, capacity_t: np.ndarray | None = None, refill: np.ndarray | None = None,
             fixed: float = 0.0) -> StockPlan:
    """Stocks of n commodities minimising holding plus expected shortage cost, under a purchase budget.

        min  Σ_n (h_n S_n + F y_n) + Σ_s w_s Σ_n e_ns u_ns
        s.t. u_ns >= D_ns - S_n,  u_ns >= 0,  0 <= S_n <= U_n y_n,  y_n ∈ {0, 1},  Σ_n P_n S_n <= B

    ``e_ns = c_n - min(π_ns, c_n)`` (``refill`` π, USD per tonne drawn, :func:`expected_cost`; e = c without it):
    the cost of a drawn tonne bought back above the baseline price is the constant ``Σ w min(π, c) D`` less
    ``Σ w min(π, c) u``. ``F`` (``fixed``, USD a year) is the fixed cost of holding a line at all (:func:`keep_line`);
    ``U_n = min(cap_n, max_s D_ns)`` (a stock above the largest shortfall is never drawn). With F = 0 the binaries
    are left out and the programme is an LP.

    Without a budget, capacity or fixed cost the LP separates into one newsvendor per commodity. Solved with HiGHS;
    the budget's shadow price is the expected cost saved per extra USD of budget (with F > 0, the dual of the LP
    with the lines held fixed at the optimum).
    """
    import highspy

    from critmin.lp import quiet_highs

    n, S = shortfall.shape
    cap = np.full(n, np.inf) if capacity_t is None else np.asarray(capacity_t, float)
    if budget is not None and budget <= 0:  # nothing can be bought
        cap = np.zeros(n)
    # scale money to keep coefficients near 1
    scale = max(float(np.max(shortage * shortfall.max(axis=1))) if n else 1.0, 1.0)
    h = quiet_highs()
    inf = highspy.kHighsInf
    # variables: the stocks S_n, and the unmet demand u_ns only in the draws where D_ns > 0
    # (commodity, draw) of each u_ns, commodity-major; costs set on creation (scaled), so the objective is
    # Σ h_n S_n + Σ w_s c_n u_ns without building an expression over thousands of variables
    pi, ps = np.nonzero(shortfall > 0)
    stock_t = h.addVariables(n, lb=0.0, ub=np.where(np.isfinite(cap), cap, inf).tolist(), obj=(holding / scale).tolist())
    saved = shortage[pi] - (np.minimum(refill[pi, ps], shortage[pi]) if refill is not None else 0.0)
    unmet = h.addVariables(len(pi), lb=0.0, obj=(weights[ps] * saved / scale).tolist()) if len(pi) else None
    unmet_demand(h, stock_t, unmet, pi, shortfall[pi, ps])
    line = held_lines(h, stock_t, np.minimum(cap, shortfall.max(axis=1) if S else np.zeros(n)), fixed / scale) if fixed > 0 else None
    budget_row = purchase_budget(h, stock_t, price, budget)
    h.changeObjectiveSense(highspy.ObjSense.kMinimize)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    if line is not None and h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
        # the budget's dual: the LP with each line held or dropped as the programme chose
        held = np.round(np.asarray(h.getSolution().col_value)[line]).astype(float)
        h.changeColsIntegrality(len(line), np.asarray(line, dtype=np.int32), np.full(len(line), highspy.HighsVarType.kContinuous))
        h.changeColsBounds(len(line), np.asarray(line, dtype=np.int32), held, held)
        h.run()
    sol = h.getSolution()
    stock = np.asarray(sol.col_value)[:n]
    stock = np.where(stock > 1e-9, stock, 0.0)  # a dropped line's stock is zero up to the solver's tolerance
    hold = holding * stock + fixed * (stock > 0)
    short = np.array([float(expected_cost(stock[i], shortfall[i], weights, 0.0, shortage[i], refill[i] if refill is not None else None))
                      for i in range(n)])
    shadow = 0.0
    duals = np.asarray(sol.row_dual)
    if budget_row is not None and budget is not None and len(duals) > budget_row:  # no dual when the solver stopped short
        shadow = float(-duals[budget_row] * scale / max(float(budget), 1.0))
    return StockPlan(stock, hold, short, float(hold.sum() + short.sum()), float(price @ stock), abs(shadow), status)


def held_lines(h: Any, stock_t: Any, upper_t: np.ndarray, fixed: float) -> list[int]:
    """``S_n <= U_n y_n`` with ``y_n`` binary at cost ``fixed`` (scaled): a line is held or not; returns the y columns."""
    import highspy

    n = len(upper_t)
    y = h.addVariables(n, lb=0.0, ub=1.0, obj=[fixed] * n, type=highspy.HighsVarType.kInteger)
    for i in range(n):
        u = float(upper_t[i]) if np.isfinite(upper_t[i]) else 0.0
        h.addConstr(stock_t[i] - u * y[i] <= 0.0)
    return [v.index for v in y]


def unmet_demand(h: Any, stock_t: Any, unmet: Any, commodity: np.ndarray, shortfall: np.ndarray) -> None:
    """``u_ns + S_n >= D_ns`` for every draw in which commodity n is short (``u_ns >= 0``: the unmet demand).

    One row per such (n, s): ``commodity[k]`` is its n and ``shortfall[k]`` its ``D_ns``; added in one call
    (a row per ``addConstr`` made the LP 2.7 times slower to build)."""
    import highspy

    k = len(commodity)
    if not k:
        return
    s_col = np.array([v.index for v in stock_t], dtype=np.int32)
    u_col = np.array([v.index for v in unmet], dtype=np.int32)
    index = np.column_stack([u_col, s_col[commodity]]).ravel()
    h.addRows(k, np.asarray(shortfall, float), np.full(k, highspy.kHighsInf), 2 * k, np.arange(0, 2 * k, 2, dtype=np.int32), index,
              np.ones(2 * k))


def purchase_budget(h: Any, stock_t: Any, price: np.ndarray, budget: float | None) -> int | None:
    """``Σ_n P_n S_n <= B``, scaled by B; returns the row's index (its dual is the budget's shadow price)."""
    if budget is None:
        return None
    return int(h.addConstr((price / max(float(budget), 1.0) * stock_t).sum() <= 1.0).index)


@dataclass
class Pooling:
    """Separate stocks against one pooled stock for the same commodity."""

    separate_stock_t: dict[str, float]
    separate_cost_usd: dict[str, float]
    pooled_stock_t: float
    pooled_cost_usd: float
    saving_usd: float
    pooled_share: dict[str, float]
    pooled_cost_by_member_usd: dict[str, float]


def pool(shortfalls: dict[str, np.ndarray], weights: np.ndarray, holding: float, shortage: float,
         refills: dict[str, np.ndarray] | None = None, pooled_refill: np.ndarray | None = None) -> Pooling:
    """Pooled stock against the members' separate newsvendor stocks.

    The pool faces ``D_s = Σ_j D_js``; since the separate stocks together are a feasible pooled stock and
    ``max(Σ_j D_j - Σ_j S_j, 0) <= Σ_j max(D_j - S_j, 0)``, pooling never costs more. Sharing rule: each member
    pays the pooled cost in proportion to its stand-alone cost, so every member saves the same fraction. With
    refill premiums (``refills`` per member, ``pooled_refill`` the pool's, USD per tonne drawn: the members'
    shortfall-weighted premium) the bound is exact where no premium exceeds c (a tonne is then always released) and
    the members' premiums are equal. Where they differ (a control relaxed for one member's buyers only) the weighted
    premium can make the one pooled stock dearer; the pool then keeps the members' stocks as separate accounts, each
    released to its own member and refilled at its premium, which costs exactly their separate costs.
    """
    sep = {j: newsvendor(d, weights, holding, shortage, (refills or {}).get(j)) for j, d in shortfalls.items()}
    total = np.sum(np.array(list(shortfalls.values())), axis=0)
    ps, pc = newsvendor(total, weights, holding, shortage, pooled_refill)
    sep_cost = {j: c for j, (_, c) in sep.items()}
    z = sum(sep_cost.values())
    if pc > z:
        ps, pc = sum(s for s, _ in sep.values()), z
    share = {j: (c / z if z > 0 else 1.0 / len(sep_cost)) for j, c in sep_cost.items()}
    return Pooling({j: s for j, (s, _) in sep.items()}, sep_cost, ps, pc, z - pc, share, {j: pc * f for j, f in share.items()})
