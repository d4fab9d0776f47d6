"""Probability that a disruption scenario happens within a year.

- Controls in force (status ``in_force``) are certain: probability 1 (as in USGS OFR 2025-1047).
- Suspended controls: the ``suspended_control_probability`` setting (an assumption).
- Otherwise ``P(scenario) = p_i,node · π_target · π_duration`` where, for country ``i``:

  * base rate ``r0`` = restriction starts / producer-pair-years in the event history 2010-2025 (the
    ``base_rate_restriction`` setting when it has a value); a start is an export control the producing country
    imposed itself (not a customer's import ban or border closure, not a conflict);
  * governance multiple ``g_i = instability_i / mean instability`` over producer pairs
    (``instability = (2.5 - WGI political stability)/5``, the GeoPolRisk transform);
  * country rate, Poisson-gamma shrinkage of the country's own record toward the prior:
    ``λ_i = (n_i + k·r0·g_i) / (E_i + k)`` with ``n_i`` the country's restriction starts on its producer
    pairs (distinct commodities it produces; a start on a commodity it does not produce is outside ``E_i`` and
    is not counted), ``E_i`` its producer-pair-years and ``k`` = ``prior_strength_pair_years``;
  * per node ``p_i,node = (1 - exp(-λ_i)) / m_i,c`` (``m_i,c`` = stages of commodity c where i is a producer);
  * ``π_target``: share of historical events aimed at all destinations (WORLD); the named-target share is
    split equally among USA, JPN and BLOC (an assumption);
  * ``π_duration``: durations of ended events binned to 3/6/12/24 months (ongoing events older than 24
    months count as 24), with add-one smoothing.

The event list is curated, not exhaustive (PROVENANCE.md 8c): the base rate is biased low and is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from critmin.assess.supply import governance
from critmin.atlas.model import Atlas
from critmin.simulate.library import GENERATED_DURATIONS, GENERATED_MIN_SHARE, GENERATED_TARGETS
from critmin.simulate.nodes import NodeTable
from critmin.simulate.parameters import Parameters
from critmin.simulate.scenario import Scenario

HISTORY_START, HISTORY_END = 2010, 2025
_NOT_EXPORT = ("sanction", "import")


def is_export_control(event_type: object) -> bool:
    """An event type that restricts the supplier's own exports (not a sanction or an import ban by its customers)."""
    kind = str(event_type).lower()
    return not any(k in kind for k in _NOT_EXPORT)


def imposed_by_producer(event: dict[str, object]) -> bool:
    """The producing country imposed the measure on its own exports (review 11: China's COVID closure of the Myanmar
    border and the Kachin Independence Army's capture of the Pangwa mines were counted as Myanmar's restrictions,
    making Myanmar the world's most likely restrictor). Rows without an ``imposed_by_iso3`` column count."""
    by = str(event.get("imposed_by_iso3") if event.get("imposed_by_iso3") is not None else event.get("country_iso3") or "")
    return str(event.get("country_iso3") or "") in {x.strip() for x in by.split(";")}


@dataclass
class ProbabilityModel:
    """Fitted probability model (all figures reported with results)."""

    base_rate: float
    base_rate_basis: str
    country_rate: dict[str, float]
    target_weights: dict[str, float]
    duration_weights: dict[int, float]
    stages_per_pair: dict[tuple[str, str], int]
    suspended_probability: float
    n_events: int
    notes: list[str] = field(default_factory=list)

    def scenario_probability(self, s: Scenario, commodity_of: str) -> float:
        if s.probability is not None:
            return float(s.probability)
        if s.status == "in_force":
            return 1.0
        if s.status == "suspended":
            return self.suspended_probability
        if s.status in ("ended", "unknown") and s.family == "event":
            return 0.0
        p = 0.0
        for iso in s.restrictors:
            lam = self.country_rate.get(iso, self.base_rate)
            m = self.stages_per_pair.get((iso, commodity_of), 1)
            p += (1.0 - np.exp(-lam)) / m
        t = s.targets[0] if len(s.targets) == 1 and s.targets[0] in self.target_weights else "NAMED"
        pt = self.target_weights.get(t, self.target_weights.get("NAMED", 0.0))
        d = min(GENERATED_DURATIONS, key=lambda x: abs(x - s.duration_months))
        return float(min(p, 1.0) * pt * self.duration_weights[d])

    def summary(self) -> dict[str, object]:
        top = sorted(self.country_rate.items(), key=lambda kv: -kv[1])[:5]
        return {
            "base_rate_per_pair_year": self.base_rate,
            "base_rate_basis": self.base_rate_basis,
            "highest_country_rates": {k: round(v, 5) for k, v in top},
            "target_weights": self.target_weights,
            "duration_weights": {str(k): v for k, v in self.duration_weights.items()},
            "suspended_control_probability": self.suspended_probability,
            "events_used": self.n_events,
            "notes": self.notes,
        }


def _year(v: object) -> int | None:
    s = str(v or "")
    return int(s[:4]) if len(s) >= 4 and s[:4].isdigit() else None


def _event_commodities(event: dict[str, object], ids: set[str], names: dict[str, str], covered: set[str]) -> set[str]:
    """Commodity ids an event restricts: its listed commodities resolved by id or name ("rare earths" ->
    rare_earths, "graphite"), and the nodes its curated scenario rows cover (E004's "nickel ore; bauxite" ->
    nickel, aluminum). Items that name no commodity of the atlas (samarium, "all dual-use items") are not counted."""
    out = set(covered)
    for c in str(event.get("commodities") or "").split(";"):
        c = c.strip().split(" (")[0].lower()
        cid = c if c in ids else c.replace(" ", "_") if c.replace(" ", "_") in ids else names.get(c)
        if cid:
            out.add(cid)
    return out


