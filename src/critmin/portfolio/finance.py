"""Project finance of one project under price scenarios: cash flows, NPV, IRR, DSCR, viability gap.

Pure functions over numpy arrays; a leading scenario dimension is allowed everywhere (prices of shape
(scenarios, years) give NPVs of shape (scenarios,)). Years are t = 0, 1, ..., T-1; year 0 is the start of
construction.

- Output ``q_t = Q · ramp_t`` with ``ramp_t`` = 0 during construction, then the yearly mean of the monthly ramp
  ``r(m) = min(1, m / (12 Y))`` (m = 1 the first month of output, Y the years to design capacity; :func:`ramp_share`).
- Free cash flow ``FCF_t = (P_t - c) q_t - T_t - K_t`` (revenue less operating cost, less income tax ``T_t`` on
  ``(P_t - c) q_t - D_t`` with straight-line depreciation ``D_t`` of capex over the operating life and losses
  carried forward, no refunds (:func:`income_tax`); capex ``K`` spread evenly over the construction years).
  A plant with co-products is financed on its revenue basket per t of the node's product (``P`` and ``c``
  include them; ``portfolio.model``).
- ``NPV = Σ_t FCF_t / (1 + r)^t`` at the hurdle rate r; IRR solves NPV(r) = 0 (NaN when FCF never changes
  sign); the viability gap is ``max(0, -NPV)``: the support (in present value) that lifts the project to its
  hurdle rate (methods.md §7).
- DSCR for a loan of principal L at rate i over n years (annuity from the first operating year):
  ``DSCR_t = CFADS_t / DS_t`` with ``CFADS_t = (P_t - c) q_t - T_t`` (before capex).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq


@dataclass(frozen=True)
class ProjectCase:
    """Inputs of one project's finance (all money in USD, quantities in t/yr)."""

    capacity_t: float
    capex_usd: float
    unit_cost_usd_per_t: float
    construction_years: int
    ramp_years: float
    life_years: int
    tax_rate: float
    hurdle_rate: float


def ramp_share(month: npt.ArrayLike, years_to_design: float) -> np.ndarray:
    """Share of nameplate capacity produced in the ``month``-th month of output (1 = the first month):

    ``r(m) = min(1, m / (12 Y))`` for m >= 1, 0 for m < 1; ``Y <= 0`` is nameplate at once. Y is fitted on the
    quarterly output of real plants (``ramp_up_years_to_design:*`` in instrument_parameters.csv,
    data/raw/dynamics/ramp_up): about 2 years for a mine or concentrator, 6.65 for a separation or processing plant (stalls included).
    """
    m = np.asarray(month, dtype=float)
    if years_to_design <= 0:
        return np.where(m >= 1, 1.0, 0.0)
    return np.where(m >= 1, np.minimum(1.0, m / (12.0 * years_to_design)), 0.0)


def mean_output_share(start_month: float, horizon_months: float, years_to_design: float, elapsed_months: float = 0.0,
                      rate: float = 0.0, persistence: tuple[float, float] | None = None) -> float:
    """Mean share of nameplate over the horizon's months 0..H-1 for output that begins in month ``start`` (its
    first month of output is month ``ceil(start)``), ``elapsed_months`` of output already behind it, each month
    weighted by its discount factor at the yearly ``rate``:

    ``h = Σ_t v_t r(t - ceil(start) + 1 + elapsed) / Σ_t v_t``,  ``v_t = (1 + rate)^(-t/12)``,  t = 0 … H-1.

    With ``rate = 0`` and ``Y = 0`` this is ``(H - ceil(start))/H``, the share of the horizon with output at nameplate.
    Discounted, ``h`` times the horizon's present-value factor is the present value of the output (review 34: a
    late project's output counts less, as the cost it is weighed against is discounted too).

    ``persistence = (a, ρ)`` weighs each month's output by the expected share of today's loss still there (review 34b
    K5): the share ``a`` of it from controls in force, relaxed with annual probability ``ρ`` and not re-imposed, the rest
    held: ``h = Σ_t v_t w_t r(...) / Σ_t v_t``, ``w_t = a (1 - ρ)^(t/12) + 1 - a`` (the denominator unchanged, so the
    cost it is weighed against is the same)."""
    h = int(round(horizon_months))
    if h <= 0:
        return 0.0
    t = np.arange(h, dtype=float)
    v = (1.0 + rate) ** (-t / 12.0) if rate > 0 else np.ones(h)
    share = ramp_share(t - np.ceil(start_month) + 1.0 + elapsed_months, years_to_design)
    w = np.ones(h) if persistence is None else persistence[0] * (1.0 - persistence[1]) ** (t / 12.0) + 1.0 - persistence[0]
    return float((share * v * w).sum() / v.sum())


