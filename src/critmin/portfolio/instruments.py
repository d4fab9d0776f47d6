"""Support instruments: budget cost to the government (credit-reform style) and value to the project.

Each function is pure and returns USD present values at year 0 (the start of support). Formulas follow
methods.md §7 and the U.S. Federal Credit Reform Act scoring of loans and guarantees: the subsidy cost is the
present value, at the government's discount rate ``r_g``, of expected government outflows minus inflows.

Survival: a borrower with annual default probability ``d`` is performing at the start of year t with
probability ``(1 - d)^(t-1)``; on default the government loses ``LGD`` of the balance outstanding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INSTRUMENTS = ("grant", "loan", "loan_guarantee", "equity", "offtake", "price_floor", "insurance", "regulatory")


def _balances(principal: float, rate: float, tenor: int) -> tuple[np.ndarray, float]:
    """Outstanding balance at the start of each year 1..n of an annuity loan, and the level payment."""
    pay = principal * rate / (1.0 - (1.0 + rate) ** -tenor) if rate > 0 else principal / tenor
    bal = np.empty(tenor)
    b = principal
    for t in range(tenor):
        bal[t] = b
        b = b * (1.0 + rate) - pay
    return bal, pay


def project_default_probability(annual_default: float, tenor: int, completion_after_close: float) -> float:
    """Annual default probability of a loan to a project that may still fail to complete.

    A loan closes before construction ends, so the lender carries the construction risk as well as the operating
    default rate ``d``: the loan survives its tenor ``n`` with probability ``c (1 - d)^n`` (``c`` = probability
    that a financed project completes), and the constant annual rate with the same survival is

        d_p = 1 - (c (1 - d)^n)^(1/n)

    ``c = 1`` (an operating project) gives ``d``.
    """
    c = min(max(completion_after_close, 1e-9), 1.0)
    return float(1.0 - (c * (1.0 - annual_default) ** tenor) ** (1.0 / tenor))


def loan_cost(principal: float, rate: float, tenor: int, gov_rate: float, default_prob: float, lgd: float) -> float:
    """Subsidy cost of a direct loan: ``L - PV_rg(expected repayments + recoveries)``.

    Year t (1..n): performing with probability ``S_t = (1-d)^(t-1)``; pays the annuity ``A`` with
    probability ``S_t (1-d)``; defaults with probability ``S_t d`` and then returns ``(1-LGD) B_t``.
    """
    bal, pay = _balances(principal, rate, tenor)
    t = np.arange(1, tenor + 1)
    surv = (1.0 - default_prob) ** (t - 1)
    inflow = surv * ((1.0 - default_prob) * pay + default_prob * (1.0 - lgd) * bal)
    return float(principal - np.sum(inflow / (1.0 + gov_rate) ** t))


def guarantee_cost(principal: float, rate: float, tenor: int, coverage: float, fee_rate: float, gov_rate: float,
                   default_prob: float, lgd: float) -> float:
    """Subsidy cost of a loan guarantee: ``PV_rg(expected claims) - PV_rg(fees)``.

    Claims in year t: ``S_t d · coverage · LGD · B_t``; fees: ``S_t · fee · coverage · B_t`` (annual fee on the
    guaranteed balance, paid while performing).
    """
    bal, _ = _balances(principal, rate, tenor)
    t = np.arange(1, tenor + 1)
    surv = (1.0 - default_prob) ** (t - 1)
    disc = (1.0 + gov_rate) ** -t
    claims = surv * default_prob * coverage * lgd * bal
    fees = surv * fee_rate * coverage * bal
    return float(np.sum((claims - fees) * disc))


def equity_cost(amount: float, expected_loss: float) -> float:
    """Budget cost of an equity stake: its expected loss ``E · el``."""
    return float(amount * expected_loss)


def put_value(forward: float, strike: float, sigma_total: float) -> float:
    """``E[max(K - P, 0)]`` for a lognormal price with mean ``forward`` and log-volatility ``sigma_total``.

    ``K N(-d2) - F N(-d1)``, ``d1 = (ln(F/K) + σ²/2)/σ``, ``d2 = d1 - σ`` (Black 1976, undiscounted).
    """
    if sigma_total <= 0:
        return max(strike - forward, 0.0)
    d1 = (math.log(forward / strike) + 0.5 * sigma_total**2) / sigma_total
    d2 = d1 - sigma_total
    n = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731
    return strike * n(-d2) - forward * n(-d1)


def price_floor_cost(volume_t: float, floor: float, price: float, vol: float, years: int, gov_rate: float) -> float:
    """Expected payout of a price floor on ``volume_t`` t/yr for ``years``: ``Σ_t E[max(F - P_t, 0)] Q / (1+r_g)^t``.

    Price in year t lognormal around today's ``price`` with log-volatility ``vol · sqrt(t)``.
    """
    return float(sum(put_value(price, floor, vol * math.sqrt(t)) * volume_t / (1.0 + gov_rate) ** t for t in range(1, years + 1)))


def offtake_cost(volume_t: float, contract_price: float, price: float, vol: float, years: int, gov_rate: float,
                 resale_share: float = 1.0) -> float:
    """Fixed-price offtake: the buyer pays F and resells at market: ``Σ_t (F - E[P_t] · resale) Q / (1+r_g)^t``.

    With a lognormal price of constant mean ``E[P_t] = price`` (no drift), the cost is
    ``(F - resale · P) Q Σ_t (1+r_g)^-t`` (``vol`` does not change the mean; kept for the interface).
    """
    del vol
    annuity = sum((1.0 + gov_rate) ** -t for t in range(1, years + 1))
    return float((contract_price - resale_share * price) * volume_t * annuity)


def insurance_cost(cover: float, premium_rate: float, claim_prob: float, years: int, gov_rate: float) -> float:
    """Political-risk insurance: ``Σ_t (q - π) K / (1 + r_g)^t`` (expected claims minus premiums)."""
    return float(sum((claim_prob - premium_rate) * cover / (1.0 + gov_rate) ** t for t in range(1, years + 1)))


@dataclass(frozen=True)
class Terms:
    """Terms of one instrument offered to one project (USD; rates per year)."""

    instrument: str
    amount_usd: float
    budget_cost_usd: float
    value_to_project_usd: float
    completion_uplift: float
    months_saved: float
    note: str = ""