def fit_probability_model(atlas: Atlas, nodes: NodeTable, params: Parameters) -> ProbabilityModel:
    """Fit the model of the module docstring from the atlas event history and governance data."""
    pairs: dict[tuple[str, str], int] = {}
    for n in nodes.nodes:
        for iso, sh in n.shares.items():
            if sh > GENERATED_MIN_SHARE:
                pairs[(iso, n.commodity)] = pairs.get((iso, n.commodity), 0) + 1
    years = HISTORY_END - HISTORY_START + 1
    exposure = pd.Series(1.0, index=pd.MultiIndex.from_tuples(list(pairs))).groupby(level=0).sum() * years
    notes: list[str] = []
    ev = atlas.tables.get("events")
    ids = set(atlas.commodities["commodity_id"])
    names = {str(n).lower(): str(c) for n, c in zip(atlas.commodities["name"], atlas.commodities["commodity_id"], strict=True)}
    es = atlas.tables.get("event_scenarios")
    covered: dict[str, set[str]] = {}
    if es is not None:
        for e, c in zip(es["event_id"], es["commodity_id"], strict=True):
            covered.setdefault(str(e), set()).add(str(c))
    starts: dict[str, set[str]] = {}
    n_events = 0
    world = named = 0
    durations: list[int] = []
    if ev is not None and len(ev):
        for r in ev.to_dict("records"):
            if not is_export_control(r["event_type"]) or not imposed_by_producer(r):
                continue
            y = _year(r["start"]) or _year(r["announced"])
            if y is None or not HISTORY_START <= y <= HISTORY_END:
                continue
            n_events += 1
            iso = str(r["country_iso3"])
            # review 10: a start counts only on a pair in the exposure (a commodity the country produces); Namibia's
            # one decree on lithium, cobalt, manganese, graphite and rare-earth ore counted five starts against three
            # producer pairs, making it the most likely restrictor in the world
            for c in _event_commodities(r, ids, names, covered.get(str(r["event_id"]), set())):
                if (iso, c) in pairs:
                    starts.setdefault(iso, set()).add(c)
            if "all destinations" in str(r["targets"]).lower():
                world += 1
            else:
                named += 1
            st, en = str(r["start"] or ""), str(r["end"] or "")
            if r["status_class"] == "ended" and st and en:
                m = (pd.Period(en[:7], "M") - pd.Period(st[:7], "M")).n
                if m > 0:
                    durations.append(int(m))
            elif r["status_class"] == "in_force" and st:
                m = (pd.Period(f"{HISTORY_END}-11", "M") - pd.Period(st[:7], "M")).n
                if m >= 24:
                    durations.append(int(m))
    else:
        notes.append("atlas has no events table: base rate, target and duration weights from parameters only")
    n_total = sum(len(v) for v in starts.values())
    spec = params.resolve("base_rate_restriction")
    if np.isfinite(spec.value):
        base, basis = float(spec.value), f"parameter base_rate_restriction ({spec.source})"
    elif n_total:
        base = n_total / float(exposure.sum())
        basis = f"computed: {n_total} country-commodity restriction starts {HISTORY_START}-{HISTORY_END} / {exposure.sum():.0f} producer-pair-years"
        notes.append("event list is curated, not exhaustive: the computed base rate is biased low")
    elif n_events and float(exposure.sum()) > 0:
        # events exist but none on a producer pair of these nodes (a toy node set): half a start, the Jeffreys prior
        base = 0.5 / float(exposure.sum())
        basis = f"computed: no restriction start {HISTORY_START}-{HISTORY_END} on these nodes' producer pairs; 0.5 / {exposure.sum():.0f} producer-pair-years"
    else:
        raise ValueError("no base rate: the atlas has no events and base_rate_restriction has no value")
    gov = governance(atlas)["instability"]
    inst = {iso: float(gov.get(iso, np.nan)) for iso in exposure.index}
    mean_inst = float(np.nanmean([inst[i] * exposure[i] for i in exposure.index]) / np.mean(exposure.to_numpy())) if len(inst) else 1.0
    k = params.setting("prior_strength_pair_years")
    rate = {}
    for iso, e in exposure.items():
        g = inst[str(iso)] / mean_inst if np.isfinite(inst[str(iso)]) and mean_inst > 0 else 1.0
        rate[str(iso)] = (len(starts.get(str(iso), ())) + k * base * g) / (e + k)
    total = world + named
    pw = (world + 1) / (total + 2)
    tw = {"WORLD": pw} | dict.fromkeys(("USA", "JPN", "BLOC", "NAMED"), (1 - pw) / 3)
    assert set(GENERATED_TARGETS) <= set(tw)
    bins = {d: 1.0 for d in GENERATED_DURATIONS}
    for m in durations:
        bins[min(GENERATED_DURATIONS, key=lambda x: abs(x - min(m, 24)))] += 1.0
    z = sum(bins.values())
    return ProbabilityModel(
        base_rate=base,
        base_rate_basis=basis,
        country_rate=rate,
        target_weights=tw,
        duration_weights={d: v / z for d, v in bins.items()},
        stages_per_pair=pairs,
        suspended_probability=params.setting("suspended_control_probability"),
        n_events=n_events,
        notes=notes,
    )
