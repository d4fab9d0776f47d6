"""Portfolio optimiser: a mixed-integer programme on HiGHS, a greedy baseline and the efficient frontier.

Formulation (docs/portfolio.md). Options o = (project, instrument, agency); scenario draws s with weights
``w_s``; nodes n.

    max  Σ_s w_s Σ_n ((v_n - v^P_n) y_ns + v^P_n y^P_ns + π_ns k_ns)  +  γ Σ_o b_o x_o  -  λ (η + Σ_s w_s u_s / (1 - α))  -  ε Σ_o c_o x_o
    s.t. Σ_{o ∈ p} x_o <= 1                               one option per project            (project)
         z_n = Σ_o S_no x_o                               added supply at node n, t/yr      (supply)
         y_ns + k_ns <= f_ns z_n,  0 <= y_ns <= short_ns,  0 <= k_ns <= K_ns   shortfall avoided, t  (avoided)
         y^P_ns <= g_ns z_n,  0 <= y^P_ns <= short_ns     tonnes whose price effect counts  (avoided)
         Σ_{o ∈ k} c_o x_o <= B_k                         budget of agency-instrument k     (budget)
         Σ_{o in country c} c_o x_o <= δ_c Σ_k B_k         diversification by country        (country)
         Σ_{o in commodity m} c_o x_o <= δ_m Σ_k B_k       diversification by commodity      (commodity)
         Σ_{o of participant p} c_o x_o >= μ_p Σ_o c_o x_o  co-financing share of participant (cofinance)
         u_s >= L_s - Σ_n v_n y_ns - η,  u_s >= 0          CVaR of the residual loss (when λ > 0)
         x_o ∈ {0, 1}

``Δq_o`` = additional expected capacity (t/yr) the option brings at its node, ``S_no`` its supply at node n (``Δq_o``
at its own node, its co-products' share at theirs: :func:`supply_pairs`), ``g_ns`` = months of disruption at n in
draw s / 12, ``f_ns = m_n g_ns`` with ``m_n`` the share of an added tonne that reaches the perspective (``supply_share``),
``v^P_n`` the part of ``v_n`` that is the price effect (``price_value_per_t``: every tonne the segment receives lowers
the price the perspective pays; counted apart only where m_n < 1), ``v_n`` = loss per tonne short at n (USD/t), ``c_o`` = budget cost (USD), ``b_o`` = secondary
bonus (e.g. capacity added outside countries of concern at concentrated stages), ``L_s = Σ_n (v_n short_ns + π_ns K_ns)``.
With stocks in place (``stocked``), ``short_ns`` is what they leave and ``K_ns`` what they cover; a tonne a project adds
there saves buying a released tonne back, ``π_ns <= v_n`` (``stocked_value``; docs/portfolio.md §5, "Net of the
stocks"). Without stocks K = 0. Options that miss the deadline are removed before solving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from critmin.errors import CritminError
from critmin.lp import quiet_highs

OPTION_COLUMNS = ("project_id", "instrument", "agency", "budget_key", "participant", "node", "country", "commodity",
                  "dq_t", "cost_usd", "amount_usd", "months_to_output", "bonus")


class PortfolioError(CritminError):
    """Infeasible or invalid portfolio input."""


@dataclass
class PortfolioProblem:
    """Inputs of the optimiser.

    - ``options``: DataFrame with OPTION_COLUMNS (``node`` indexes the rows of ``shortfall``).
    - ``shortfall`` (nodes × draws, t) and ``months`` (nodes × draws, months of disruption) from the simulator.
    - ``value_per_t`` (nodes,) USD per tonne short; ``weights`` (draws,) summing to 1.
    - ``budgets``: budget_key → USD.
    """

    options: pd.DataFrame
    shortfall: np.ndarray
    months: np.ndarray
    value_per_t: np.ndarray
    weights: np.ndarray
    budgets: dict[str, float]
    node_names: list[str] = field(default_factory=list)
    deadline_months: float | None = None
    max_country_share: float = 1.0
    max_commodity_share: float = 1.0
    min_participant_share: dict[str, float] = field(default_factory=dict)
    must_include: list[str] = field(default_factory=list)
    cvar_alpha: float = 0.95
    cvar_weight: float = 0.0
    bonus_weight: float = 0.0
    cost_tiebreak: float = 1e-9
    #: expected annual avoided loss (USD/yr) that one USD of budget cost must buy to be worth spending: the
    #: marginal cost of public funds over the present-value factor of the years of benefit (docs/portfolio.md §5).
    #: 0 = money has no price (every option with a benefit is kept while budgets last).
    cost_weight: float = 0.0
    #: (nodes, draws) t of the shortfall that stocks in place cover (K), and USD/t a project's tonne saves there
    #: (π: buying the released tonne back, at most v); None: no stocks
    stocked: np.ndarray | None = None
    stocked_value: np.ndarray | None = None
    #: (nodes,) the share of a tonne added at each node that reaches the perspective (its members' demand over the
    #: market the disruption rations: :meth:`critmin.simulate.run.Simulator.share_of_added_supply`); None: all of it
    supply_share: np.ndarray | None = None
    #: (nodes,) USD/t: the part ``v^P_n`` of ``value_per_t`` that is the price effect, which an added tonne brings the
    #: perspective whichever buyer of the segment receives it; None: 0
    price_value_per_t: np.ndarray | None = None

    def relief_factor(self, rows: np.ndarray | None = None, shared: bool = True) -> np.ndarray:
        """``f_ns = m_n months_ns / 12``: the tonnes per (t/yr added) that reach the perspective in a draw
        (``shared=False``: ``months_ns / 12``, the tonnes that reach the segment)."""
        idx = np.arange(self.shortfall.shape[0]) if rows is None else np.asarray(rows)
        m = np.ones(len(idx)) if self.supply_share is None or not shared else np.asarray(self.supply_share, dtype=float)[idx]
        return self.months[idx] / 12.0 * m[:, None]

    def price_part(self) -> np.ndarray:
        """``v^P_n`` (nodes,), within [0, v_n]; counted apart only where the perspective gets part of a tonne
        (``m_n < 1``): elsewhere both parts follow the same tonnes."""
        n = self.shortfall.shape[0]
        if self.price_value_per_t is None or self.supply_share is None:
            return np.zeros(n)
        pe = np.clip(np.asarray(self.price_value_per_t, dtype=float), 0.0, np.asarray(self.value_per_t, dtype=float))
        return np.where(np.asarray(self.supply_share, dtype=float) < 1.0, pe, 0.0)

    def layers(self) -> tuple[np.ndarray, np.ndarray]:
        """``(K, π)``: zeros without stocks."""
        if self.stocked is None:
            z = np.zeros_like(self.shortfall)
            return z, z
        pi = np.zeros_like(self.shortfall) if self.stocked_value is None else np.minimum(self.stocked_value, self.value_per_t[:, None])
        return self.stocked, np.maximum(pi, 0.0)

    def avoided_value(self, z: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """USD avoided per (node, draw) with added supply z (t/yr) at the nodes ``rows`` (all by default):

            (v_n - v^P_n) min(short_ns, m_n g_ns z_n) + v^P_n min(short_ns, g_ns z_n) + π_ns min(K_ns, (m_n g_ns z_n - short_ns)⁺)

        with ``g_ns = months_ns / 12``: the perspective's share ``m_n`` of a project's tonnes relieves the shortfall the
        stocks leave first, then spares the buy-back of the stocks' releases; the price effect ``v^P`` comes with
        every tonne the segment receives, up to the perspective's shortfall (the tonnes its figure was computed
        for: the first-order price fall is not extrapolated beyond them)."""
        idx = np.arange(self.shortfall.shape[0]) if rows is None else np.asarray(rows)
        k, pi = self.layers()
        zz = np.asarray(z, dtype=float)[..., None]
        fz = self.relief_factor(idx) * zz
        short = self.shortfall[idx]
        pe = self.price_part()[idx][:, None]
        y = np.minimum(short, fz)
        y_seg = np.minimum(short, self.relief_factor(idx, shared=False) * zz)
        return (self.value_per_t[idx][:, None] - pe) * y + pe * y_seg + pi[idx] * np.minimum(k[idx], np.maximum(fz - short, 0.0))

    def loss_potential(self) -> np.ndarray:
        """``L_ns = v_n short_ns + π_ns K_ns`` (USD): what the options could avoid."""
        k, pi = self.layers()
        return self.value_per_t[:, None] * self.shortfall + pi * k

    def eligible(self) -> pd.DataFrame:
        o = self.options
        keep = (o["dq_t"] > 0) & o["budget_key"].isin(list(self.budgets))
        if self.deadline_months is not None:
            keep &= o["months_to_output"] <= self.deadline_months
        return o[keep].reset_index(drop=True)


@dataclass
class Solution:
    """An optimised (or greedy) portfolio."""

    selected: pd.DataFrame
    objective: float
    expected_avoided_usd: float
    cvar_residual_usd: float
    spent: dict[str, float]
    status: str
    gap: float
    seconds: float
    avoided_by_node: dict[str, float]
    method: str


def _avoided(problem: PortfolioProblem, z: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Given added supply z (nodes,), the USD avoided per (node, draw), the expected avoided loss and the CVaR of the
    residual loss."""
    val = problem.avoided_value(z)
    avoided_s = val.sum(axis=0)
    exp = float(problem.weights @ avoided_s)
    resid = problem.loss_potential().sum(axis=0) - avoided_s
    return val, exp, _cvar(resid, problem.weights, problem.cvar_alpha)


