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

from critmin.simulate.engine import withheld_bounds
from critmin.simulate.nodes import INPUT_CONTROL_FLAG, NOT_SIMULATED_FLAG, PARTICIPANTS, STALE_MARK
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
#: A control is in the baseline data when it started by this month: the baseline year's shares, prices and trade
#: (annual averages) then reflect it for at least half the year. China's antimony licences (Sep 2024) do not
#: qualify: the 2024 average antimony price predates most of their effect.
BASELINE_CUTOFF = f"{BASELINE_YEAR}-06"


def in_baseline(s: Scenario, cutoff: str = BASELINE_CUTOFF) -> bool:
    """A control in force that started by ``cutoff`` (YYYY-MM) is already in the baseline data (the baseline
    year's shares, prices and trade reflect it): re-applying it would count it twice."""
    if s.status != "in_force" or s.start_date is None:
        return False
    start = s.start_date if len(s.start_date) >= 7 else s.start_date[:4] + "-01"
    return start[:7] <= cutoff


def _on_top(escalation: Scenario, control: Scenario, sim: Simulator) -> Scenario:
    """``escalation`` applied on top of ``control`` (an in-force control not in the baseline data): the two
    together withhold ``w_C + (1 - w_C) w_X`` of the exports, to every destination of the control."""
    c_lo, c_hi = withheld_bounds(control, sim.params, sim.nodes.get(*control.node).group)
    x_lo, x_hi = withheld_bounds(escalation, sim.params, sim.nodes.get(*escalation.node).group)
    lo, hi = c_lo + (1.0 - c_lo) * x_lo, c_hi + (1.0 - c_hi) * x_hi
    return escalation.model_copy(update={
        "targets": list(control.targets), "withheld_share": (lo + hi) / 2.0, "withheld_low": lo,
        "withheld_high": hi, "scope_low": 1.0, "scope_high": 1.0,
        "note": (f"on top of {control.id} (in force): withheld {c_lo:.2f}-{c_hi:.2f} by the control, then "
                 f"{x_lo:.2f}-{x_hi:.2f} of the rest. " + escalation.note).strip()})


def compose_outcomes(p: list[float], relax: float = 0.0) -> tuple[list[float], float]:
    """Exclusive annual outcomes of a node from independent annual hazards, most severe first.

    With ``p_r`` the probability that the control is relaxed within the year (no escalation then) and hazards
    ``p_1 ... p_n`` ordered from the most severe outcome down, the node's outcome is the most severe event that
    happens: ``P_k = (1 - p_r) p_k Π_{j<k} (1 - p_j)``, and the control holds unchanged (or, without a control,
    nothing happens) with ``P_0 = (1 - p_r) Π_j (1 - p_j)``. They sum to ``1 - p_r`` by construction. Until
    December 2026 the hazards were added and scaled to 1 when they exceeded it, which left China's April 2025
    rare-earth licences "holding alone" at the magnet node with probability about 0 once a suspended extension
    (0.5), the tightening (0.39) and the relaxation (0.26) were counted (review 5); composed, they hold alone with
    0.22.
    Returns ``([P_1 ... P_n], P_0)``.
    """
    keep = 1.0 - min(max(relax, 0.0), 1.0)
    out = []
    for pk in p:
        pk = min(max(float(pk), 0.0), 1.0)
        out.append(keep * pk)
        keep *= 1.0 - pk
    return out, keep