def output_profile(case: ProjectCase) -> np.ndarray:
    """Output by year (t/yr): 0 while building, then the yearly mean of the monthly ramp (:func:`ramp_share`) times
    capacity; length C + life."""
    c, life = case.construction_years, case.life_years
    months = np.arange(1, 12 * life + 1, dtype=float)
    ramp = ramp_share(months, case.ramp_years).reshape(life, 12).mean(axis=1)
    return np.concatenate([np.zeros(c), case.capacity_t * ramp])


def cash_flows(case: ProjectCase, prices: np.ndarray) -> np.ndarray:
    """Free cash flow by year, shape (..., C + life); ``prices`` (USD/t) broadcast over years."""
    c, life = case.construction_years, case.life_years
    n = c + life
    q = output_profile(case)
    p = np.broadcast_to(np.asarray(prices, dtype=float), (*np.shape(prices)[:-1], n)) if np.ndim(prices) else np.full(n, float(prices))
    capex = np.zeros(n)
    capex[: max(c, 1)] = case.capex_usd / max(c, 1)
    dep = np.zeros(n)
    dep[c:] = case.capex_usd / life
    margin = (p - case.unit_cost_usd_per_t) * q
    return margin - income_tax(margin - dep, case.tax_rate) - capex


def income_tax(taxable: np.ndarray, rate: float) -> np.ndarray:
    """Tax by year with losses carried forward (no refunds), over the last axis:
    ``T_t = τ max(0, y_t − L_{t−1})``, ``L_t = max(0, L_{t−1} − y_t)`` with ``L_{−1} = 0`` (review 13: the tax shield
    was paid out at zero profit)."""
    y = np.asarray(taxable, dtype=float)
    tax = np.zeros_like(y)
    loss = np.zeros(y.shape[:-1])
    for t in range(y.shape[-1]):
        use = np.minimum(loss, np.maximum(y[..., t], 0.0))
        tax[..., t] = rate * np.maximum(0.0, y[..., t] - use)
        loss = loss - use + np.maximum(0.0, -y[..., t])
    return tax


def npv(flows: np.ndarray, rate: float) -> np.ndarray:
    """``Σ_t FCF_t / (1 + r)^t`` over the last axis."""
    t = np.arange(np.shape(flows)[-1])
    return np.asarray(flows) @ (1.0 + rate) ** -t


def irr(flows: np.ndarray) -> float:
    """Internal rate of return of one cash-flow vector (NaN when there is no sign change in [-99 %, 1000 %])."""
    f = np.asarray(flows, dtype=float)
    lo, hi = -0.99, 10.0
    a, b = float(npv(f, lo)), float(npv(f, hi))
    if not np.isfinite(a) or not np.isfinite(b) or a * b > 0:
        return float("nan")
    return float(brentq(lambda r: float(npv(f, r)), lo, hi, xtol=1e-12))


def viability_gap(case: ProjectCase, prices: np.ndarray) -> np.ndarray:
    """``max(0, -NPV)`` at the hurdle rate (USD, present value at year 0), per price scenario."""
    return np.maximum(0.0, -npv(cash_flows(case, prices), case.hurdle_rate))