def added_avoided(problem: PortfolioProblem, selected: pd.DataFrame, node: int, dq_t: float,
                  co_supply: Any = None) -> float:
    """Expected annual avoided loss (USD/yr) that ``dq_t`` t/yr more at ``node`` (and the co-products' ``(node, t/yr)``
    pairs of ``co_supply``) adds to the ``selected`` options."""
    z = added_supply(problem, selected, np.ones(len(selected))) if len(selected) else np.zeros(problem.shortfall.shape[0])
    _, before, _ = _avoided(problem, z)
    z[node] += dq_t
    for nn, qq in co_supply if isinstance(co_supply, (list, tuple)) else ():
        z[int(nn)] += float(qq)
    _, after, _ = _avoided(problem, z)
    return after - before


def expected_avoided(problem: PortfolioProblem, opts: pd.DataFrame) -> float:
    """Expected annual avoided loss (USD/yr) of taking every option of ``opts`` (rows of ``problem.options``' form)."""
    if not len(opts):
        return 0.0
    return _avoided(problem, added_supply(problem, opts, np.ones(len(opts))))[1]


def economic_cost(opts: pd.DataFrame) -> np.ndarray:
    """Expected cost to the government of each option (USD, >= 0): the credit-reform cost of loans and guarantees,
    the expected loss of equity, grants in full (column ``economic_cost_usd``; the budget charge ``cost_usd``
    where the column is absent). This, not the face amount a budget may be charged, is what the net-benefit test
    prices."""
    col = "economic_cost_usd" if "economic_cost_usd" in opts.columns else "cost_usd"
    return np.maximum(opts[col].to_numpy(dtype=float), 0.0)