def risk_scenarios(sim: Simulator) -> tuple[list[Scenario], list[float]]:
    """The risk library and each scenario's annual probability (docs/simulation.md §11).

    At a node with an export control in force or suspended, the control and what it can become form one
    family of mutually exclusive outcomes for the year (``ctl.<commodity>.<stage>``):

    - a control in force that is not in the baseline data holds with probability ``1 - Σ P(escalation) -
      P(relaxation)`` (a relaxed control costs nothing against the baseline); each escalation (its tightening, a suspended extension coming into
      force) aimed at the same destinations is simulated **on top of it** (:func:`_on_top`), so the family's
      expected loss is ``L_C + Σ_k P_k (L_k - L_C)``, never the control's loss counted again; one aimed at other
      destinations (a suspended ban on one participant) is an event of its own that adds to the control. A ban on a participant under a
      licence regime already in force is counted as a tightening (China's gallium licences became a ban on
      the USA); its rate is added to the tightening rate;
    - a control in the baseline data is not simulated again; its evolution (tightening, bans on participants)
      and any suspended control at the node are the family's outcomes, acting on the baseline flows;
    - the family's outcomes are composed from independent annual hazards, the most severe first
      (:func:`compose_outcomes`), so they sum to 1 by construction.

    A full embargo on every destination stays possible under a control: the generated WORLD bans of an in-force
    (restrictor, node) pair are outcomes of the node's family (acting on the baseline flows: a full ban includes
    any partial control); its generated targeted bans are dropped (the control's evolution has them). The
    generated family of a suspended pair is scaled by ``1 - P(suspended control)``.
    """
    lib = sim.library()
    pm = sim.probability
    horizon = int(sim.settings["in_force_horizon_months"])
    controls = export_controls(sim.atlas)
    in_force: set[tuple[str, str, str]] = set()
    suspended: dict[tuple[str, str, str], float] = {}
    nodes: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for s in lib:
        if s.family != "event":
            continue
        g = nodes.setdefault(s.node, {"control": [], "escalation": []})
        # a measure on an input of the node (E023's precursors) is no control on the node's product: the generated
        # bans of the restrictors' own output at the node stay whole beside it (review 32)
        pairs = set() if s.input_control else {(r, s.commodity, s.stage) for r in s.restrictors}
        if s.status == "in_force":
            in_force |= pairs
            if not in_baseline(s):
                g["control"].append(s)
            evolves = sim.regimes is not None and s.event_id in controls
            for evo, p in (evolution_scenarios(s, sim.regimes, horizon) if evolves else []):  # type: ignore[arg-type]
                g["escalation"].append((evo, p, s))
        elif s.status == "suspended":
            for pair in pairs:
                suspended[pair] = pm.suspended_probability
            g["escalation"].append((s, pm.scenario_probability(s, s.commodity), None))
    # a full embargo on every destination stays possible under a control in force: the generated WORLD bans of
    # an in-force pair join the node's family (its targeted bans are the control's evolution)
    embargo: dict[tuple[str, str], list[tuple[Scenario, float]]] = {}
    for s in lib:
        if s.family.startswith("gen.") and (s.restrictors[0], s.commodity, s.stage) in in_force and s.targets == ["WORLD"]:
            embargo.setdefault(s.node, []).append((s, pm.scenario_probability(s, s.commodity)))
    chosen: list[Scenario] = []
    probs: list[float] = []
    for (commodity, stage), g in nodes.items():
        fam = f"ctl.{commodity}.{stage}"
        control = g["control"][0] if g["control"] else None
        outcomes: list[tuple[Scenario, float]] = []
        relax = 0.0
        if control is not None:
            others: list[tuple[Scenario, float]] = []
            for e, p, par in g["escalation"]:
                if par is not None and par.id == control.id:
                    continue
                if e.targets == control.targets:
                    others.append((_on_top(e, control, sim), p))
                else:
                    # a measure aimed at other destinations (a suspended ban on one participant) adds to the control
                    # rather than replacing it: its own family, on the baseline flows
                    chosen.append(e)
                    probs.append(p)
            own = [(e, p) for e, p, par in g["escalation"] if par is not None and par.id == control.id]
            tighten = next((e for e, _ in own if e.id.endswith(".tighten")), None)
            # the most severe first (compose_outcomes): suspended extensions, then the control's own tightening
            outcomes += others[::-1]
            if tighten is not None:
                # a tightening or a ban on a participant of the control in force: one stricter outcome
                outcomes.append((_on_top(tighten, control, sim), min(sum(p for _, p in own), 1.0)))
            for extra in g["control"][1:]:  # a second control in force at the node: counted apart (rare)
                chosen.append(extra)
                probs.append(1.0)
            # the control may also be relaxed within the year (no loss against the baseline): for every buyer, so
            # only the relaxations of the control itself count, not those for one destination's end users (the
            # outcomes are one family for both participants; docs/simulation.md §10.1)
            relax = sim.regimes.probability_for(control.restrictors[0], "relaxation", "WORLD") if sim.regimes is not None else 0.0
        else:
            outcomes = [(e, p) for e, p, _ in g["escalation"]]
        # a full embargo is the most severe outcome of all
        outcomes = embargo.get((commodity, stage), []) + outcomes
        composed, hold = compose_outcomes([p for _, p in outcomes], relax)
        if control is not None:
            chosen.append(control.model_copy(update={"family": fam}))
            probs.append(hold)
        for (e, p), q in zip(outcomes, composed, strict=True):
            note = e.note if q == p else (f"{e.note} Annual probability {p:.3f} as a hazard on its own, {q:.3f} as the node's outcome "
                                           "(the node's outcomes are composed: docs/simulation.md §11).")
            chosen.append(e.model_copy(update={"family": fam, "note": note}))
            probs.append(q)
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


