"""Importers for the hand-built CSVs in data/raw (stage shares, import sources, consumption).

Each raw row carries its own source text and URL; a source id is derived from them (stable hash) and the
sources table gets one row per distinct (source, url). The commodity and stage of each row come from
``critmin/atlas/curated/name_map.csv``; rows the map excludes (demand shares, maker nationality...) are counted in
the build report.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from critmin._text import normalise_name
from critmin.atlas.importers.common import CountryResolver, QuirkLog, read_raw_csv
from critmin.errors import ImportDataError, Problem


class SourceRegistry:
    """Collects sources met in hand-built files; ids are ``src_`` + 10 hex digits of sha1(source|url)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, object]] = {}

    def register(self, source: str, url: str, verification: str, year: object = None, licence: str = "") -> str:
        source, url = normalise_name(source), normalise_name(url)
        sid = "src_" + hashlib.sha1(f"{source}|{url}".encode()).hexdigest()[:10]
        if sid not in self.rows:
            org = re.split(r"[,(]| via | as reported| as quoted", source, maxsplit=1)[0].strip() or source
            self.rows[sid] = {
                "source_id": sid,
                "organisation": org,
                "title": source,
                "year": year if year not in ("", None) else None,
                "licence": licence or "Facts with attribution (see data/raw/PROVENANCE.md)",
                "url": url,
                "verification": verification,
            }
        return sid

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(sorted(self.rows.values(), key=lambda r: str(r["source_id"])))


def _verification(note: str) -> str:
    n = note.upper()
    if n.startswith("COMPUTED"):
        return "computed"
    if "THIRD-PARTY" in n or "LOW-TIER" in n:
        return "third-party"
    return "verbatim"


def _bound(note: str, text: str = "") -> str:
    n = (note + " " + text).upper()
    if "LOWER BOUND" in n or re.search(r'\bOVER\b|MORE THAN|\bABOVE\b|\bAT LEAST\b', n):
        return "ge"
    if "UPPER BOUND" in n or re.search(r"\bNEARLY\b|\bBELOW\b|LESS THAN|\bUNDER\b|\bALMOST\b", n):
        return "le"
    if re.search(r"APPROX|\bSOME\b|\bABOUT\b|~|\bAROUND\b", n):
        return "approx"
    return ""


def _name_lookup(name_map: pd.DataFrame, dataset: str) -> dict[tuple[str, str], tuple[bool, str, str]]:
    m = name_map[name_map["dataset"] == dataset]
    return {
        (normalise_name(r.raw_commodity), normalise_name(r.raw_stage)): (r.include == "yes", r.commodity_id, r.stage)
        for r in m.itertuples(index=False)
    }


def import_stage_shares(
    paths: dict[str, Path], name_map: pd.DataFrame, resolver: CountryResolver, sources: SourceRegistry, quirks: QuirkLog
) -> pd.DataFrame:
    """Published stage shares (verbatim and derivative files) -> stage_shares rows."""
    rows = []
    for dataset, path in paths.items():
        df = read_raw_csv(path, quirks)
        lookup = _name_lookup(name_map, dataset)
        for rec in df.to_dict("records"):
            line = int(rec["_line"])
            key = (normalise_name(rec["commodity"]), normalise_name(rec["stage"]))
            if key not in lookup:
                raise ImportDataError(Problem(path.name, line, "commodity", f"'{key[0]}' / '{key[1]}' is not in name_map.csv"))
            include, cid, stage = lookup[key]
            if not include:
                quirks.hit("excluded_by_name_map")
                continue
            if not normalise_name(rec["share_pct"]):
                quirks.hit("share_left_blank")  # the source gave no number (e.g. "about half of the remainder")
                continue
            hit = resolver.resolve(rec["country_iso3"])
            if hit is None or hit[0] != "country":
                quirks.hit("aggregate_partner_skipped")
                continue
            note = normalise_name(rec.get("note", ""))
            share_kind = normalise_name(rec.get("share_kind", "")) or (
                "capacity" if "capacity" in str(rec["stage"]) else "production"
            )
            projection = "PROJECTION" in note.upper() or "projected" in note.lower()
            verification = _verification(note)
            rows.append(
                {
                    "commodity_id": cid,
                    "stage": stage,
                    "product": normalise_name(rec["commodity"]),
                    "country_iso3": hit[1],
                    "share_pct": float(rec["share_pct"]),
                    "bound": _bound(note),
                    "share_kind": share_kind,
                    "year": int(rec["year"]),
                    "verification": verification,
                    "projection": projection,
                    "note": note,
                    "source_id": sources.register(rec["source"], rec["url"], verification),
                }
            )
    return pd.DataFrame(rows)


