"""What a control already in force can become: tightening, a ban aimed at a participant, or relaxation.

A control in force is no longer a surprise (the 2024 baseline data already reflect those that started by
then), but it is not "no risk": the record shows such regimes escalate. China's gallium and germanium
licences (August 2023) became a ban on exports to the USA in December 2024; its graphite licences were
tightened for the USA, then extended to anode materials; its rare-earth controls grew in April and October
2025. The risk of an in-force regime is therefore modelled as what it can become.

Transition rates are fitted from the atlas tables ``events`` (the regimes and their dates) and
``regime_transitions`` (what each became, with sources):

- exposure ``E`` = regime-years: from each export control's start to its end or ``HISTORY_END``, summed over
  the controls (sanctions and import measures excluded; a control without a start date is not counted);
- per kind ``k`` (tightening, ban_to_participant, relaxation): ``n_k`` transitions (a transition to a measure
  suspended before it entered into force is not counted: it is a suspended scenario of its own); the annual rate
  ``λ_k = n_k / E`` and probability ``P_k = 1 - exp(-λ_k)`` per regime and year; an exact 90 % Poisson
  interval (Garwood) on ``λ_k`` is reported;
- per restricting country ``i`` (the supplier whose exports a regime controls), the rate is shrunk toward the
  pooled rate of the *other* restricting countries (leave-one-out, so China's record does not become the DRC's
  prior) with a Poisson-gamma prior of ``k`` regime-years (the ``prior_strength_regime_years`` setting):
  ``λ_ik = (n_ik + k·λ_{-i,k}) / (E_i + k)``, ``λ_{-i,k} = (n_k − n_ik)/(E − E_i)`` — China's regimes since 2023
  escalated faster than the others' history, and its rates say so;
- a ban aimed at a participant is split between targets USA, JPN and BLOC with add-one smoothing of the
  observed targets;
- a transition is counted for the destinations it concerns (:meth:`RegimeModel.probability_for` with a
  ``target``): one aimed at every destination (targets ``WORLD``) counts for each, one for the USA only counts for
  the USA. China's November 2025 general licences for U.S. end users (five regimes) are relaxations for the USA,
  not of the control: Japan's buyers gained nothing from them (review 25). ``target="WORLD"`` counts only the
  relaxations of the control for every buyer; the default (``None``) counts every transition of the kind.

Each in-force control at a node (restrictor, commodity, stage) gets the family of evolution scenarios:

- ``tighten``: the restrictor denies a further share of its exports to every destination, drawn from the
  node's ``licence_denial`` range (sourced per commodity where possible), probability ``P_tightening``;
- ``ban.USA``, ``ban.JPN``, ``ban.BLOC``: a full ban on the participant(s), probability ``P_ban × π_target``.

A relaxation costs the participants nothing (prices fall), so it carries no loss; its probability is
reported. Evolution scenarios last ``in_force_horizon_months`` and act on the baseline flows (which already
include the control when it is in the baseline data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import chi2

from critmin.atlas.importers.events import months_between
from critmin.atlas.model import Atlas
from critmin.simulate.nodes import PARTICIPANTS
from critmin.simulate.probability import imposed_by_producer, is_export_control
from critmin.simulate.scenario import Scenario

HISTORY_END = "2026-06"
KINDS = ("tightening", "ban_to_participant", "relaxation")


@dataclass
class RegimeModel:
    """Fitted transition probabilities of in-force export controls (annual, per regime)."""

    exposure_years: float
    counts: dict[str, int]
    probability: dict[str, float]
    interval90: dict[str, tuple[float, float]]
    target_weights: dict[str, float]
    regimes: list[str]
    notes: list[str] = field(default_factory=list)
    by_country: dict[str, dict[str, float]] = field(default_factory=dict)  # restrictor -> kind -> annual probability
    country_exposure: dict[str, float] = field(default_factory=dict)
    #: the transitions counted: (restrictor, kind, destinations it concerns)
    transitions: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)
    prior_regime_years: float = 5.0

    def probability_for(self, iso: str, kind: str, target: str | None = None) -> float:
        """Annual probability of a transition of ``kind`` for a regime of restrictor ``iso``; with ``target`` (a
        participant, or ``WORLD``), only the transitions that concern that destination, aimed at it or at every
        destination (module docstring):

        ``λ_ik(T) = (n_ik(T) + k λ_{-i,k}(T)) / (E_i + k)``, ``P = 1 - exp(-λ)``, where ``n_ik(T)`` counts the
        transitions of ``iso`` whose targets hold ``T`` or ``WORLD`` and ``λ_{-i,k}(T)`` is the same rate of the
        other restrictors (leave-one-out)."""
        if target is None:
            return self.by_country.get(iso, {}).get(kind, self.probability[kind])
        hits = [t for t in self.transitions if t[1] == kind and ("WORLD" in t[2] or target in t[2])]
        n_i = sum(1 for t in hits if t[0] == iso)
        e_i = self.country_exposure.get(iso, 0.0)
        e_other = self.exposure_years - e_i
        loo = (len(hits) - n_i) / e_other if e_other > 0 else 0.0
        k = self.prior_regime_years
        if e_i + k <= 0:
            return 0.0
        return float(1.0 - np.exp(-(n_i + k * loo) / (e_i + k)))

    def summary(self) -> dict[str, object]:
        return {
            "exposure_regime_years": round(self.exposure_years, 2),
            "transitions": self.counts,
            "annual_probability": {k: round(v, 4) for k, v in self.probability.items()},
            "annual_rate_interval90": {k: [round(a, 4), round(b, 4)] for k, (a, b) in self.interval90.items()},
            "ban_target_weights": {k: round(v, 3) for k, v in self.target_weights.items()},
            "by_restrictor": {i: {k: round(v, 4) for k, v in d.items()} for i, d in sorted(self.by_country.items())},
            "relaxation_by_destination": {i: {t: round(self.probability_for(i, "relaxation", t), 4) for t in ("WORLD", *PARTICIPANTS)}
                                          for i in sorted(self.by_country)},
            "restrictor_exposure_regime_years": {i: round(v, 2) for i, v in sorted(self.country_exposure.items())},
            "regimes_counted": self.regimes,
            "notes": self.notes,
        }


def fit_regime_model(atlas: Atlas, history_end: str = HISTORY_END, prior_regime_years: float = 5.0) -> RegimeModel:
    """The model of the module docstring from the atlas event tables."""
    ev = atlas.tables.get("events")
    tr = atlas.tables.get("regime_transitions")
    notes: list[str] = []
    exposure = 0.0
    counted: list[str] = []
    by_exposure: dict[str, float] = {}
    country_of: dict[str, str] = {}
    if ev is not None:
        for r in ev.to_dict("records"):
            # review 12: as for restriction starts, a regime is the producer's own measure (not China's closure of
            # the Myanmar border, nor an armed group's capture of Myanmar's mines)
            if not is_export_control(r["event_type"]) or not imposed_by_producer(r):
                continue
            start = str(r.get("start") or "")
            if len(start) < 7:
                continue
            end = str(r.get("end") or "")
            stop = min(end[:7], history_end) if len(end) >= 7 else history_end
            if stop <= start[:7]:
                continue  # suspended before entry into force
            years = max(months_between(start[:7], stop) or 0, 0) / 12.0
            exposure += years
            counted.append(str(r["event_id"]))
            by_exposure[str(r["country_iso3"])] = by_exposure.get(str(r["country_iso3"]), 0.0) + years
        country_of = {str(r["event_id"]): str(r["country_iso3"]) for r in ev.to_dict("records")}
    never = never_in_force(atlas)
    counts = dict.fromkeys(KINDS, 0)
    by_counts: dict[str, dict[str, int]] = {}
    tgt = {"USA": 0, "JPN": 0, "BLOC": 0}
    skipped: list[str] = []
    counted_transitions: list[tuple[str, str, frozenset[str]]] = []
    if tr is not None:
        for r in tr.to_dict("records"):
            # review 22: a measure suspended before it entered into force (China's Oct 2025 packages, E021-E023) is
            # a suspended scenario of its own; counted as a transition too, it raised the hazard of every Chinese
            # control and entered the node's outcomes twice
            if str(r.get("changed_by_event_id") or "") in never:
                skipped.append(f"{r['regime_event_id']}->{r['changed_by_event_id']}")
                continue
            counts[str(r["kind"])] += 1
            iso = country_of.get(str(r["regime_event_id"]), "")
            by_counts.setdefault(iso, dict.fromkeys(KINDS, 0))[str(r["kind"])] += 1
            counted_transitions.append((iso, str(r["kind"]), frozenset(str(r["targets"] or "WORLD").split(";"))))
            if r["kind"] == "ban_to_participant":
                t = str(r["targets"]).split(";")
                key = "BLOC" if set(t) >= set(PARTICIPANTS) else (t[0] if t[0] in tgt else None)
                if key:
                    tgt[key] += 1
    prob, interval = {}, {}
    for k in KINDS:
        n = counts[k]
        lam = n / exposure if exposure > 0 else 0.0
        prob[k] = float(1.0 - np.exp(-lam))
        lo = chi2.ppf(0.05, 2 * n) / 2 / exposure if n > 0 and exposure > 0 else 0.0
        hi = chi2.ppf(0.95, 2 * n + 2) / 2 / exposure if exposure > 0 else np.inf
        interval[k] = (float(lo), float(hi))
    tot = sum(tgt.values()) + len(tgt)
    weights = {k: (v + 1) / tot for k, v in tgt.items()}
    def loo(iso: str, k: str) -> float:
        """The pooled rate of the other restricting countries (leave-one-out): one country's record (China's)
        does not set another's prior."""
        e = exposure - by_exposure.get(iso, 0.0)
        return (counts[k] - by_counts.get(iso, {}).get(k, 0)) / e if e > 0 else 0.0

    by_country = {
        iso: {k: float(1.0 - np.exp(-(by_counts.get(iso, {}).get(k, 0) + prior_regime_years * loo(iso, k)) / (e + prior_regime_years)))
              for k in KINDS}
        for iso, e in by_exposure.items()
    }
    notes.append("exposure counts export controls with a start date, from start to end or " + history_end
                 + "; transitions as recorded in regime_transitions (curated from the event table's sources)")
    if skipped:
        notes.append("transitions to measures suspended before entry into force are not counted (they are suspended scenarios): "
                     + ", ".join(skipped))
    notes.append("small sample: the 90 % intervals on the annual rates are wide (see annual_rate_interval90)")
    notes.append(f"per restrictor: Poisson-gamma shrinkage toward the pooled rates of the other restrictors (leave-one-out) "
                 f"with {prior_regime_years:g} regime-years of prior weight")
    notes.append("a transition counts for the destinations it concerns (relaxation_by_destination): China's November 2025 "
                 "general licences for U.S. end users are relaxations for the USA only")
    return RegimeModel(exposure, counts, prob, interval, weights, counted, notes, by_country, by_exposure,
                       counted_transitions, prior_regime_years)