#: Most combined outcomes of the major families of one commodity kept as separate atoms (beyond, each further
#: family enters through its mean per draw).
MAX_BASE_OUTCOMES = 128
#: A family whose outcomes have at least this annual probability in total is combined exactly with the others
#: (a control and what it can become, a suspended control); smaller ones enter as a first-order mixture.
MAJOR_FAMILY_PROBABILITY = 0.05


def annual_loss_distribution(loss: np.ndarray, probs: np.ndarray, families: list[str] | None = None
                             ) -> tuple[np.ndarray, np.ndarray, float]:
    """The distribution of a commodity's annual loss as weighted atoms, from one draw set.

    ``loss`` (scenarios × draws): each scenario's loss given it happens; ``probs`` its annual probability;
    ``families`` the scenario's family (mutually exclusive outcomes; default: each scenario its own).

    - A *major* family (outcomes with annual probability ``>= MAJOR_FAMILY_PROBABILITY`` in total: a control in
      force and what it can become, a suspended control) has the outcomes of its scenarios and, when they sum to
      less than 1, "nothing happens"; the major families of a commodity are independent and are combined exactly
      into base outcomes ``b`` with probabilities ``π_b`` and per-draw losses ``base_{b,d}``.
    - The other scenarios happen with their probability, one at a time (a first-order mixture: two events of
      different minor families in the same year, probability ``Σ_{f<g} P_f P_g``, are not combined).

    Each draw d (weight 1/D) and base outcome b contribute the atoms ``base_{b,d} + loss_{s,d}`` with weights
    ``π_b P_s / D`` and ``base_{b,d}`` with weight ``π_b (1 - Σ P_s) / D``. The mean is exactly
    ``Σ_s P_s E[loss_s]``. Returns (values, weights, overlap probability); when ``Σ P_s`` exceeds 1 the
    weights are normalised.
    """
    D = loss.shape[1]
    fam = np.array(families if families is not None else [str(i) for i in range(len(probs))], dtype=object)
    totals: dict[str, float] = {}
    for f, p in zip(fam, probs, strict=True):
        totals[f] = totals.get(f, 0.0) + float(p)
    major = [f for f, t in totals.items() if t >= MAJOR_FAMILY_PROBABILITY - 1e-12]
    base_v: list[np.ndarray] = [np.zeros(D)]
    base_w: list[float] = [1.0]
    for f in major:
        idx = np.flatnonzero(fam == f)
        scale_f = 1.0 / totals[f] if totals[f] > 1.0 else 1.0
        outcomes = [(loss[k], float(probs[k]) * scale_f) for k in idx]
        if totals[f] < 1.0 - 1e-9:
            outcomes.append((np.zeros(D), 1.0 - totals[f]))  # nothing happens
        if len(base_v) * len(outcomes) > MAX_BASE_OUTCOMES:  # too many combinations: the family enters by its mean
            mean_f = sum(p * v for v, p in outcomes)
            base_v = [v + mean_f for v in base_v]
            continue
        base_v = [v + lv for v in base_v for lv, _ in outcomes]
        base_w = [w * p for w in base_w for _, p in outcomes]
    unc = ~np.isin(fam, major)
    pu, lu = probs[unc], loss[unc]
    tot = float(pu.sum())
    scale = 1.0 if tot <= 1.0 else 1.0 / tot
    vals: list[np.ndarray] = []
    wts: list[np.ndarray] = []
    for bv, bw in zip(base_v, base_w, strict=True):
        vals += [(bv[None, :] + lu).ravel(), bv]
        wts += [np.repeat(pu * scale * bw / D, D), np.full(D, max(1.0 - tot, 0.0) * bw / D)]
    fam_tot = np.array([totals[f] for f in totals if f not in major])
    overlap = float((fam_tot.sum() ** 2 - float((fam_tot**2).sum())) / 2.0)
    return np.concatenate(vals), np.concatenate(wts), overlap


