"""Delivery plan: a transportation linear programme over projects, buyers and months (docs/deliver.md).

    min  Σ_{b,t,k} π_b (1 + k/S) u_btk + Σ_b Π m_b − ε Σ x_pbt
    s.t. Σ_b x_pbt <= K_pt                          capacity of project p in month t (t)
         Σ_p x_pbt + s_bt = D_bt                    demand of buyer b in month t; s_bt = shortfall (t)
         s_bt = Σ_k u_btk,  0 <= u_btk <= D_bt / S  the shortfall in S steps of a S-th of the demand (k = 1..S)
         Σ_{p,t} x_pbt + m_b >= M_b                 contract minimum over the horizon; m_b = unmet part
         x_pbt >= 0 only for eligible pairs (same node; origin rule; never to a country of concern)
         x_pbt <= c_pb K_pt                         an aggregate buyer's market share c_pb of uncontracted new output
         Σ_{b ∉ H_p} x_pbt <= (1 - r_p) K_pt         the share r_p of project p's output its share contracts H_p hold

π_b is the priority weight (priority 1: 100, 2: 10, 3: 1), Π a penalty larger than any π (1,000) so that
minimums are met whenever capacity allows; ε a tiny reward for delivering. Each further S-th of a buyer's demand left
short costs more (``S`` = :data:`RATIONING_STEPS`), so buyers of equal priority competing for the same supply are
rationed in proportion to their demand, to within 1/S of it, and a higher priority still comes first
(π_b (1 + 1) < π_b' for the next priority). Review 27: with a flat cost the programme gave all of Nyrstar's new
antimony to Japan and none to the USA, an arbitrary corner of a tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PRIORITY_WEIGHT = {1: 100.0, 2: 10.0, 3: 1.0}
MINIMUM_PENALTY = 1000.0
#: Steps of the shortfall's rising cost (module docstring): equal-priority buyers share to within 1/S (1 %) of their demand.
RATIONING_STEPS = 100


@dataclass
class DeliveryResult:
    """Allocation (project, buyer, month, tonnes), buyer and project summaries, solver status."""

    allocation: pd.DataFrame
    buyers: pd.DataFrame
    projects: pd.DataFrame
    status: str
    objective: float


@dataclass
class TransportModel:
    """The variables of the programme in HiGHS's modelling layer; the constraint families are the functions below."""

    h: Any
    pairs: list[tuple[int, int]]
    months: int
    scale: float
    x: Any
    s: Any
    m: Any

    def deliveries(self, ks: list[int], months: range | None = None) -> Any:
        """``Σ x_kt`` over the pairs ``ks`` and ``months`` (all months by default)."""
        months = months if months is not None else range(self.months)
        return self.x[np.array([k * self.months + t for k in ks for t in months], dtype=int)].sum()


def project_capacity(m: TransportModel, capacity: np.ndarray) -> None:
    """``Σ_b x_pbt <= K_pt`` for every project with an eligible buyer and every month."""
    by_p: dict[int, list[int]] = {}
    for k, (p, _) in enumerate(m.pairs):
        by_p.setdefault(p, []).append(k)
    for p in range(capacity.shape[0]):
        for t in range(m.months):
            if by_p.get(p):
                m.h.addConstr(m.deliveries(by_p[p], range(t, t + 1)) <= float(capacity[p, t]) / m.scale)


def demand_balance(m: TransportModel, demand: np.ndarray) -> None:
    """``Σ_p x_pbt + s_bt = D_bt`` for every buyer and month (``s_bt`` the shortfall)."""
    by_b = _pairs_by_buyer(m)
    for b in range(demand.shape[0]):
        for t in range(m.months):
            short = m.s[b * m.months + t]
            d = float(demand[b, t]) / m.scale
            m.h.addConstr((m.deliveries(by_b[b], range(t, t + 1)) + short if by_b.get(b) else short + 0.0) == d)


def rationing_steps(m: TransportModel, demand: np.ndarray, weight: np.ndarray, steps: int = RATIONING_STEPS) -> None:
    """``s_bt = Σ_k u_btk``, ``0 <= u_btk <= D_bt / S``, each step costing ``π_b (1 + k/S)`` (module docstring)."""
    B, T = demand.shape
    for b in range(B):
        for t in range(T):
            d = float(demand[b, t]) / m.scale
            u = m.h.addVariables(steps, lb=0.0, ub=d / steps, obj=[float(weight[b]) * (1.0 + k / steps) for k in range(1, steps + 1)])
            m.h.addConstr(m.s[b * T + t] - u.sum() == 0.0)