#: Optional option column: the supply an option adds at other nodes, a list of (node, t/yr) (a plant's co-products).
CO_SUPPLY = "co_supply"


def supply_pairs(opts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(option position, node, t/yr) of every supply the options add: each option's ``dq_t`` at its ``node``, and,
    where the column ``co_supply`` is present, its co-products' supply at their nodes (review 13: NICO's bismuth and
    White Mesa Phase 2's Dy and Tb counted as revenue but relieved no node)."""
    o = np.arange(len(opts))
    n = opts["node"].to_numpy(dtype=int)
    q = opts["dq_t"].to_numpy(dtype=float)
    if CO_SUPPLY in opts.columns:
        extra = [(i, int(nn), float(qq)) for i, pairs in enumerate(opts[CO_SUPPLY])
                 if isinstance(pairs, (list, tuple)) for nn, qq in pairs]
        if extra:
            eo, en, eq = (np.array(v) for v in zip(*extra, strict=True))
            o, n, q = np.concatenate([o, eo.astype(int)]), np.concatenate([n, en.astype(int)]), np.concatenate([q, eq.astype(float)])
    return o, n, q


def added_supply(problem: PortfolioProblem, opts: pd.DataFrame, x: np.ndarray) -> np.ndarray:
    """``z_n = Σ_o S_no x_o``: supply added at each node (t/yr) by the options chosen in ``x`` (co-products included)."""
    o, n, q = supply_pairs(opts)
    z = np.zeros(problem.shortfall.shape[0])
    np.add.at(z, n, q * np.asarray(x, dtype=float)[o])
    return z


def _cvar(x: np.ndarray, w: np.ndarray, alpha: float) -> float:
    """CVaR_α of a discrete distribution (values x, weights w): mean of the worst 1-α tail (Rockafellar-Uryasev)."""
    order = np.argsort(-x)
    xs, ws = x[order], w[order]
    tail = 1.0 - alpha
    cum = np.cumsum(ws)
    take = np.minimum(ws, np.maximum(tail - (cum - ws), 0.0))
    return float(xs @ take / tail) if tail > 0 else float(xs.max())


def _result(problem: PortfolioProblem, opts: pd.DataFrame, x: np.ndarray, status: str, gap: float, seconds: float, method: str) -> Solution:
    sel = opts[x > 0.5].copy()
    z = added_supply(problem, opts, (x > 0.5).astype(float))
    val, exp, cvar = _avoided(problem, z)
    spent = {k: float(sel.loc[sel["budget_key"] == k, "cost_usd"].sum()) for k in problem.budgets if np.isfinite(problem.budgets[k])}
    obj = exp + problem.bonus_weight * float(sel["bonus"].sum()) - problem.cvar_weight * cvar - problem.cost_weight * float(economic_cost(sel).sum())
    names = problem.node_names or [str(i) for i in range(len(z))]
    by_node = {names[n]: float(problem.weights @ val[n]) for n in np.flatnonzero(z)}
    return Solution(sel.reset_index(drop=True), obj, exp, cvar, spent, status, gap, seconds, by_node, method)


def check(problem: PortfolioProblem, opts: pd.DataFrame) -> None:
    """Reject inputs that cannot be solved, with a message saying why."""
    neg = {k: b for k, b in problem.budgets.items() if b < 0 or np.isnan(b)}
    if neg:
        raise PortfolioError(f"negative or missing budget for {', '.join(sorted(neg))}")
    if not 0.0 < problem.cvar_alpha < 1.0:
        raise PortfolioError(f"cvar_alpha must lie strictly between 0 and 1, got {problem.cvar_alpha}")
    for name, v in (("cvar_weight", problem.cvar_weight), ("bonus_weight", problem.bonus_weight), ("cost_weight", problem.cost_weight)):
        if v < 0 or not np.isfinite(v):
            raise PortfolioError(f"{name} must be a non-negative number, got {v}")
    for name, v in (("max_country_share", problem.max_country_share), ("max_commodity_share", problem.max_commodity_share)):
        if not 0.0 < v <= 1.0:
            raise PortfolioError(f"{name} must lie in (0, 1], got {v}")
    if sum(problem.min_participant_share.values()) > 1.0 + 1e-12:
        raise PortfolioError(
            f"co-financing minimum shares add up to {sum(problem.min_participant_share.values()):.2f} > 1 "
            f"({problem.min_participant_share}): no portfolio can meet them"
        )
    for pid in problem.must_include:
        if pid not in set(opts["project_id"]):
            why = ("it has no option (see its reason under 'projects': e.g. no capacity on its node's basis or no simulated "
                   "shortfall at its node)") if pid not in set(problem.options["project_id"]) else (
                "its options miss the deadline, add no capacity or have no budget")
            raise PortfolioError(f"must_include project {pid} has no eligible option: {why}")


@dataclass
class PortfolioModel:
    """The MIP of the module docstring in HiGHS's own modelling layer (``highspy`` variables and expressions),
    built by one function per constraint family below.

    Variables: ``x`` (options, binary), ``r`` (share of the shortfall of node n in draw s avoided, one per
    (n, s) in ``ys`` where n can receive supply and is short: ``r_ns = y_ns / short_ns``, so rows compare
    capacity with shortfall and stay well scaled), ``q`` (with stocks in place, the share of the stocked part K
    spared, ``q_ns = k_ns / K_ns``, one per pair of ``ys`` with K > 0), and when λ > 0 ``eta`` and ``u`` (CVaR).
    Money in the objective is in units of the expected loss potential ``L = Σ w_s (v_n short_ns + π_ns K_ns)``
    (``scale``); HiGHS minimises, so the maximisation objective is negated."""

    problem: PortfolioProblem
    opts: pd.DataFrame
    h: Any
    x: Any
    r: Any
    eta: Any
    u: Any
    ys: list[tuple[int, int]]
    short: np.ndarray
    scale: float
    cost: np.ndarray
    node: np.ndarray
    q: Any = None
    qk: np.ndarray | None = None  # positions in ``ys`` of the pairs with a stocked part (one q each)
    stocked: np.ndarray | None = None  # K of every pair of ``ys``
    pi: np.ndarray | None = None  # π of every pair of ``ys``
    r2: Any = None  # share of short_ns that the price effect of the segment's added tonnes covers (one per pair of ``pk``)
    pk: np.ndarray | None = None  # positions in ``ys`` of the pairs with a price part counted apart

    def gain_terms(self) -> tuple[np.ndarray, Any]:
        """Per pair of ``ys``, the weighted potential of ``r`` (``w (v - v^P) short``) and of ``q`` (``w π K``, at
        ``qk``)."""
        p = self.problem
        pe = p.price_part()
        pot_r = np.array([p.weights[s] * (p.value_per_t[n] - pe[n]) for n, s in self.ys]) * self.short
        if self.q is None or self.qk is None or self.pi is None or self.stocked is None:
            return pot_r, None
        w = np.array([p.weights[self.ys[k][1]] for k in self.qk])
        return pot_r, w * self.pi[self.qk] * self.stocked[self.qk]

    def price_terms(self) -> np.ndarray:
        """Per pair of ``pk``, the weighted potential of ``r2`` (``w v^P short``)."""
        p = self.problem
        if self.pk is None:
            return np.zeros(0)
        pe = p.price_part()
        return np.array([p.weights[self.ys[k][1]] * pe[self.ys[k][0]] for k in self.pk]) * self.short[self.pk]

    @classmethod
    def variables(cls, problem: PortfolioProblem, opts: pd.DataFrame, h: Any) -> PortfolioModel:
        import highspy

        node = opts["node"].to_numpy(dtype=int)
        kk, pi = problem.layers()
        ys = [(int(n), int(s)) for n in np.unique(supply_pairs(opts)[1]) for s in np.flatnonzero((problem.shortfall[n] > 0) | (kk[n] * pi[n] > 0))]
        short = np.array([problem.shortfall[n, s] for n, s in ys])
        stocked = np.array([kk[n, s] for n, s in ys])
        pi_k = np.array([pi[n, s] for n, s in ys])
        x = h.addVariables(len(opts), lb=0.0, ub=1.0, type=highspy.HighsVarType.kInteger)
        r = h.addVariables(len(ys), lb=0.0, ub=1.0)
        qk = np.flatnonzero(stocked * pi_k > 0) if problem.stocked is not None else np.zeros(0, dtype=int)
        q = h.addVariables(len(qk), lb=0.0, ub=1.0) if len(qk) else None
        pe = problem.price_part()
        pk = np.array([k for k, (n, _) in enumerate(ys) if pe[n] > 0 and short[k] > 0], dtype=int)
        r2 = h.addVariables(len(pk), lb=0.0, ub=1.0) if len(pk) else None
        eta = u = None
        if problem.cvar_weight > 0:
            eta = h.addVariable(lb=-highspy.kHighsInf, ub=highspy.kHighsInf)
            u = h.addVariables(problem.shortfall.shape[1], lb=0.0)
        pot = np.array([problem.weights[s] * (problem.value_per_t[n] * short[k] + pi_k[k] * stocked[k]) for k, (n, s) in enumerate(ys)])
        return cls(problem, opts, h, x, r, eta, u, ys, short, max(float(pot.sum()) if len(pot) else 0.0, 1e-12),
                   opts["cost_usd"].to_numpy(dtype=float), node, q, qk if q is not None else None, stocked, pi_k,
                   r2, pk if r2 is not None else None)

    def objective(self) -> Any:
        """``min -Σ w_s v_n short_ns r_ns / L - γ Σ b_o x_o / L + κ Σ e_o x_o / L + ε c_o x_o / max c
        + λ (η + Σ_s w_s u_s / (1 - α))``."""
        p, o = self.problem, self.opts
        pot, pot_q = self.gain_terms()
        c_x = (-(p.bonus_weight * o["bonus"].to_numpy(dtype=float)) + p.cost_weight * economic_cost(o)) / self.scale \
            + p.cost_tiebreak * self.cost / max(self.cost.max(), 1.0)
        obj = (c_x * self.x).sum() + (-pot / self.scale * self.r).sum()
        if pot_q is not None:
            obj = obj + (-pot_q / self.scale * self.q).sum()
        if self.r2 is not None:
            obj = obj + (-self.price_terms() / self.scale * self.r2).sum()
        if self.eta is not None:
            obj = obj + p.cvar_weight * self.eta + (p.cvar_weight * p.weights / (1.0 - p.cvar_alpha) * self.u).sum()
        return obj


def one_option_per_project(m: PortfolioModel) -> None:
    """``Σ_{o ∈ p} x_o <= 1`` for each project with several options; ``= 1`` for a must-include project."""
    must = set(m.problem.must_include)
    for pid, g in m.opts.groupby("project_id", sort=True).groups.items():
        if len(g) > 1 or pid in must:
            total = m.x[np.asarray(g)].sum()
            m.h.addConstr(total == 1.0 if pid in must else total <= 1.0)


def avoided_within_added_supply(m: PortfolioModel) -> None:
    """``short_ns r_ns + K_ns q_ns <= f_ns Σ_o S_no x_o``: a draw's shortfall avoided at a node (and, with stocks in
    place, the stocked part spared) is at most what the options add there (their own node's ``Δq_o``, or a
    co-product's) during its months of disruption, the perspective's share of them (``f_ns = m_n months_ns / 12``), written over ``short_ns + K_ns``."""
    p = m.problem
    po, pn, pq = supply_pairs(m.opts)
    supply = {n: (pq[k] * m.x[po[k]]).sum() for n in np.unique(pn) for k in [np.flatnonzero(pn == n)]}  # z_n, built once
    qpos = {int(k): i for i, k in enumerate(m.qk)} if m.qk is not None else {}
    stocked = m.stocked if m.stocked is not None else np.zeros(len(m.ys))
    factor = p.relief_factor()
    for k, (n, s) in enumerate(m.ys):
        tot = m.short[k] + (stocked[k] if k in qpos else 0.0)
        f = factor[n, s] / tot
        lhs = (m.short[k] / tot) * m.r[k]
        if k in qpos:
            lhs = lhs + (stocked[k] / tot) * m.q[qpos[k]]
        m.h.addConstr(lhs - f * supply[n] <= 0.0)
    # the price part: short_ns r2_ns <= g_ns Σ_o S_no x_o (every tonne the segment receives), written over short_ns
    if m.r2 is not None and m.pk is not None:
        seg = p.relief_factor(shared=False)
        for i, k in enumerate(m.pk):
            n, s = m.ys[int(k)]
            m.h.addConstr(m.r2[i] - seg[n, s] / m.short[int(k)] * supply[n] <= 0.0)


def budget_limits(m: PortfolioModel) -> None:
    """``Σ_{o ∈ k} c_o x_o <= B_k`` for each finite budget of an agency and instrument."""
    keys = m.opts["budget_key"].to_numpy()
    for key, b in sorted(m.problem.budgets.items()):
        o = np.flatnonzero(keys == key)
        if len(o) and np.isfinite(b):
            m.h.addConstr((m.cost[o] * m.x[o]).sum() <= float(b))


def diversification_limits(m: PortfolioModel) -> None:
    """``Σ_{o in country c} c_o x_o <= δ_c Σ_k B_k`` and the same by commodity, when a share is below 1."""
    p = m.problem
    total = float(sum(b for b in p.budgets.values() if np.isfinite(b)))
    for colname, share in (("country", p.max_country_share), ("commodity", p.max_commodity_share)):
        if share < 1.0:
            for _, g in m.opts.groupby(colname).groups.items():
                o = np.asarray(g)
                m.h.addConstr((m.cost[o] * m.x[o]).sum() <= share * total)


def cofinancing_shares(m: PortfolioModel) -> None:
    """``Σ_{o of participant p} c_o x_o >= μ_p Σ_o c_o x_o``, written ``Σ_o c_o (1[o of p] - μ_p) x_o >= 0``."""
    part = m.opts["participant"].to_numpy()
    for pname, mu in sorted(m.problem.min_participant_share.items()):
        mine = (part == pname).astype(float)
        m.h.addConstr((m.cost * (mine - mu) * m.x).sum() >= 0.0)


def cvar_of_residual_loss(m: PortfolioModel) -> None:
    """``u_s >= L_s - Σ_n v_n short_ns r_ns - η`` (Rockafellar-Uryasev), scaled by ``L``: ``(Σ v short r + η + u_s)
    / L >= L_s / L``, when λ > 0."""
    if m.eta is None:
        return
    p = m.problem
    loss_s = p.loss_potential().sum(axis=0)
    by_draw: dict[int, list[int]] = {}
    for k, (_, d_k) in enumerate(m.ys):
        by_draw.setdefault(int(d_k), []).append(k)
    q_by_draw: dict[int, list[int]] = {}
    if m.qk is not None:
        for i, k in enumerate(m.qk):
            q_by_draw.setdefault(int(m.ys[int(k)][1]), []).append(i)
    for draw in range(p.shortfall.shape[1]):
        ks = np.array(by_draw.get(draw, []), dtype=int)
        pe = p.price_part()
        avoided = (np.array([(p.value_per_t[m.ys[k][0]] - pe[m.ys[k][0]]) * m.short[k] / m.scale for k in ks]) * m.r[ks]).sum() if len(ks) else 0.0
        if m.r2 is not None and m.pk is not None:
            ps = np.flatnonzero(np.isin(m.pk, ks))
            if len(ps):
                avoided = avoided + (np.array([pe[m.ys[int(m.pk[i])][0]] * m.short[int(m.pk[i])] / m.scale for i in ps]) * m.r2[ps]).sum()
        qs = np.array(q_by_draw.get(draw, []), dtype=int)
        if len(qs) and m.qk is not None and m.pi is not None and m.stocked is not None:
            kq = m.qk[qs]
            avoided = avoided + (m.pi[kq] * m.stocked[kq] / m.scale * m.q[qs]).sum()
        m.h.addConstr(avoided + m.eta + m.u[draw] >= float(loss_s[draw]) / m.scale)


#: The constraint families of the portfolio programme, in the order they are added.
CONSTRAINT_FAMILIES = (one_option_per_project, avoided_within_added_supply, budget_limits, diversification_limits, cofinancing_shares,
                       cvar_of_residual_loss)


def solve(problem: PortfolioProblem, gap: float = 0.01, time_limit: float = 60.0, threads: int = 2) -> Solution:
    """Solve the MIP with HiGHS to the relative ``gap``; raises PortfolioError when infeasible. The model is
    :class:`PortfolioModel` with the :data:`CONSTRAINT_FAMILIES`."""
    import highspy

    if not 0.0 <= gap < 1.0 or time_limit <= 0:
        raise PortfolioError(f"gap must lie in [0, 1) and time_limit be positive, got {gap}, {time_limit}")

    t0 = time.perf_counter()
    opts = problem.eligible()
    check(problem, opts)
    n_o = len(opts)
    if n_o == 0:
        return _result(problem, opts, np.zeros(0), "no eligible option", 0.0, time.perf_counter() - t0, "mip")
    h = quiet_highs()
    h.setOptionValue("mip_rel_gap", gap)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", 0)
    m = PortfolioModel.variables(problem, opts, h)
    for family in CONSTRAINT_FAMILIES:
        family(m)
    h.minimize(m.objective())
    status = h.modelStatusToString(h.getModelStatus())
    must = set(problem.must_include)
    if h.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
        cheapest = {p: float(opts.loc[opts["project_id"] == p, "cost_usd"].min()) for p in sorted(must)}
        raise PortfolioError(
            "the portfolio problem is infeasible: the must_include projects "
            f"{', '.join(f'{p} (cheapest option {c:,.0f} USD)' for p, c in cheapest.items()) or 'none'} do not fit the "
            f"budget {', '.join(f'{k} {b:,.0f} USD' for k, b in sorted(problem.budgets.items()))} "
            f"with co-financing shares {problem.min_participant_share or 'none'} and the diversification limits"
        )
    if h.getModelStatus() not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit,
                                  highspy.HighsModelStatus.kSolutionLimit, highspy.HighsModelStatus.kInterrupt):
        raise PortfolioError(f"the portfolio programme could not be solved: HiGHS status '{status}'")
    sol = np.asarray(h.getSolution().col_value)
    info = h.getInfo()
    mip_gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else 0.0
    x = prune(problem, opts, (sol[:n_o] > 0.5).astype(float))
    return _result(problem, opts, x, status, mip_gap, time.perf_counter() - t0, "mip")


