"""The scenario library: real export-restriction events from the atlas, and generated families.

- Event scenarios: one per row of the atlas table ``event_scenarios`` (built from data/raw/events with each
  event's sources). Ongoing controls are ``in_force``; without an end date they run for the
  ``in_force_horizon_months`` setting.
- Generated families: every producer with more than ``GENERATED_MIN_SHARE`` of a node's world output ×
  target (WORLD, USA, JPN, BLOC) × duration (3, 6, 12, 24 months); a country never targets itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from critmin.atlas.model import Atlas
from critmin.atlas.schema import parse_input_control
from critmin.simulate.nodes import PARTICIPANTS, NodeTable
from critmin.simulate.scenario import Response, Scenario

GENERATED_MIN_SHARE = 0.01
GENERATED_TARGETS = ("WORLD", "USA", "JPN", "BLOC")
GENERATED_DURATIONS = (3, 6, 12, 24)
_STATUS = {"in_force": "in_force", "suspended": "suspended", "ended": "ended", "unknown": "unknown"}


def generated_scenarios(nodes: NodeTable, min_share: float = GENERATED_MIN_SHARE) -> list[Scenario]:
    """The generated families (see module docstring), in a stable order."""
    out: list[Scenario] = []
    for n in nodes.nodes:
        for iso, share in sorted(n.shares.items(), key=lambda kv: (-kv[1], kv[0])):
            if share <= min_share:
                continue
            for target in GENERATED_TARGETS:
                covered = PARTICIPANTS if target == "BLOC" else (target,)
                if iso in covered:
                    continue
                for months in GENERATED_DURATIONS:
                    out.append(
                        Scenario.model_construct(
                            id=f"gen.{iso}.{n.commodity}.{n.stage}.{target}.{months}m",
                            title=f"{iso} withholds all {n.commodity} ({n.stage}) exports to {target} for {months} months",
                            commodity=n.commodity,
                            stage=n.stage,
                            restrictors=[iso],
                            targets=[target],
                            regime="ban",
                            withheld_share=1.0,
                            withheld_low=None,
                            withheld_high=None,
                            start_month=0,
                            duration_months=months,
                            leakage=None,
                            response=_NO_RESPONSE,
                            probability=None,
                            status="hypothetical",
                            family=f"gen.{iso}.{n.commodity}.{n.stage}",
                            event_id=None,
                            source_ids=list(n.source_ids),
                            note="",
                        )
                    )
    return out


def _months_between(start: str, end: str) -> int | None:
    if not start or not end:
        return None
    try:
        a, b = pd.Period(start[:7], "M"), pd.Period(end[:7], "M")
    except ValueError:
        return None
    m = (b - a).n
    return int(m) if m > 0 else None


def scope_note(r: dict[str, object]) -> str:
    """The covered-share sentence of an event row (empty when the measure covers the whole node)."""
    lo, hi = float(r.get("scope_low", 1.0)), float(r.get("scope_high", 1.0))  # type: ignore[arg-type]
    if lo >= 1.0 and hi >= 1.0:
        return ""
    return f"The measure covers {lo:g}-{hi:g} of the node's exports: {r.get('scope_basis', '')}. "


def event_scenarios(atlas: Atlas, horizon_months: int = 12) -> list[Scenario]:
    """Scenarios of the real events (empty when the atlas has no ``event_scenarios`` table)."""
    if "event_scenarios" not in atlas.tables:
        return []
    ev = atlas.tables["events"].set_index("event_id")
    out: list[Scenario] = []
    for r in atlas.tables["event_scenarios"].to_dict("records"):
        e = ev.loc[r["event_id"]]
        status = _STATUS.get(str(e["status_class"]), "unknown")
        dur = r.get("duration_months")
        dur = int(dur) if dur is not None and not (isinstance(dur, float) and np.isnan(dur)) and str(dur) != "" else None
        if not dur:  # unknown, or 0 for controls suspended before entry into force
            dur = _months_between(str(r.get("start") or ""), str(r.get("end") or "")) or horizon_months
        targets = [t for t in str(r["targets"]).split(";") if t]
        restrictors = [t for t in str(r["restrictor_iso3"]).split(";") if t]
        sid = f"ev.{r['event_id']}.{r['commodity_id']}.{r['stage']}" + ("" if targets == ["WORLD"] else "." + "-".join(targets))
        lo, hi = float(r["withheld_low"]), float(r["withheld_high"])
        best: float | None = float(r["withheld_share"])
        basis = str(r.get("withheld_basis", ""))
        if str(r["regime"]) == "licence":
            # the event row's figures are falls in the first months; a year-long scenario uses the annual
            # denial share of the licence_denial parameter (sourced per commodity where available)
            basis = f"licence regime: annual denial share from the licence_denial parameter (event row, first months: {lo:g}-{hi:g})"
            best = None
        out.append(
            Scenario(
                id=sid,
                start_month=0,
                leakage=None,
                title=f"{r['event_id']}: {e['measure']} on {e['commodities']} ({e['country_iso3']} -> {r['targets']})",
                commodity=str(r["commodity_id"]),
                stage=str(r["stage"]),
                restrictors=restrictors,
                targets=targets,
                regime=str(r["regime"]),  # type: ignore[arg-type]
                withheld_share=best,
                withheld_low=lo if best is not None else None,
                withheld_high=hi if best is not None else None,
                scope_low=float(r.get("scope_low", 1.0)),
                scope_high=float(r.get("scope_high", 1.0)),
                input_control=parse_input_control(r.get("input_control")) or None,
                # start of the measure, else its announcement (E028: effective date not stated, announced 2023)
                start_date=(str(r.get("start") or "") or str(e.get("start") or "") or str(e.get("announced") or ""))[:7] or None,
                duration_months=min(max(dur, 1), 120),
                status=status,  # type: ignore[arg-type]
                probability=1.0 if status == "in_force" else None,
                family="event",
                event_id=str(r["event_id"]),
                source_ids=[str(r["source_id"])],
                note=f"{basis}. {scope_note(r)}{r.get('note', '')}".strip(". "),
            )
        )
    return out


def scenario_library(atlas: Atlas, nodes: NodeTable, horizon_months: int = 12, generated: bool = True) -> list[Scenario]:
    """Event scenarios (first) and generated families."""
    ev = [s for s in event_scenarios(atlas, horizon_months) if s.node in {(n.commodity, n.stage) for n in nodes.nodes}]
    return ev + (generated_scenarios(nodes) if generated else [])


def find_scenario(scenarios: list[Scenario], key: str) -> Scenario:
    """A scenario by id (exact, then unique prefix)."""
    for s in scenarios:
        if s.id == key:
            return s
    hits = [s for s in scenarios if s.id.startswith(key)]
    if len(hits) == 1:
        return hits[0]
    from critmin.errors import CritminError

    if hits:
        raise CritminError(f"'{key}' matches {len(hits)} scenarios (e.g. {', '.join(h.id for h in hits[:5])}); give the full id")
    raise CritminError(f"no scenario '{key}' in the library; `critmin scenarios list` shows the ids")


_NO_RESPONSE = Response()