def contracted_prices(case: ProjectCase, prices: np.ndarray, share: float, contract_price: float, years: int) -> np.ndarray:
    """Realised price by year when ``share`` of output is sold at ``contract_price`` for the first ``years`` years of
    operation (a fixed-price offtake): ``P'_t = P_t + s (F - P_t)`` for ``C <= t < C + n``, else ``P_t``; same shape
    as ``prices`` (..., C + life)."""
    p = np.array(prices, dtype=float, copy=True)
    c = case.construction_years
    s = float(min(max(share, 0.0), 1.0))
    window = slice(c, c + max(int(years), 0))
    p[..., window] = p[..., window] + s * (contract_price - p[..., window])
    return p


def hedge_value(case: ProjectCase, prices: np.ndarray, share: float, contract_price: float, years: int) -> float:
    """Value to the sponsor of a fixed-price offtake, in the finance model's own terms: the fall in the mean viability
    gap over the price scenarios, ``max(0, mean_m VG_m(P) - mean_m VG_m(P'))`` with ``P'`` from
    :func:`contracted_prices`. At a contract price equal to the base price an offtake adds no expected revenue; its
    value is that the low-price scenario no longer sinks the project (the gap is convex in the price), which is what
    lenders lend against."""
    base = float(np.mean(viability_gap(case, prices)))
    hedged = float(np.mean(viability_gap(case, contracted_prices(case, prices, share, contract_price, years))))
    return max(0.0, base - hedged)


def annuity_payment(principal: float, rate: float, years: int) -> float:
    """Level annual payment repaying ``principal`` at ``rate`` over ``years``: ``L r / (1 - (1 + r)^-n)``."""
    if years <= 0:
        return float("nan")
    if rate == 0:
        return principal / years
    return principal * rate / (1.0 - (1.0 + rate) ** -years)


def dscr(case: ProjectCase, prices: np.ndarray, principal: float, rate: float, tenor_years: int) -> np.ndarray:
    """Minimum DSCR over the loan's life, per price scenario (``CFADS_t / DS_t``; inf when no debt)."""
    if principal <= 0:
        return np.full(np.shape(prices)[:-1] if np.ndim(prices) > 1 else (), np.inf)
    c = case.construction_years
    flows = cash_flows(case, prices) + _capex(case)  # add capex back: cash available for debt service
    ds = annuity_payment(principal, rate, tenor_years)
    window = flows[..., c : c + tenor_years]
    return np.min(window / ds, axis=-1)


def uncovered_debt_service(case: ProjectCase, prices: np.ndarray, principal: float, rate: float, tenor_years: int) -> float:
    """Debt the project's own cash cannot repay over the loan's life, averaged over the price paths given (the portfolio
    passes today's price only), in present value at the loan's start of operation (the loan life coverage ratio's
    shortfall):

    ``U = mean_m max(0, L − Σ_{k=1}^{n} CFADS_{m, C+k−1} / (1 + i)^k)``, i.e. ``L · max(0, 1 − LLCR_m)``,

    discounted at the loan's rate i. Repayments can be sculpted
    to the cash flow (a grace period over the ramp-up), so only cash short over the whole tenor counts, not one weak year.
    Zero for a project whose cash over the tenor repays the loan in every price scenario. A lender or guarantor of a
    project that cannot repay at today's prices pays the rest (review 12: NICO's cobalt-only cash flow covered 0.18 of its
    debt service, and its guarantee was costed at the portfolio-wide default rate)."""
    if principal <= 0 or tenor_years <= 0:
        return 0.0
    c = case.construction_years
    flows = np.atleast_2d(cash_flows(case, prices) + _capex(case))
    window = flows[..., c : c + tenor_years]
    k = np.arange(1, window.shape[-1] + 1)
    pv_cash = window @ (1.0 + rate) ** -k
    return float(np.mean(np.maximum(0.0, principal - pv_cash)))


def _capex(case: ProjectCase) -> np.ndarray:
    n = case.construction_years + case.life_years
    k = np.zeros(n)
    k[: max(case.construction_years, 1)] = case.capex_usd / max(case.construction_years, 1)
    return k