#: The words of a node flag that a participant's consumption is an estimate (simulate.nodes).
ESTIMATE_MARK = "consumption is an estimate"


def rests_on_proxy(flag: str, others: set[str]) -> bool:
    """Whether a scenario flag says the figure rests on a proxy, an assumption or stale data of this perspective
    (flags that name another participant, ``"JPN ..."`` in the U.S. view, do not count)."""
    return ("proxy" in flag or "assumption" in flag or STALE_MARK in flag) and not any(flag.startswith(o) for o in others)


def names_estimate(flag: str, others: set[str]) -> bool:
    """Whether a scenario flag says this perspective's consumption is an estimate (named on the ranking row, not
    counted in the proxy share); flags of the other participants do not count."""
    return ESTIMATE_MARK in flag and not any(flag.startswith(o) for o in others)


#: A year counts as a year with a loss in ``probability_of_loss`` above this many USD (floating-point residues of
#: zero are not losses; review 17).
LOSS_FLOOR_USD = 1.0


def tail_figures(loss: np.ndarray, probs: np.ndarray, q: float = 0.95, families: list[str] | None = None) -> dict[str, float]:
    """Mean, VaR and CVaR of the annual loss (:func:`annual_loss_distribution`) with batch-means standard errors, and
    ``p_loss``, the annual probability of a loss (``Σ w [L > 0]``): where it is under ``1 - q``, VaR is 0 and CVaR is
    ``mean / (1 - q)`` by construction, so the probability and the conditional loss ``mean / p_loss`` say more."""
    keep = probs > 0
    fams = None if families is None else [f for f, k in zip(families, keep, strict=True) if k]
    loss, probs = np.nan_to_num(loss[keep]), probs[keep]
    if loss.size == 0:
        return {"mean": 0.0, "var": 0.0, "cvar": 0.0, "var_se": 0.0, "cvar_se": 0.0, "overlap": 0.0, "p_loss": 0.0}
    vals, w, overlap = annual_loss_distribution(loss, probs, fams)
    mean, var, cvar = weighted_tail(vals, w, q)
    p_loss = float(np.clip(w[vals > LOSS_FLOOR_USD].sum() / w.sum(), 0.0, 1.0)) if w.sum() > 0 else 0.0
    D = loss.shape[1]
    k = min(TAIL_BATCHES, D)
    bv, bc = [], []
    if k >= 2:
        for ix in np.array_split(np.arange(D), k):
            v_b, w_b, _ = annual_loss_distribution(loss[:, ix], probs, fams)
            _, v1, c1 = weighted_tail(v_b, w_b, q)
            bv.append(v1)
            bc.append(c1)

    def se(x: list[float]) -> float:
        return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) >= 2 else np.nan

    return {"mean": mean, "var": var, "cvar": cvar, "var_se": se(bv), "cvar_se": se(bc), "overlap": overlap, "p_loss": p_loss}


