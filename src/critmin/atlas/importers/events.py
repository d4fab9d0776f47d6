"""Importers for the export-restriction events (data/raw/events) and critmin's curated event scenarios.

``import_events`` turns ``events/export_restrictions.csv`` into the ``events`` table (one row per raw event,
text kept as published, a derived ``status_class``) and registers one source per event (``event_E010``).
``import_event_scenarios`` reads ``critmin/atlas/curated/event_scenarios.csv``: one row per (event, affected
commodity-stage node) with the restricted country, the targets, the regime and the withheld fraction of the
restrictor's exports (best estimate and range, with its basis). Raw-file quirks (see data/raw/PROVENANCE.md
section 8c) are counted in the quirk log: blank dates, an end date before the start date (a measure suspended
before it entered into force), several URLs in one field.

Bad input raises :class:`~critmin.errors.ImportDataError` listing every problem with file, line and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from critmin._text import normalise_name
from critmin.atlas.importers.common import QuirkLog, read_raw_csv
from critmin.atlas.schema import STAGE_ORDER, parse_date, parse_input_control
from critmin.errors import ImportDataError, Problem

EVENT_LICENCE = "facts cited from the listed public sources; compiled by critmin from data/raw/events (see PROVENANCE.md 8c)"

#: Prefix of status text -> status class (checked in this order).
STATUS_CLASSES: tuple[tuple[str, str], ...] = (
    ("ongoing", "in_force"),
    ("suspended", "suspended"),
    ("ended", "ended"),
    ("unknown", "unknown"),
)
REGIMES = ("ban", "quota", "licence", "suspension", "sanction", "closure")
WORLD = "WORLD"

_EVENT_COLUMNS = (
    "event_id", "event_type", "announced_date", "start_date", "end_date", "status", "country_iso3",
    "imposed_by_iso3", "commodities", "stages_forms", "measure", "targets", "price_change_pct",
    "price_change_note", "export_volume_change_pct", "export_volume_change_note", "source", "url",
    "verification", "note",
)
_SCENARIO_COLUMNS = (
    "event_id", "commodity_id", "stage", "restrictor_iso3", "targets", "regime", "withheld_share",
    "withheld_low", "withheld_high", "withheld_basis", "start", "end", "duration_months", "note",
)


def event_source_id(event_id: str) -> str:
    """Source id registered for an event: ``event_`` + the event id."""
    return f"event_{event_id}"


def status_class(status: str) -> str | None:
    """Class of a published status text (``in_force``, ``suspended``, ``ended``, ``unknown``); None if unknown."""
    low = status.strip().lower()
    for prefix, cls in STATUS_CLASSES:
        if low.startswith(prefix):
            return cls
    return None


def months_between(start: str, end: str) -> int | None:
    """Whole months from ``start`` to ``end`` (``YYYY-MM``); None when either is blank or invalid."""
    a, b = parse_date(start, month_only=True), parse_date(end, month_only=True)
    if a is None or b is None:
        return None
    return (b[0] - a[0]) * 12 + (b[1] - a[1])


def _missing_columns(df: pd.DataFrame, wanted: tuple[str, ...], file: str) -> list[Problem]:
    return [Problem(file, 1, c, "required column is missing") for c in wanted if c not in df.columns]


def _number(text: str, problems: list[Problem], file: str, line: int, field: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text.replace("\u2212", "-"))
    except ValueError:
        problems.append(Problem(file, line, field, f"'{text}' is not a number"))
        return None
    if value != value:  # NaN
        problems.append(Problem(file, line, field, f"'{text}' is not a number"))
        return None
    return value


def import_events(
    path: Path, iso_codes: set[str], country_names: Mapping[str, str], quirks: QuirkLog
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw export-restriction events -> (events rows, one sources row per event)."""
    file = path.name
    df = read_raw_csv(path, quirks)
    problems = _missing_columns(df, _EVENT_COLUMNS, file)
    if problems:
        raise ImportDataError(problems)
    rows: list[dict[str, object]] = []
    sources: list[dict[str, object]] = []
    seen: set[str] = set()
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        text = {k: normalise_name(v) for k, v in rec.items() if k != "_line"}

        def bad(field: str, message: str, line: int = line) -> None:
            problems.append(Problem(file, line, field, message))

        eid = text["event_id"]
        if not eid:
            bad("event_id", "required value is blank")
        elif eid in seen:
            bad("event_id", f"duplicate event '{eid}'")
        seen.add(eid)
        for field in ("event_type", "status", "commodities", "stages_forms", "measure", "targets", "source"):
            if not text[field]:
                bad(field, "required value is blank")
        dates = {}
        for field in ("announced_date", "start_date", "end_date"):
            value = text[field]
            if not value:
                quirks.hit("event_blank_date")
            elif parse_date(value) is None:
                bad(field, f"'{value}' is not a date of the form YYYY-MM or YYYY-MM-DD")
            dates[field] = value
        start, end = dates["start_date"], dates["end_date"]
        if start and end and parse_date(start) and parse_date(end) and _pad(end) < _pad(start):
            quirks.hit("event_end_before_start")  # suspended before entry into force (E021-E024)
        cls = status_class(text["status"])
        if text["status"] and cls is None:
            bad("status", f"cannot classify status '{text['status']}' (expected it to start with ongoing, suspended, ended or unknown)")
        country = text["country_iso3"]
        if not country:
            bad("country_iso3", "required value is blank")
        elif country not in iso_codes:
            bad("country_iso3", f"unknown country code '{country}'")
        imposed = [c.strip() for c in text["imposed_by_iso3"].split(";") if c.strip()]
        for code in imposed:
            if code not in iso_codes:
                bad("imposed_by_iso3", f"unknown country code '{code}'")
        price = _number(text["price_change_pct"], problems, file, line, "price_change_pct")
        volume = _number(text["export_volume_change_pct"], problems, file, line, "export_volume_change_pct")
        urls = [u for u in text["url"].split("; ") if u]
        if len(urls) > 1:
            quirks.hit("event_multi_url")
        sid = event_source_id(eid)
        year_text = start or dates["announced_date"]
        rows.append(
            {
                "event_id": eid,
                "event_type": text["event_type"],
                "announced": dates["announced_date"],
                "start": start,
                "end": end,
                "status": text["status"],
                "status_class": cls or "",
                "country_iso3": country,
                "imposed_by_iso3": ";".join(imposed),
                "commodities": text["commodities"],
                "stages_forms": text["stages_forms"],
                "measure": text["measure"],
                "targets": text["targets"],
                "price_change_pct": price,
                "price_change_note": text["price_change_note"],
                "volume_change_pct": volume,
                "volume_change_note": text["export_volume_change_note"],
                "note": text["note"],
                "source_id": sid,
            }
        )
        name = country_names.get(country, country)
        sources.append(
            {
                "source_id": sid,
                "organisation": text["source"],
                "title": f"Export restriction event {eid}: {text['measure']} on {text['commodities']} ({name})",
                "year": int(year_text[:4]) if year_text and parse_date(year_text) else None,
                "licence": EVENT_LICENCE,
                "url": text["url"],
                "verification": text["verification"],
            }
        )
    if problems:
        raise ImportDataError(problems)
    return pd.DataFrame(rows), pd.DataFrame(sources)


