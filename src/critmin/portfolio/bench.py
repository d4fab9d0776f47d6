"""``critmin bench portfolio``: generated pipelines of 100, 1,000 and 5,000 projects on 500 simulated draws.

The pipelines are synthetic (benchmark data, not advice): projects are placed on the nodes of the simulator's
sample in proportion to their expected loss, with capacities, costs, instruments and lead times drawn from
fixed, seeded distributions. The scenario sample is the real one (``critmin risk`` library, 500 draws).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from critmin.portfolio.model import Sample
from critmin.portfolio.optimise import PortfolioProblem, frontier, greedy, solve

INSTRUMENTS = ("grant", "loan", "loan_guarantee", "equity", "offtake", "price_floor", "insurance", "regulatory")
AGENCIES = {"USA": ("US_A", "US_B", "US_C"), "JPN": ("JP_A", "JP_B"), "AUS": ("AU_A",), "CAN": ("CA_A",)}
COUNTRIES = ("USA", "AUS", "CAN", "JPN", "KOR", "BRA", "DEU", "FRA", "ZAF", "NAM", "CHL", "IDN")


def generate_problem(sample: Sample, n_projects: int, seed: int = 0, budget_share: float = 0.3) -> PortfolioProblem:
    """A synthetic pipeline of ``n_projects`` on the sample's nodes (see module docstring)."""
    rng = np.random.default_rng(seed)
    el = sample.value_per_t * (sample.shortfall.mean(axis=1))
    weights = el / el.sum() if el.sum() > 0 else np.full(len(el), 1.0 / max(len(el), 1))
    nodes = rng.choice(len(weights), size=n_projects, p=weights)
    mean_short = np.maximum(sample.shortfall.mean(axis=1), 1e-9)
    rows = []
    for p, n in enumerate(nodes):
        cap = float(mean_short[n] * rng.lognormal(-1.5, 1.0))
        capex = cap * sample.value_per_t[n] * rng.lognormal(-1.0, 0.5)
        country = str(rng.choice(COUNTRIES))
        k = int(rng.integers(2, 6))
        for inst in rng.choice(INSTRUMENTS, size=k, replace=False):
            part = str(rng.choice(list(AGENCIES)))
            agency = str(rng.choice(AGENCIES[part]))
            cost = 0.0 if inst == "regulatory" else float(capex * rng.uniform(0.02, 0.4))
            rows.append({
                "project_id": f"G{p:05d}", "instrument": str(inst), "agency": agency,
                "budget_key": "none" if cost == 0 else f"{agency}:{inst}", "participant": part, "node": int(n),
                "country": country, "commodity": sample.node_names[n].split("/")[0],
                "dq_t": cap * rng.uniform(0.05, 0.6), "cost_usd": cost, "amount_usd": cost * rng.uniform(1, 5),
                "months_to_output": float(rng.integers(0, 60)), "bonus": 0.0,
            })
    opts = pd.DataFrame(rows)
    costs = opts.groupby("budget_key")["cost_usd"].sum()
    budgets = {str(k): float(v * budget_share) for k, v in costs.items() if k != "none"}
    budgets["none"] = float("inf")
    S = sample.shortfall.shape[1]
    return PortfolioProblem(opts, sample.shortfall, sample.months, sample.value_per_t, np.full(S, 1.0 / S), budgets, sample.node_names)


def bench_portfolio(sample: Sample, sizes: tuple[int, ...] = (100, 1000, 5000), gap: float = 0.01, time_limit: float = 60.0,
                    frontier_points: int = 0, seed: int = 0) -> dict[str, Any]:
    """Solve each generated pipeline; the 1,000-project case is the headline record."""
    cases = []
    for n in sizes:
        p = generate_problem(sample, n, seed)
        t0 = time.perf_counter()
        s = solve(p, gap=gap, time_limit=time_limit)
        secs = time.perf_counter() - t0
        g = greedy(p)
        rec: dict[str, Any] = {
            "projects": n, "options": int(len(p.eligible())), "scenarios": int(p.shortfall.shape[1]), "seconds": round(secs, 3),
            "gap": s.gap, "status": s.status, "objective": s.objective, "greedy_objective": g.objective,
            "greedy_seconds": round(g.seconds, 3),
            "objective_vs_greedy": s.objective / g.objective if g.objective > 0 else float("nan"),
        }
        if frontier_points and n == 1000:
            t1 = time.perf_counter()
            frontier(p, points=frontier_points, gap=gap, time_limit=time_limit)
            rec["frontier_points"] = frontier_points
            rec["frontier_seconds"] = round(time.perf_counter() - t1, 3)
        cases.append(rec)
    head = next((c for c in cases if c["projects"] == 1000), cases[0])
    return {**head, "cases": cases}