def contract_minimums(m: TransportModel, minimum: np.ndarray) -> None:
    """``Σ_{p,t} x_pbt + m_b >= M_b`` over the horizon for every buyer with a contract minimum."""
    by_b = _pairs_by_buyer(m)
    for b in range(len(minimum)):
        if minimum[b] > 0:
            unmet = m.m[b]
            m.h.addConstr((m.deliveries(by_b[b]) + unmet if by_b.get(b) else unmet + 0.0) >= float(minimum[b]) / m.scale)


def _pairs_by_buyer(m: TransportModel) -> dict[int, list[int]]:
    by_b: dict[int, list[int]] = {}
    for k, (_, b) in enumerate(m.pairs):
        by_b.setdefault(b, []).append(k)
    return by_b


def market_share_caps(m: TransportModel, capacity: np.ndarray, pair_share: np.ndarray | None) -> None:
    """``x_pbt <= c_pb K_pt`` where ``c_pb`` is finite: an aggregate buyer takes at most its market's share of a
    project's uncontracted new output (the share of an added tonne that reaches it, as in the stocks and the
    portfolio; review 33 F5), the rest going to the other buyers outside the restrictor."""
    if pair_share is None or m.x is None:
        return
    for k, (p, b) in enumerate(m.pairs):
        c = pair_share[p, b]
        if np.isfinite(c):
            for t in range(m.months):
                m.h.changeColBounds(int(m.x[k * m.months + t].index), 0.0, float(max(c, 0.0) * capacity[p, t] / m.scale))


def contract_reserves(m: TransportModel, capacity: np.ndarray, reserve: np.ndarray | None, holder: np.ndarray | None) -> None:
    """``Σ_{b ∉ H_p} x_pbt <= (1 - r_p) K_pt`` for every project with contracts for a share of its output (review 35
    L5: JARE holds 65 % of Lynas' Dy/Tb; the other buyers share the rest, whatever their priority)."""
    if reserve is None or holder is None or m.x is None:
        return
    for p in range(capacity.shape[0]):
        if not reserve[p] > 0:
            continue
        others = [k for k, (q, b) in enumerate(m.pairs) if q == p and not holder[p, b]]
        if not others:
            continue
        for t in range(m.months):
            m.h.addConstr(m.deliveries(others, range(t, t + 1)) <= float(max(1.0 - reserve[p], 0.0) * capacity[p, t]) / m.scale)


def solve_transport(capacity: np.ndarray, demand: np.ndarray, eligible: np.ndarray, priority: np.ndarray,
                    minimum: np.ndarray, project_ids: list[str], buyer_ids: list[str],
                    pair_share: np.ndarray | None = None, reserve: np.ndarray | None = None,
                    holder: np.ndarray | None = None) -> DeliveryResult:
    """Solve the programme of the module docstring.

    ``capacity`` (P, T) t, ``demand`` (B, T) t, ``eligible`` (P, B) bool, ``priority`` (B,) in {1, 2, 3},
    ``minimum`` (B,) t over the horizon (0 = none), ``pair_share`` (P, B) the most of a project's output a buyer may
    take (NaN = no cap; :func:`market_share_caps`), ``reserve`` (P,) the share of a project's output its share
    contracts hold and ``holder`` (P, B) those contracts' buyers (:func:`contract_reserves`).
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
    scale = max(float(demand.max()) if demand.size else 1.0, float(capacity.max()) if capacity.size else 1.0, 1.0)
    w = np.array([PRIORITY_WEIGHT.get(int(q), 1.0) for q in priority])
    # variables (tonnes / scale), costs on creation: x_pbt (pair k, month t at k * T + t), s_bt, m_b
    m = TransportModel(h, pairs, T, scale,
                       x=h.addVariables(n_x, lb=0.0, obj=-1e-6) if n_x else None,
                       s=h.addVariables(n_s, lb=0.0, obj=0.0),
                       m=h.addVariables(n_m, lb=0.0, obj=MINIMUM_PENALTY))
    project_capacity(m, capacity)
    demand_balance(m, demand)
    rationing_steps(m, demand, w)
    contract_minimums(m, minimum)
    market_share_caps(m, capacity, pair_share)
    contract_reserves(m, capacity, reserve, holder)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    # an empty model (no buyer with a published volume) is solved: nothing to deliver
    if h.getModelStatus() not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kModelEmpty):
        from critmin.errors import CritminError

        raise CritminError(f"the delivery programme could not be solved: HiGHS status '{status}'")
    sol = np.asarray(h.getSolution().col_value) * scale
    x = sol[:n_x].reshape(len(pairs), T) if pairs else np.zeros((0, T))
    short = sol[n_x : n_x + n_s].reshape(B, T)
    unmet = sol[n_x + n_s : n_x + n_s + n_m]  # the rationing steps follow (rationing_steps)
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
