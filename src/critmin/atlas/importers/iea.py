"""IEA Critical Minerals Dataset importer (supply by country and stage; demand by sector and scenario).

Source: IEA (2025), Critical Minerals Dataset, CC BY 4.0; restructured to JSON by a third party and by us.
Quirks: footnote strings parsed as country keys under REE mining (keys longer than 60 characters, values null)
are skipped (``iea_footnote_key``); "Rest of world" is an IEA aggregate (entity ``other``); lithium is Li
content; graphite "refining" is battery-grade graphite; nickel's listed countries plus rest of world exceed
the stated total by ~3 % (the share denominator is the sum of rows, as for USGS).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from critmin.atlas.importers.common import CountryResolver, QuirkLog
from critmin.errors import ImportDataError, Problem

SOURCE_ID = "iea_cmd_2025"
STAGES = {"mining": "mine", "refining": "refine"}
MAX_KEY_LEN = 60


def import_iea(
    path: Path, minerals: dict[str, str], resolver: CountryResolver, quirks: QuirkLog
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (production rows, demand rows). ``minerals`` maps IEA mineral names to commodity ids."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ImportDataError(Problem(path.name, exc.lineno, None, f"invalid JSON: {exc.msg}")) from exc
    except RecursionError as exc:  # deeply nested input: a clear error naming the file, never a traceback
        raise ImportDataError(Problem(path.name, None, None, "invalid JSON: nested too deeply")) from exc
    if not isinstance(data, dict):
        raise ImportDataError(Problem(path.name, None, None, "expected a JSON object with 'supply' and 'totalDemand'"))
    for key in ("supply", "totalDemand"):
        if key not in data:
            raise ImportDataError(Problem(path.name, None, key, "required key is missing"))
    prod: list[dict[str, object]] = []
    for mineral, stages in sorted(data["supply"].items()):
        cid = minerals.get(mineral)
        if not cid:
            raise ImportDataError(Problem(path.name, None, f"supply.{mineral}", "IEA mineral not in the mineral map"))
        for stage_name, block in sorted(stages.items()):
            stage = STAGES.get(stage_name)
            if stage is None:
                raise ImportDataError(Problem(path.name, None, f"supply.{mineral}.{stage_name}", "unknown IEA stage"))
            series = f"IEA {stage_name} production, base case"
            for country, years in sorted(block.get("countries", {}).items()):
                if len(country) > MAX_KEY_LEN or years is None:
                    quirks.hit("iea_footnote_key")
                    continue
                hit = resolver.resolve(country)
                if hit is None:
                    raise ImportDataError(Problem(path.name, None, f"supply.{mineral}.{stage_name}", f"unknown country '{country}'"))
                entity, iso3 = hit
                for year, value in sorted(years.items()):
                    if value is None:
                        continue
                    y = int(year)
                    prod.append(
                        {
                            "commodity_id": cid,
                            "stage": stage,
                            "series": series,
                            "for_shares": True,
                            "entity": entity,
                            "country_iso3": iso3,
                            "raw_name": country,
                            "year": y,
                            "case": "" if y <= 2024 else "base",
                            "measure": "production",
                            "value": float(value),
                            "unit": "kt",
                            "qualifier": "",
                            "note": "IEA base case projection" if y > 2024 else "",
                            "source_id": SOURCE_ID,
                        }
                    )
            for year, value in sorted((block.get("total") or {}).items()):
                if value is None:
                    continue
                y = int(year)
                prod.append(
                    {
                        "commodity_id": cid, "stage": stage, "series": series, "for_shares": True,
                        "entity": "world", "country_iso3": "", "raw_name": "Total", "year": y,
                        "case": "" if y <= 2024 else "base", "measure": "production", "value": float(value),
                        "unit": "kt", "qualifier": "", "note": "IEA stated total", "source_id": SOURCE_ID,
                    }
                )
    demand: list[dict[str, object]] = []

    def add_demand(mineral: str, sector: str, series: dict[str, object]) -> None:
        cid = minerals.get(mineral)
        if not cid:
            quirks.hit("iea_unmapped_mineral")
            return
        for key, val in series.items():
            if isinstance(val, dict):
                for year, v in val.items():
                    if v is not None:
                        demand.append(_demand_row(cid, mineral, sector, key, int(year), float(v)))
            elif val is not None:
                demand.append(_demand_row(cid, mineral, sector, "Observed", int(key), float(val)))  # type: ignore[arg-type]

    for mineral, block in sorted(data["totalDemand"].items()):
        for sector, series in sorted(block.get("sectors", {}).items()):
            add_demand(mineral, sector, series)
        for total_key, label in (("totalClean", "Total clean technologies"), ("otherUses", "Other uses"), ("totalDemand", "Total demand")):
            if total_key in block:
                add_demand(mineral, label, block[total_key])
    known = {m for m in data["totalDemand"]}
    for mineral, series in sorted(data.get("cleantechByMineral", {}).items()):
        if mineral not in known:
            add_demand(mineral, "Total clean technologies", series)
    return pd.DataFrame(prod), pd.DataFrame(demand)


def _demand_row(cid: str, mineral: str, sector: str, scenario: str, year: int, value: float) -> dict[str, object]:
    return {
        "commodity_id": cid,
        "iea_mineral": mineral,
        "sector": sector,
        "scenario": scenario,
        "year": year,
        "value": max(value, 0.0) if abs(value) < 1e-9 else value,
        "unit": "kt",
        "source_id": SOURCE_ID,
    }