def _value(problem: PortfolioProblem, opts: pd.DataFrame, x: np.ndarray) -> float:
    z = added_supply(problem, opts, (x > 0.5).astype(float))
    _, exp, cvar = _avoided(problem, z)
    return (exp + problem.bonus_weight * float(opts["bonus"].to_numpy(dtype=float)[x > 0.5].sum()) - problem.cvar_weight * cvar
            - problem.cost_weight * float(economic_cost(opts)[x > 0.5].sum()))


def _cofinance_ok(problem: PortfolioProblem, opts: pd.DataFrame, x: np.ndarray) -> bool:
    cost = opts["cost_usd"].to_numpy(dtype=float) * x
    total = cost.sum()
    part = opts["participant"].to_numpy()
    return all(cost[part == p].sum() >= mu * total - 1e-6 for p, mu in problem.min_participant_share.items())


def prune(problem: PortfolioProblem, opts: pd.DataFrame, x: np.ndarray) -> np.ndarray:
    """Drop chosen options that add nothing (the objective does not fall without them), dearest first.

    The MIP stops within its gap and its cost tie-break is tiny, so it may keep options whose capacity is not
    needed (the node's shortfall is already covered). Removing them never breaks a budget; must-include
    projects and co-financing shares are kept.
    """
    x = x.copy()
    base = _value(problem, opts, x)
    must = set(problem.must_include)
    cost = opts["cost_usd"].to_numpy(dtype=float)
    for i in sorted(np.flatnonzero(x > 0.5), key=lambda i: -cost[i]):
        if opts["project_id"].iloc[i] in must or cost[i] <= 0:
            continue
        x[i] = 0.0
        v = _value(problem, opts, x)
        if v >= base - 1e-9 * max(abs(base), 1.0) and _cofinance_ok(problem, opts, x):
            base = v
        else:
            x[i] = 1.0
    return x


