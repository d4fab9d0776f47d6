"""Delivery plan: a transportation linear programme over projects, buyers and months (docs/deliver.md).

    min  Σ_{b,t} π_b s_bt + Σ_b Π m_b − ε Σ x_pbt
    s.t. Σ_b x_pbt <= K_pt                          capacity of project p in month t (t)
         Σ_p x_pbt + s_bt = D_bt                    demand of buyer b in month t; s_bt = shortfall (t)
         Σ_{p,t} x_pbt + m_b >= M_b                 contract minimum over the horizon; m_b = unmet part
         x_pbt >= 0 only for eligible pairs (same node; origin rule; never to a country of concern)

π_b is the priority weight (priority 1: 100, 2: 10, 3: 1), Π a penalty larger than any π (1,000) so that
minimums are met whenever capacity allows; ε a tiny reward for delivering (ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PRIORITY_WEIGHT = {1: 100.0, 2: 10.0, 3: 1.0}
MINIMUM_PENALTY = 1000.0


@dataclass
class DeliveryResult:
    """Allocation (project, buyer, month, tonnes), buyer and project summaries, solver status."""

    allocation: pd.DataFrame
    buyers: pd.DataFrame
    projects: pd.DataFrame
    status: str
    objective: float


def solve_transport(capacity: np.ndarray, demand: np.ndarray, eligible: np.ndarray, priority: np.ndarray,
                    minimum: np.ndarray, project_ids: list[str], buyer_ids: list[str]) -> DeliveryResult:
    """Solve the programme of the module docstring.

    ``capacity`` (P, T) t, ``demand`` (B, T) t, ``eligible`` (P, B) bool, ``priority`` (B,) in {1, 2, 3},
    ``minimum`` (B,) t over the horizon (0 = none).
    """
    import highspy

    from critmin.lp import quiet_highs

    P, T = capacity.shape
    B = demand.shape[0]
    pairs = [(p, b) for p in range(P) for b in range(B) if eligible[p, b]]
    n_x = len(pairs) * T
    n_s = B * T
    n_m = B
    h = quiet_highs()
    inf = highspy.kHighsInf
    scale = max(float(demand.max()) if demand.size else 1.0, float(capacity.max()) if capacity.size else 1.0, 1.0)
    w = np.array([PRIORITY_WEIGHT.get(int(q), 1.0) for q in priority])
    cost = np.concatenate([np.full(n_x, -1e-6), np.repeat(w, T), np.full(n_m, MINIMUM_PENALTY)])
    h.addVars(n_x + n_s + n_m, np.zeros(n_x + n_s + n_m), np.full(n_x + n_s + n_m, inf))
    h.changeColsCost(len(cost), np.arange(len(cost), dtype=np.int32), cost)

    def xcol(k: int, t: int) -> int:
        return k * T + t

    starts: list[int] = []
    idx: list[int] = []
    val: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    by_p: dict[int, list[int]] = {}
    by_b: dict[int, list[int]] = {}
    for k, (p, b) in enumerate(pairs):
        by_p.setdefault(p, []).append(k)
        by_b.setdefault(b, []).append(k)
    for p in range(P):  # capacity
        for t in range(T):
            ks = by_p.get(p, [])
            if ks:
                starts.append(len(idx))
                idx += [xcol(k, t) for k in ks]
                val += [1.0] * len(ks)
                lo.append(-inf)
                hi.append(float(capacity[p, t]) / scale)
    for b in range(B):  # demand balance
        for t in range(T):
            ks = by_b.get(b, [])
            starts.append(len(idx))
            idx += [xcol(k, t) for k in ks] + [n_x + b * T + t]
            val += [1.0] * len(ks) + [1.0]
            d = float(demand[b, t]) / scale
            lo.append(d)
            hi.append(d)
    for b in range(B):  # contract minimums
        if minimum[b] > 0:
            ks = by_b.get(b, [])
            starts.append(len(idx))
            idx += [xcol(k, t) for k in ks for t in range(T)] + [n_x + n_s + b]
            val += [1.0] * (len(ks) * T) + [1.0]
            lo.append(float(minimum[b]) / scale)
            hi.append(inf)
    if lo:
        h.addRows(len(lo), np.array(lo), np.array(hi), len(idx), np.array(starts, dtype=np.int32), np.array(idx, dtype=np.int32), np.array(val))
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        from critmin.errors import CritminError

        raise CritminError(f"the delivery programme could not be solved: HiGHS status '{status}'")
    sol = np.asarray(h.getSolution().col_value) * scale
    x = sol[:n_x].reshape(len(pairs), T) if pairs else np.zeros((0, T))
    short = sol[n_x : n_x + n_s].reshape(B, T)
    unmet = sol[n_x + n_s :]
    rows = [{"project_id": project_ids[p], "buyer_id": buyer_ids[b], "month": t + 1, "tonnes": float(x[k, t])}
            for k, (p, b) in enumerate(pairs) for t in range(T) if x[k, t] > 1e-9]
    alloc = pd.DataFrame(rows, columns=["project_id", "buyer_id", "month", "tonnes"])
    delivered_b = np.zeros(B)
    used_p = np.zeros(P)
    for k, (p, b) in enumerate(pairs):
        delivered_b[b] += x[k].sum()
        used_p[p] += x[k].sum()
    buyers = pd.DataFrame({
        "buyer_id": buyer_ids, "demand_t": demand.sum(axis=1), "delivered_t": delivered_b, "shortfall_t": short.sum(axis=1),
        "share_met": np.where(demand.sum(axis=1) > 0, delivered_b / np.maximum(demand.sum(axis=1), 1e-12), np.nan),
        "minimum_t": minimum, "minimum_unmet_t": unmet,
    })
    projects = pd.DataFrame({"project_id": project_ids, "capacity_t": capacity.sum(axis=1), "delivered_t": used_p,
                             "utilisation": np.where(capacity.sum(axis=1) > 0, used_p / np.maximum(capacity.sum(axis=1), 1e-12), np.nan)})
    obj = float(w @ short.sum(axis=1) + MINIMUM_PENALTY * unmet.sum())
    return DeliveryResult(alloc, buyers, projects, status, obj)