def never_in_force(atlas: Atlas) -> set[str]:
    """Ids of the events suspended before they entered into force (an end on or before the start month)."""
    ev = atlas.tables.get("events")
    if ev is None:
        return set()
    out = set()
    for r in ev.to_dict("records"):
        start, end = str(r.get("start") or ""), str(r.get("end") or "")
        if len(start) >= 7 and len(end) >= 7 and end[:7] <= start[:7]:
            out.add(str(r["event_id"]))
    return out


def export_controls(atlas: Atlas) -> set[str]:
    """Ids of the events that are export controls of the supplier country (not sanctions or import bans by
    its customers): only these can tighten or be aimed at a participant."""
    ev = atlas.tables.get("events")
    if ev is None:
        return set()
    return {str(r["event_id"]) for r in ev.to_dict("records") if is_export_control(r["event_type"]) and imposed_by_producer(r)}


def evolution_scenarios(control: Scenario, model: RegimeModel, horizon_months: int) -> list[tuple[Scenario, float]]:
    """The evolution family of one in-force control scenario, with each scenario's annual probability."""
    out: list[tuple[Scenario, float]] = []
    base = f"evo.{control.id.removeprefix('ev.')}"
    common: dict[str, Any] = dict(commodity=control.commodity, stage=control.stage, restrictors=list(control.restrictors),
                  duration_months=horizon_months, status="hypothetical", family=base, event_id=control.event_id,
                  source_ids=list(control.source_ids))
    iso = control.restrictors[0]
    p_t = model.probability_for(iso, "tightening")
    if p_t > 0:
        out.append((Scenario(id=f"{base}.tighten", title=f"{control.event_id}: the control tightens (further licence denials to all destinations)",
                             targets=["WORLD"], regime="licence",
                             note="evolution of a control in force: a further share of exports denied (licence_denial range)", **common), p_t))
    p_b = model.probability_for(iso, "ban_to_participant")
    for tgt, wgt in model.target_weights.items():
        if p_b * wgt <= 0 or set(control.restrictors) & (set(PARTICIPANTS) if tgt == "BLOC" else {tgt}):
            continue
        out.append((Scenario(id=f"{base}.ban.{tgt}", title=f"{control.event_id}: the control becomes a ban on exports to {tgt}",
                             targets=[tgt], regime="ban", withheld_share=1.0,
                             note="evolution of a control in force: a ban aimed at a participant", **common), p_b * wgt))
    return out
