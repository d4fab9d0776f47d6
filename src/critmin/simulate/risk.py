"""Risk ranking: commodities by probability-weighted economic loss (the USGS 2025 approach, generalised).

``expected_loss_c = Σ_{s at commodity c} P(s) · E[loss_s | s happens]`` for the perspective (USA, JPN or
the BLOC of participants), summed over the scenario library: controls in force (probability 1, replacing
the generated family of the same restrictor and node), suspended controls, and the generated families
(probabilities from :mod:`critmin.simulate.probability`). VaR and CVaR at 95 % come from the simulated
annual loss: in each draw at most one scenario of each family happens (sampled with the family's
probabilities) and the losses of those that happen are summed per commodity.

Categories (critmin's thresholds on expected loss, USD; a documented choice, overridable):
high >= 1e9, elevated >= 1e8, moderate >= 1e7, limited >= 1e6, negligible >= 0, negative < 0;
``not valued`` when no node of the commodity has both a world output and a price.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from critmin.simulate.nodes import PARTICIPANTS
from critmin.simulate.run import PERSPECTIVES, RunResult, Simulator, _quantiles, run
from critmin.simulate.scenario import Scenario

CATEGORY_THRESHOLDS_USD: dict[str, float] = {"high": 1e9, "elevated": 1e8, "moderate": 1e7, "limited": 1e6, "negligible": 0.0}


def category(loss: float, thresholds: dict[str, float] = CATEGORY_THRESHOLDS_USD) -> str:
    """Risk category of an expected loss (USD)."""
    if not np.isfinite(loss):
        return "not valued"
    for name, lo in sorted(thresholds.items(), key=lambda kv: -kv[1]):
        if loss >= lo:
            return name
    return "negative"


#: Year of the atlas data the baseline (shares, prices, consumption) describes.
BASELINE_YEAR = 2024


def in_baseline(s: Scenario, baseline_year: int = BASELINE_YEAR) -> bool:
    """A control in force that started before the end of the baseline year is already in the baseline data
    (shares, prices and trade of that year reflect it): re-applying it would count it twice."""
    return s.status == "in_force" and s.start_date is not None and int(s.start_date[:4]) <= baseline_year


def risk_scenarios(sim: Simulator) -> tuple[list[Scenario], list[float]]:
    """The risk library and each scenario's annual probability (see module docstring)."""
    lib = sim.library()
    pm = sim.probability
    in_force: set[tuple[str, str, str]] = set()
    suspended: dict[tuple[str, str, str], float] = {}
    chosen: list[Scenario] = []
    probs: list[float] = []
    for s in lib:
        if s.family != "event" or in_baseline(s):
            continue
        pairs = {(r, s.commodity, s.stage) for r in s.restrictors}
        if s.status == "in_force":
            in_force |= pairs
        elif s.status == "suspended":
            for pair in pairs:
                suspended[pair] = pm.suspended_probability
        else:
            continue
        chosen.append(s)
        probs.append(pm.scenario_probability(s, s.commodity))
    for s in lib:
        if s.family == "event":
            continue
        pair = (s.restrictors[0], s.commodity, s.stage)
        if pair in in_force:
            continue
        p = pm.scenario_probability(s, s.commodity) * (1.0 - suspended.get(pair, 0.0))
        chosen.append(s)
        probs.append(p)
    return chosen, probs


def risk_run(sim: Simulator, draws: int = 1000, seed: int = 0, threads: int = 2, client: Any = None,
             progress: Callable[[int, int], None] | None = None) -> RunResult:
    """The risk library (:func:`risk_scenarios`) simulated with its probabilities: the one run that the risk
    ranking, the portfolio's scenario sample and the stockpile sizing all read."""
    scenarios, probs = risk_scenarios(sim)
    return run(sim, scenarios, draws=draws, seed=seed, probabilities=probs, threads=threads, client=client, progress=progress)


def risk_ranking(
    sim: Simulator,
    perspective: str = "BLOC",
    draws: int = 1000,
    seed: int = 0,
    threads: int = 2,
    client: Any = None,
    progress: Callable[[int, int], None] | None = None,
    result: RunResult | None = None,
) -> tuple[pd.DataFrame, RunResult]:
    """Ranked table (one row per commodity) and the underlying run."""
    per = perspective.upper()
    if per not in PERSPECTIVES:
        raise ValueError(f"unknown perspective '{perspective}'; use one of {', '.join(PERSPECTIVES)}")
    j = PERSPECTIVES.index(per)
    if result is None:
        result = risk_run(sim, draws, seed, threads, client, progress)
    df = result.scenarios[result.scenarios["perspective"] == per].copy()
    # a participant's own export restrictions are its policy choices, not supply risks to it
    own = set(PARTICIPANTS) if per == "BLOC" else {per}
    df = df[[not (set(r.split(";")) & own) for r in df["restrictors"]]]
    df["contribution_usd"] = df["probability"] * df["expected_loss_usd"]
    df["contribution_var"] = (df["probability"] * df["loss_se_usd"]) ** 2
    baseline = [s for s in sim.library() if s.family == "event" and in_baseline(s)]
    meta = result.metadata
    files = ", ".join(f"{k} {v}" for k, v in meta.get("data_files", {}).items())
    basis = f"{meta['draws']} draws, seed {meta['seed']}, data {meta['data_version']}, parameters {meta['parameters']}, {files}"
    rows = []
    for c, g in df.groupby("commodity", sort=True):
        valued = g["expected_loss_usd"].notna()
        el = float(g.loc[valued, "contribution_usd"].sum()) if valued.any() else np.nan
        tot = result.totals.get(str(c))
        var = cvar = np.nan
        if tot is not None and valued.any():
            v, cv = _quantiles(tot[j][None, :], 0.95)
            var, cvar = float(v[0]), float(cv[0])
        top = g[valued].sort_values("contribution_usd", ascending=False).head(3)
        unvalued = sorted(set(g.loc[~valued, "stage"]))
        proxies = sorted({f for f in "; ".join(g["flags"]).split("; ") if "proxy" in f})
        flags = [f"not valued (no world tonnage or price): {', '.join(unvalued)}"] if unvalued else []
        flags += proxies
        base_c = sorted(s.id for s in baseline if s.commodity == c)
        if base_c:
            flags.append(f"controls in force since {BASELINE_YEAR} or earlier are in the baseline data, not counted as new shocks: {', '.join(base_c)}")
        rows.append(
            {
                "commodity": str(c),
                "name": sim.atlas.commodity_name(str(c)),
                "expected_loss_usd": el,
                "expected_loss_se_usd": float(np.sqrt(g.loc[valued, "contribution_var"].sum())) if valued.any() else np.nan,
                "var95_usd": var,
                "cvar95_usd": cvar,
                "category": category(el),
                "top_scenarios": [
                    {"scenario": r.scenario, "probability": float(r.probability), "expected_loss_usd": float(r.expected_loss_usd),
                     "contribution_usd": float(r.contribution_usd)}
                    for r in top.itertuples()
                ],
                "in_force_controls": sorted(set(g.loc[g["status"] == "in_force", "scenario"])),
                "scenarios": int(len(g)),
                "stages": sorted(set(g["stage"])),
                "not_valued_stages": unvalued,
                "flags": flags,
                "units": "USD per year of exposure: sum over scenarios of annual probability x loss over the whole disruption",
                "basis": basis,
            }
        )
    out = pd.DataFrame(rows)
    out["_key"] = out["expected_loss_usd"].fillna(-np.inf)
    out = out.sort_values(["_key", "commodity"], ascending=[False, True]).drop(columns="_key").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out.insert(1, "perspective", per)
    return out, result