def _pad(date: str) -> str:
    """``YYYY-MM`` -> ``YYYY-MM-01`` so that dates of both forms compare as text."""
    return date if len(date) == 10 else date + "-01"


def _month(date: str) -> str:
    return date[:7]


def import_event_scenarios(
    path: Path,
    events: pd.DataFrame,
    nodes: set[tuple[str, str]],
    iso_codes: set[str],
    quirks: QuirkLog,
) -> pd.DataFrame:
    """Curated event scenarios -> event_scenarios rows, each checked against the events and the stage nodes.

    Checks: the event exists; (commodity_id, stage) is a node of the stages table; restrictor_iso3 is the
    event's country; targets are WORLD or known ISO3 codes; regime is known; 0 <= low <= best <= high <= 1;
    start/end are the months of the event's start/end; duration_months is the whole months between them.
    """
    file = path.name
    df = read_raw_csv(path, quirks)
    problems = _missing_columns(df, _SCENARIO_COLUMNS, file)
    if problems:
        raise ImportDataError(problems)
    by_event = {str(r["event_id"]): r for r in events.to_dict("records")}
    rows: list[dict[str, object]] = []
    seen: set[tuple[str, str, str]] = set()
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        text = {k: normalise_name(v) for k, v in rec.items() if k != "_line"}

        def bad(field: str, message: str, line: int = line) -> None:
            problems.append(Problem(file, line, field, message))

        eid, cid, stage = text["event_id"], text["commodity_id"], text["stage"]
        event = by_event.get(eid)
        if event is None:
            bad("event_id", f"unknown event '{eid}' (not in events/export_restrictions.csv)")
        if (cid, stage) not in nodes:
            bad("stage" if cid in {c for c, _ in nodes} else "commodity_id", f"no atlas node {cid}/{stage} in stages")
        if (eid, cid, stage) in seen:
            bad("stage", f"duplicate row for {eid} {cid}/{stage}")
        seen.add((eid, cid, stage))
        restrictor = text["restrictor_iso3"]
        if restrictor not in iso_codes:
            bad("restrictor_iso3", f"unknown country code '{restrictor}'")
        elif event is not None and restrictor != event["country_iso3"]:
            bad("restrictor_iso3", f"'{restrictor}' is not the event's country '{event['country_iso3']}'")
        targets = [t.strip() for t in text["targets"].split(";")]
        if targets != [WORLD]:
            for t in targets:
                if t not in iso_codes:
                    bad("targets", f"unknown target '{t}' (use {WORLD} or ';'-separated ISO3 codes)")
        if text["regime"] not in REGIMES:
            bad("regime", f"'{text['regime']}' is not one of {list(REGIMES)}")
        shares: dict[str, float | None] = {}
        for field in ("withheld_share", "withheld_low", "withheld_high"):
            v = _number(text[field], problems, file, line, field)
            if v is None and not text[field]:
                bad(field, "required value is blank")
            elif v is not None and not 0 <= v <= 1:
                bad(field, f"fraction {text[field]} is outside 0-1")
                v = None
            shares[field] = v
        lo, best, hi = shares["withheld_low"], shares["withheld_share"], shares["withheld_high"]
        if lo is not None and best is not None and hi is not None and not lo <= best <= hi:
            bad("withheld_share", f"need withheld_low <= withheld_share <= withheld_high, got {lo} / {best} / {hi}")
        if not text["withheld_basis"]:
            bad("withheld_basis", "required value is blank: say where the fraction comes from")
        # optional: the share of the node's exports the measure's product list covers (blank = 1, the whole node)
        scope: dict[str, float] = {}
        for field in ("scope_low", "scope_high"):
            raw = text.get(field, "") or ""
            v = _number(raw, problems, file, line, field) if raw else 1.0
            if v is not None and not 0 <= v <= 1:
                bad(field, f"fraction {raw} is outside 0-1")
                v = None
            scope[field] = 1.0 if v is None else v
        if scope["scope_low"] > scope["scope_high"]:
            bad("scope_low", f"need scope_low <= scope_high, got {scope['scope_low']} / {scope['scope_high']}")
        if (scope["scope_low"] < 1 or scope["scope_high"] < 1) and not (text.get("scope_basis") or ""):
            bad("scope_basis", "required when scope_low/scope_high are given: say where the covered share comes from")
        # optional: a measure on an input of the node ("KOR:1": the producers whose output at the node is made from
        # the restrictor's input, and the share of it; Scenario.input_control)
        control = text.get("input_control", "") or ""
        try:
            parsed = parse_input_control(control)
        except ValueError as exc:
            bad("input_control", str(exc))
            parsed = {}
        for iso, v in parsed.items():
            if iso not in iso_codes or not 0 <= v <= 1:
                bad("input_control", f"'{iso}:{v:g}' is not ISO3:share with a known country and a share in 0-1")
            elif iso == restrictor:
                bad("input_control", f"'{iso}' names the restrictor: list the producers that depend on its input")
        if control and not (text.get("note") or ""):
            bad("note", "required when input_control is given: say which input the measure covers")
        for field, event_field in (("start", "start"), ("end", "end")):
            value = text[field]
            if value and parse_date(value, month_only=True) is None:
                bad(field, f"'{value}' is not a month of the form YYYY-MM")
            elif event is not None and value != _month(str(event[event_field])):
                want = _month(str(event[event_field])) or "blank"
                bad(field, f"'{value or 'blank'}' differs from the event's {event_field} month ({want})")
        months = months_between(text["start"], text["end"])
        if months is not None and months < 0:
            bad("end", f"end {text['end']} is before start {text['start']}")
        given = text["duration_months"]
        want_duration = "" if months is None else str(months)
        if given != want_duration:
            bad("duration_months", f"'{given or 'blank'}' should be '{want_duration or 'blank'}' (whole months from start to end)")
        rows.append(
            {
                "event_id": eid,
                "commodity_id": cid,
                "stage": stage,
                "restrictor_iso3": restrictor,
                "targets": ";".join(targets),
                "regime": text["regime"],
                "withheld_share": best,
                "withheld_low": lo,
                "withheld_high": hi,
                "withheld_basis": text["withheld_basis"],
                "scope_low": scope["scope_low"],
                "scope_high": scope["scope_high"],
                "scope_basis": text.get("scope_basis", "") or "",
                "input_control": control,
                "start": text["start"],
                "end": text["end"],
                "duration_months": months,
                "note": text["note"],
                "source_id": event_source_id(eid),
                "_order": STAGE_ORDER.get(stage, len(STAGE_ORDER)),
            }
        )
    if problems:
        raise ImportDataError(problems)
    return pd.DataFrame(rows)


_TRANSITION_COLUMNS = ("regime_event_id", "changed_by_event_id", "date", "kind", "targets", "note")


def import_regime_transitions(path: Path, event_ids: set[str], quirks: QuirkLog) -> pd.DataFrame:
    """What in-force controls became (tightening, a ban on a participant, relaxation) -> regime_transitions.

    Each row cites the sources of its regime event; both event ids must be in the events table.
    """
    file = path.name
    df = read_raw_csv(path, quirks)
    problems = _missing_columns(df, _TRANSITION_COLUMNS, file)
    if problems:
        raise ImportDataError(problems)
    rows = []
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        text = {k: normalise_name(v) for k, v in rec.items() if k != "_line"}
        for field in ("regime_event_id", "changed_by_event_id"):
            if text[field] and text[field] not in event_ids:
                problems.append(Problem(file, line, field, f"unknown event '{text[field]}' (not in events/export_restrictions.csv)"))
        rows.append({k: text[k] for k in _TRANSITION_COLUMNS} | {"source_id": event_source_id(text["regime_event_id"])})
    if problems:
        raise ImportDataError(problems)
    return pd.DataFrame(rows, columns=[*_TRANSITION_COLUMNS, "source_id"])
