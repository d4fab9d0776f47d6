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
from critmin.simulate.regimes import evolution_scenarios, export_controls
from critmin.simulate.run import PERSPECTIVES, RunResult, Simulator, _quantiles, run, weighted_tail
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
    horizon = int(sim.settings["in_force_horizon_months"])
    controls = export_controls(sim.atlas)
    for s in lib:
        if s.family != "event":
            continue
        pairs = {(r, s.commodity, s.stage) for r in s.restrictors}
        if s.status == "in_force":
            in_force |= pairs
            if not in_baseline(s):
                chosen.append(s)
                probs.append(pm.scenario_probability(s, s.commodity))
            # what the control can become (in the baseline data or not): tightening, a ban on a participant
            evolves = sim.regimes is not None and s.event_id in controls
            for evo, p in (evolution_scenarios(s, sim.regimes, horizon) if evolves else []):  # type: ignore[arg-type]
                chosen.append(evo)
                probs.append(p)
        elif s.status == "suspended":
            for pair in pairs:
                suspended[pair] = pm.suspended_probability
            chosen.append(s)
            probs.append(pm.scenario_probability(s, s.commodity))
    for s in lib:
        if s.family == "event":
            continue
        pair = (s.restrictors[0], s.commodity, s.stage)
        if pair in in_force:
            continue  # the control in force and its evolution family replace the generated family
        p = pm.scenario_probability(s, s.commodity) * (1.0 - suspended.get(pair, 0.0))
        chosen.append(s)
        probs.append(p)
    return chosen, probs


def risk_run(sim: Simulator, draws: int = 1000, seed: int = 0, threads: int = 2, client: Any = None,
             progress: Callable[[int, int], None] | None = None) -> RunResult:
    """The risk library (:func:`risk_scenarios`) simulated with its probabilities: the one run that the risk
    ranking, the portfolio's scenario sample and the stockpile sizing all read."""
    scenarios, probs = risk_scenarios(sim)
    return run(sim, scenarios, draws=draws, seed=seed, probabilities=probs, threads=threads, client=client, progress=progress,
               keep_draws=True)


#: Number of batches of draws behind the standard errors of VaR and CVaR (batch means).
TAIL_BATCHES = 10