def _base_loss(g: pd.DataFrame, scenario: str) -> float:
    """Expected loss of the control in force in ``scenario``'s family (the outcome it replaces when it happens), 0
    when the scenario is itself that control or stands alone."""
    if "family" not in g:
        return 0.0
    row = g[g["scenario"] == scenario]
    if row.empty or str(row["status"].iloc[0]) == "in_force":
        return 0.0
    base = g[(g["family"] == row["family"].iloc[0]) & (g["status"] == "in_force") & (g["scenario"] != scenario)]
    return float(base["expected_loss_usd"].iloc[0]) if len(base) else 0.0


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
    # the same loss with every price-driven demand cut valued at the output multiple (the USGS input-output convention)
    df["io_contribution_usd"] = df["probability"] * (df["expected_loss_usd"] - df["lost_output_usd"] + df["lost_output_io_usd"])
    mine = set(PARTICIPANTS) if per == "BLOC" else {per}
    others = set(PARTICIPANTS) - mine

    def uses_proxy(flags: str, others: set[str] = others) -> bool:  # a proxy of these participants, or of the node
        return any(rests_on_proxy(f, others) for f in flags.split("; "))

    if per == "BLOC":
        # the BLOC's proxy weight of a scenario: each participant's share of the loss times its own proxy flag
        sc = result.scenarios
        parts = []
        for iso in PARTICIPANTS:
            rows_j = sc[sc["perspective"] == iso].iloc[df["_i"].to_numpy()]
            flag_j = rows_j["flags"].map(lambda f, iso=iso: uses_proxy(f, set(PARTICIPANTS) - {iso})).to_numpy(dtype=float)
            parts.append((np.clip(rows_j["expected_loss_usd"].fillna(0.0).to_numpy(), 0.0, None), flag_j))
        num = sum(c * f for c, f in parts)
        den = sum(c for c, _ in parts)
        with np.errstate(divide="ignore", invalid="ignore"):
            df["_proxy"] = np.where(den > 0, num / den, 0.0)
    else:
        df["_proxy"] = df["flags"].map(uses_proxy).astype(float)
    baseline = [s for s in sim.library() if s.family == "event" and in_baseline(s)]
    meta = result.metadata
    files = ", ".join(f"{k} {v}" for k, v in meta.get("data_files", {}).items())
    basis = f"{meta['draws']} draws, seed {meta['seed']}, data {meta['data_version']}, parameters {meta['parameters']}, {files}"
    rows = []
    for c, g in df.groupby("commodity", sort=True):
        valued = g["expected_loss_usd"].notna()
        el = float(g.loc[valued, "contribution_usd"].sum()) if valued.any() else np.nan
        gain = float(g.loc[valued, "gain_contribution_usd"].sum()) if valued.any() else np.nan
        el_io = float(g.loc[valued, "io_contribution_usd"].sum()) if valued.any() else np.nan
        tails = {"var": np.nan, "cvar": np.nan, "var_se": np.nan, "cvar_se": np.nan, "overlap": np.nan, "p_loss": np.nan}
        if result.draw_loss is not None and valued.any():
            gv = g[valued]
            tails = tail_figures(result.draw_loss[gv["_i"].to_numpy(), j, :], gv["probability"].to_numpy(),
                                 families=list(gv["family"]) if "family" in gv else None)
        elif valued.any():
            tot = result.totals.get(str(c))
            if tot is not None:
                v, cv = _quantiles(tot[j][None, :], 0.95)
                tails.update(var=float(v[0]), cvar=float(cv[0]), p_loss=float((np.asarray(tot[j]) > LOSS_FLOOR_USD).mean()))
        top = g[valued].sort_values("contribution_usd", ascending=False).head(3)
        unvalued = sorted(set(g.loc[~valued, "stage"]))
        # review 18b: a participant's consumption given as an estimate (Japan's cobalt, an upper bound) is named on the
        # row too, although it does not count in the proxy share
        proxies = sorted({f for f in "; ".join(g["flags"]).split("; ")
                          if rests_on_proxy(f, others) or names_estimate(f, others)
                          or (f.endswith(NOT_SIMULATED_FLAG) and not any(f.startswith(o) for o in others))})
        flags = [f"not valued (no world tonnage or price): {', '.join(unvalued)}"] if unvalued else []
        flags += proxies
        base_c = sorted(s.id for s in baseline if s.commodity == c)
        if base_c:
            flags.append(f"controls in force since {BASELINE_CUTOFF} or earlier are in the baseline data; their evolution "
                         f"(tightening, bans on participants) is counted: {', '.join(base_c)}")
        if np.isfinite(tails["overlap"]) and tails["overlap"] > 0.05:
            flags.append(f"two uncertain events in one year have probability {tails['overlap']:.2f}: tail figures neglect it")
        pos = g.loc[valued, "contribution_usd"].clip(lower=0.0)
        share_proxy = min(float((pos * g.loc[valued, "_proxy"]).sum() / pos.sum()), 1.0) if valued.any() and pos.sum() > 0 else 0.0
        rows.append(
            {
                "commodity": str(c),
                "name": sim.atlas.commodity_name(str(c)),
                "expected_loss_usd": el,
                "expected_loss_se_usd": float(np.sqrt(g.loc[valued, "contribution_var"].sum())) if valued.any() else np.nan,
                "producer_gain_usd": gain,
                "net_loss_usd": el - gain if np.isfinite(el) else np.nan,
                # the input-output convention: a tonne given up at a higher price valued as if a plant stopped (simulation.md §7)
                "expected_loss_io_usd": el_io,
                "var95_usd": tails["var"],
                "var95_se_usd": tails["var_se"],
                "cvar95_usd": tails["cvar"],
                "cvar95_se_usd": tails["cvar_se"],
                # review 16: where a loss is rarer than 5 % a year, VaR95 is 0 and CVaR95 is 20 x the mean by
                # construction; the annual probability of a loss and the loss when it happens say more
                "probability_of_loss": tails["p_loss"],
                "conditional_loss_usd": el / tails["p_loss"] if np.isfinite(el) and tails["p_loss"] > 0 else np.nan,
                "category": category(el),
                "proxy_share_of_loss": share_proxy,
                "top_scenarios": [
                    {"scenario": r.scenario, "probability": float(r.probability), "expected_loss_usd": float(r.expected_loss_usd),
                     "contribution_usd": float(r.contribution_usd), "status": str(r.status),
                     # review 26: where the loss is driven (cobalt's chokepoint is China's refining, its loss the DRC's quota)
                     "stage": str(r.stage), "restrictors": str(r.restrictors),
                     # the loss of the control in force that this outcome acts on top of (0 when it stands alone): the
                     # outcome adds probability x (its loss - this), not its whole loss
                     "base_loss_usd": _base_loss(g[valued], r.scenario),
                     # review 32: a measure on an input of the node (E023's precursors) withholds output made outside
                     # the restrictors; the answer must not name the restrictors' own share as what is cut
                     "on_input": INPUT_CONTROL_FLAG in str(getattr(r, "flags", ""))}
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
    best, worst = rank_range(out["expected_loss_usd"].to_numpy(dtype=float), out["expected_loss_se_usd"].to_numpy(dtype=float))
    out.insert(2, "rank_best", best)
    out.insert(3, "rank_worst", worst)
    return out, result


#: Two expected losses are told apart when they differ by more than this many standard errors of their difference.
RANK_SE = 2.0


def rank_range(el: np.ndarray, se: np.ndarray, z: float = RANK_SE) -> tuple[np.ndarray, np.ndarray]:
    """The best and worst rank each row's expected loss is consistent with, given the Monte Carlo sampling error
    (review 23: the plan at 500 draws and the CSV at 1,000 ordered close neighbours differently, with no tie marked):

        best_i  = 1 + #{k: EL_k - EL_i > z s_ik},   worst_i = n - #{k: EL_i - EL_k > z s_ik},   s_ik = sqrt(se_i² + se_k²)

    (a row without a value ranks last; an unknown SE counts as 0)."""
    v = np.where(np.isfinite(el), el, -np.inf)
    e = np.where(np.isfinite(se), se, 0.0)
    s = np.sqrt(e[:, None] ** 2 + e[None, :] ** 2)
    with np.errstate(invalid="ignore"):
        d = v[None, :] - v[:, None]  # d[i, k] = EL_k - EL_i
        above = np.where(np.isfinite(d), d > z * s, v[None, :] > v[:, None])
        below = np.where(np.isfinite(d), -d > z * s, v[None, :] < v[:, None])
    np.fill_diagonal(above, False)
    np.fill_diagonal(below, False)
    n = len(v)
    return 1 + above.sum(axis=1), n - below.sum(axis=1)