def greedy(problem: PortfolioProblem) -> Solution:
    """Benefit-per-cost baseline: repeatedly add the option with the largest marginal expected avoided loss (plus
    the weighted bonus) per USD of budget charge that fits its budget and the diversification limits, one
    option per project (``must_include`` projects first, cheapest option). Gains are recomputed only at the
    node that changed. The CVaR term is not used by the baseline."""
    t0 = time.perf_counter()
    opts = problem.eligible()
    check(problem, opts)
    n_o = len(opts)
    x = np.zeros(n_o)
    if n_o == 0:
        return _result(problem, opts, x, "no eligible option", 0.0, 0.0, "greedy")
    left = dict(problem.budgets)
    total = float(sum(b for b in problem.budgets.values() if np.isfinite(b)))
    z = np.zeros(problem.shortfall.shape[0])
    po, pn, pq = supply_pairs(opts)  # every (option, node, t/yr) of supply: own node and co-products
    cost = opts["cost_usd"].to_numpy(dtype=float)
    bonus = problem.bonus_weight * opts["bonus"].to_numpy(dtype=float)
    key_i, key_u = pd.factorize(opts["budget_key"])
    cty_i, cty_u = pd.factorize(opts["country"])
    com_i, com_u = pd.factorize(opts["commodity"])
    left_a = np.array([left.get(k, np.inf) for k in key_u], dtype=float)
    cty_a = np.zeros(len(cty_u))
    com_a = np.zeros(len(com_u))
    pids = opts["project_id"].to_numpy()
    w = problem.weights

    def gains(idx: np.ndarray) -> np.ndarray:
        k = np.flatnonzero(np.isin(po, idx))
        n = pn[k]
        now = problem.avoided_value(z[n], n)
        new = problem.avoided_value(z[n] + pq[k], n)
        per_pair = (new - now) @ w
        out = np.zeros(n_o)
        np.add.at(out, po[k], per_pair)
        return out[idx] + bonus[idx]

    gain = gains(np.arange(n_o))
    alive = np.ones(n_o, dtype=bool)

    def take(i: int) -> None:
        x[i] = 1
        alive[pids == pids[i]] = False
        left_a[key_i[i]] -= cost[i]
        cty_a[cty_i[i]] += cost[i]
        com_a[com_i[i]] += cost[i]
        mine = po == i
        np.add.at(z, pn[mine], pq[mine])
        same = np.unique(po[np.isin(pn, pn[mine])])  # options with supply at a node that changed
        gain[same] = gains(same)

    for pid in problem.must_include:
        cand = np.flatnonzero((pids == pid) & alive & (cost <= left_a[key_i] + 1e-9))
        if len(cand):
            take(int(cand[np.argmin(cost[cand])]))
    econ = problem.cost_weight * economic_cost(opts)
    while True:
        fits = alive & (gain - econ > 1e-9)
        fits &= cost <= left_a[key_i] + 1e-9
        if problem.max_country_share < 1.0:
            fits &= cty_a[cty_i] + cost <= problem.max_country_share * total + 1e-9
        if problem.max_commodity_share < 1.0:
            fits &= com_a[com_i] + cost <= problem.max_commodity_share * total + 1e-9
        if not fits.any():
            break
        ratio = np.where(fits, gain / np.maximum(cost, 1.0), -np.inf)
        take(int(np.argmax(ratio)))
    # co-financing shares: drop the over-represented participants' options, lowest gain per USD first
    part = opts["participant"].to_numpy()
    while problem.min_participant_share and not _cofinance_ok(problem, opts, x):
        lacking = [p for p, mu in problem.min_participant_share.items() if (cost * x)[part == p].sum() < mu * (cost * x).sum() - 1e-6]
        cand = np.flatnonzero((x > 0.5) & ~np.isin(part, lacking) & (cost > 0))
        if not len(cand):
            break
        x[cand[np.argmin(gain[cand] / np.maximum(cost[cand], 1.0))]] = 0.0
    status = "greedy" if _cofinance_ok(problem, opts, x) and all(pid in set(pids[x > 0.5]) for pid in problem.must_include) else (
        "greedy (could not meet must_include or co-financing shares)")
    return _result(problem, opts, x, status, float("nan"), time.perf_counter() - t0, "greedy")