def import_us_import_sources(path: Path, name_map: pd.DataFrame, sources: SourceRegistry, quirks: QuirkLog) -> pd.DataFrame:
    """U.S. import-source percentages typed from MCS chapters -> import_sources rows (importer USA)."""
    df = read_raw_csv(path, quirks)
    lookup = _name_lookup(name_map, "us_import_sources")
    rows = []
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        key = (normalise_name(rec["commodity"]), "")
        if key not in lookup:
            raise ImportDataError(Problem(path.name, line, "commodity", f"'{key[0]}' is not in name_map.csv"))
        _, cid, _ = lookup[key]
        iso = normalise_name(rec["country_iso3"])
        note = normalise_name(rec.get("note", ""))
        third = "third-party" in normalise_name(rec.get("obtained_via", "")).lower() or "github" in normalise_name(rec.get("obtained_via", "")).lower()
        verification = "third-party" if third else "verbatim"
        rows.append(
            {
                "importer_iso3": "USA",
                "commodity_id": cid,
                "form": normalise_name(rec["import_category"]),
                "partner_iso3": iso,
                "partner_entity": "country" if iso else "other",
                "share_pct": float(rec["share_pct"]),
                "bound": "",
                "rank": None,
                "period": normalise_name(rec["period"]),
                "verification": verification,
                "note": note,
                "source_id": sources.register(f"USGS {normalise_name(rec['mcs_edition'])}, import sources", rec["source_url"], verification),
            }
        )
    return pd.DataFrame(rows)


def import_japan_import_sources(
    path: Path, name_map: pd.DataFrame, resolver: CountryResolver, sources: SourceRegistry, quirks: QuirkLog
) -> pd.DataFrame:
    """Japan's import-source shares from press and agency figures -> import_sources rows (importer JPN)."""
    df = read_raw_csv(path, quirks)
    lookup = _name_lookup(name_map, "japan_import_sources")
    rows = []
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        key = (normalise_name(rec["commodity"]), "")
        if key not in lookup:
            raise ImportDataError(Problem(path.name, line, "commodity", f"'{key[0]}' is not in name_map.csv"))
        _, cid, _ = lookup[key]
        partner = normalise_name(rec["partner_iso3"])
        if ";" in partner:
            entity, iso3 = "combined", ""
            quirks.hit("combined_partner")
        else:
            entity, iso3 = resolver.require(partner, path.name, line, "partner_iso3")
        note = normalise_name(rec.get("note", ""))
        verification = _verification(note)
        rows.append(
            {
                "importer_iso3": "JPN",
                "commodity_id": cid,
                "form": normalise_name(rec["form"]),
                "partner_iso3": iso3,
                "partner_entity": entity,
                "share_pct": float(rec["share_pct"]),
                "bound": _bound(note),
                "rank": None,
                "period": normalise_name(rec["year"]),
                "verification": verification,
                "note": note + (f" Partners: {partner}." if entity == "combined" else ""),
                "source_id": sources.register(rec["source"], rec["url"], verification, rec["year"]),
            }
        )
    return pd.DataFrame(rows)


def import_consumption(path: Path, name_map: pd.DataFrame, sources: SourceRegistry, quirks: QuirkLog) -> pd.DataFrame:
    """U.S. and Japanese consumption figures -> consumption rows; ranges ('4500-5000') keep both ends."""
    df = read_raw_csv(path, quirks)
    lookup = _name_lookup(name_map, "consumption")
    rows = []
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        item = normalise_name(rec["commodity"])
        if (item, "") not in lookup:
            raise ImportDataError(Problem(path.name, line, "commodity", f"'{item}' is not in name_map.csv"))
        include, cid, _ = lookup[(item, "")]
        if not include:
            quirks.hit("excluded_by_name_map")
            continue
        q = normalise_name(rec["quantity"])
        lo = hi = None
        if q:
            m = re.fullmatch(r"([0-9.]+)\s*-\s*([0-9.]+)", q)
            if m:
                lo, hi = float(m.group(1)), float(m.group(2))
                quirks.hit("range_quantity")
            else:
                try:
                    lo = float(q.replace(",", ""))
                except ValueError as exc:
                    raise ImportDataError(Problem(path.name, line, "quantity", f"'{q}' is not a number")) from exc
        note = normalise_name(rec.get("note", ""))
        verification = _verification(note)
        rows.append(
            {
                "country_iso3": normalise_name(rec["country_iso3"]),
                "commodity_id": cid,
                "stage": "",
                "item": item,
                "quantity": lo,
                "quantity_high": hi,
                "unit": normalise_name(rec["unit"]),
                "year": int(rec["year"]),
                "note": note,
                "source_id": sources.register(rec["source"], rec["url"], verification, rec["year"]),
            }
        )
    return pd.DataFrame(rows)