def annual_loss_distribution(loss: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The distribution of a commodity's annual loss as weighted atoms, from one draw set.

    ``loss`` (scenarios × draws): each scenario's loss given it happens; ``probs`` its annual probability.
    Scenarios with probability 1 (controls in force) happen every year and add to every atom of their draw;
    the others happen with their probability, one at a time (a first-order mixture: two uncertain events of
    one commodity in the same year, probability ``Σ_{i<j} P_i P_j``, are not combined). Each draw d
    (weight 1/D) contributes the atoms ``base_d + loss_{s,d}`` with weights ``P_s/D`` and ``base_d`` with
    weight ``(1 - Σ P_s)/D``. Its mean is exactly ``Σ_s P_s E[loss_s]``. Returns (values, weights, overlap
    probability ``Σ_{i<j} P_i P_j``); when ``Σ P_s`` exceeds 1 the weights are normalised.
    """
    certain = probs >= 1.0 - 1e-12
    base = loss[certain].sum(axis=0) if certain.any() else np.zeros(loss.shape[1])
    pu = probs[~certain]
    lu = loss[~certain]
    D = loss.shape[1]
    tot = float(pu.sum())
    scale = 1.0 if tot <= 1.0 else 1.0 / tot
    vals = np.concatenate([(base[None, :] + lu).ravel(), base])
    w = np.concatenate([np.repeat(pu * scale / D, D), np.full(D, max(1.0 - tot, 0.0) / D)])
    overlap = float((tot**2 - float((pu**2).sum())) / 2.0)
    return vals, w, overlap


def tail_figures(loss: np.ndarray, probs: np.ndarray, q: float = 0.95) -> dict[str, float]:
    """Mean, VaR and CVaR of the annual loss (:func:`annual_loss_distribution`) with batch-means standard errors."""
    keep = probs > 0
    loss, probs = np.nan_to_num(loss[keep]), probs[keep]
    if loss.size == 0:
        return {"mean": 0.0, "var": 0.0, "cvar": 0.0, "var_se": 0.0, "cvar_se": 0.0, "overlap": 0.0}
    vals, w, overlap = annual_loss_distribution(loss, probs)
    mean, var, cvar = weighted_tail(vals, w, q)
    D = loss.shape[1]
    k = min(TAIL_BATCHES, D)
    bv, bc = [], []
    if k >= 2:
        for ix in np.array_split(np.arange(D), k):
            v_b, w_b, _ = annual_loss_distribution(loss[:, ix], probs)
            _, v1, c1 = weighted_tail(v_b, w_b, q)
            bv.append(v1)
            bc.append(c1)
    se = (lambda x: float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) >= 2 else np.nan)
    return {"mean": mean, "var": var, "cvar": cvar, "var_se": se(bv), "cvar_se": se(bc), "overlap": overlap}


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
    """Ranked table (one row per commodity) and the underlying run.

    The ranking is on the participant's consumer loss (input cost + lost output), with its producers' gains
    and the net beside it; VaR and CVaR come from the same draws as the expected loss
    (:func:`tail_figures`)."""
    per = perspective.upper()
    if per not in PERSPECTIVES:
        raise ValueError(f"unknown perspective '{perspective}'; use one of {', '.join(PERSPECTIVES)}")
    j = PERSPECTIVES.index(per)
    if result is None:
        result = risk_run(sim, draws, seed, threads, client, progress)
    df = result.scenarios[result.scenarios["perspective"] == per].copy()
    pos = np.arange(len(df))  # scenario index within the run (one row per scenario and perspective)
    df["_i"] = pos
    # a participant's own export restrictions are its policy choices, not supply risks to it
    own = set(PARTICIPANTS) if per == "BLOC" else {per}
    df = df[[not (set(r.split(";")) & own) for r in df["restrictors"]]]
    df["contribution_usd"] = df["probability"] * df["expected_loss_usd"]
    df["contribution_var"] = (df["probability"] * df["loss_se_usd"]) ** 2
    df["gain_contribution_usd"] = df["probability"] * df["producer_gain_usd"]
    mine = set(PARTICIPANTS) if per == "BLOC" else {per}
    others = set(PARTICIPANTS) - mine

    def uses_proxy(flags: str) -> bool:  # a proxy of this perspective's participants, or of the node itself
        return any(("proxy" in f or "assumption" in f) and not any(f.startswith(o) for o in others) for f in flags.split("; "))

    df["_proxy"] = df["flags"].map(uses_proxy)
    baseline = [s for s in sim.library() if s.family == "event" and in_baseline(s)]
    meta = result.metadata
    files = ", ".join(f"{k} {v}" for k, v in meta.get("data_files", {}).items())
    basis = f"{meta['draws']} draws, seed {meta['seed']}, data {meta['data_version']}, parameters {meta['parameters']}, {files}"
    rows = []
    for c, g in df.groupby("commodity", sort=True):
        valued = g["expected_loss_usd"].notna()
        el = float(g.loc[valued, "contribution_usd"].sum()) if valued.any() else np.nan
        gain = float(g.loc[valued, "gain_contribution_usd"].sum()) if valued.any() else np.nan
        tails = {"var": np.nan, "cvar": np.nan, "var_se": np.nan, "cvar_se": np.nan, "overlap": np.nan}
        if result.draw_loss is not None and valued.any():
            gv = g[valued]
            tails = tail_figures(result.draw_loss[gv["_i"].to_numpy(), j, :], gv["probability"].to_numpy())
        elif valued.any():
            tot = result.totals.get(str(c))
            if tot is not None:
                v, cv = _quantiles(tot[j][None, :], 0.95)
                tails.update(var=float(v[0]), cvar=float(cv[0]))
        top = g[valued].sort_values("contribution_usd", ascending=False).head(3)
        unvalued = sorted(set(g.loc[~valued, "stage"]))
        proxies = sorted({f for f in "; ".join(g["flags"]).split("; ")
                          if ("proxy" in f or "assumption" in f) and not any(f.startswith(o) for o in others)})
        flags = [f"not valued (no world tonnage or price): {', '.join(unvalued)}"] if unvalued else []
        flags += proxies
        base_c = sorted(s.id for s in baseline if s.commodity == c)
        if base_c:
            flags.append(f"controls in force since {BASELINE_YEAR} or earlier are in the baseline data; their evolution "
                         f"(tightening, bans on participants) is counted: {', '.join(base_c)}")
        if np.isfinite(tails["overlap"]) and tails["overlap"] > 0.05:
            flags.append(f"two uncertain events in one year have probability {tails['overlap']:.2f}: tail figures neglect it")
        pos = g.loc[valued, "contribution_usd"].clip(lower=0.0)
        share_proxy = min(float(pos[g.loc[valued, "_proxy"]].sum() / pos.sum()), 1.0) if valued.any() and pos.sum() > 0 else 0.0
        rows.append(
            {
                "commodity": str(c),
                "name": sim.atlas.commodity_name(str(c)),
                "expected_loss_usd": el,
                "expected_loss_se_usd": float(np.sqrt(g.loc[valued, "contribution_var"].sum())) if valued.any() else np.nan,
                "producer_gain_usd": gain,
                "net_loss_usd": el - gain if np.isfinite(el) else np.nan,
                "var95_usd": tails["var"],
                "var95_se_usd": tails["var_se"],
                "cvar95_usd": tails["cvar"],
                "cvar95_se_usd": tails["cvar_se"],
                "category": category(el),
                "proxy_share_of_loss": share_proxy,
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
                "units": "USD per year of exposure: sum over scenarios of annual probability x consumer loss (input cost + lost "
                         "output) over the whole disruption; producers' gains apart",
                "basis": basis,
            }
        )
    out = pd.DataFrame(rows)
    out["_key"] = out["expected_loss_usd"].fillna(-np.inf)
    out = out.sort_values(["_key", "commodity"], ascending=[False, True]).drop(columns="_key").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out.insert(1, "perspective", per)
    return out, result