def frontier(problem: PortfolioProblem, points: int = 20, gap: float = 0.01, time_limit: float = 60.0) -> pd.DataFrame:
    """Risk reduction against total budget: every budget scaled by ``k/points``, k = 1..points."""
    rows = []
    for k in range(1, points + 1):
        f = k / points
        p = _scaled(problem, f)
        s = solve(p, gap=gap, time_limit=time_limit)
        rows.append({"budget_scale": f, "total_budget_usd": float(sum(b for b in p.budgets.values() if np.isfinite(b))), "spent_usd": float(sum(s.spent.values())),
                     "expected_avoided_usd": s.expected_avoided_usd, "cvar_residual_usd": s.cvar_residual_usd, "projects": len(s.selected),
                     "gap": s.gap, "seconds": s.seconds})
    return pd.DataFrame(rows)


def _scaled(problem: PortfolioProblem, factor: float) -> PortfolioProblem:
    from dataclasses import replace

    return replace(problem, budgets={k: v * factor for k, v in problem.budgets.items()})


def marginal_values(problem: PortfolioProblem, base: Solution, step: float = 0.1, gap: float = 0.005, time_limit: float = 60.0) -> dict[str, Any]:
    """Marginal value of each budget: ``(objective(B_k (1+step)) - objective(B)) / (step B_k)`` (USD per USD)."""
    from dataclasses import replace

    out: dict[str, Any] = {}
    for k, b in sorted(problem.budgets.items()):
        if b <= 0:
            out[k] = 0.0
            continue
        p = replace(problem, budgets={**problem.budgets, k: b * (1.0 + step)})
        s = solve(p, gap=gap, time_limit=time_limit)
        out[k] = max(s.objective - base.objective, 0.0) / (step * b)
    return out
