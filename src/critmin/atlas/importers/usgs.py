"""USGS Mineral Commodity Summaries data release importer (world data and U.S. salient statistics).

Quirks handled (each counted in the build report and covered by a test):

- ``bom``: files start with a UTF-8 byte-order mark;
- ``stray_space_in_column_name``: ``PROD_EST_ 2024``, ``CAP_EST_ 2024``;
- ``whitespace_in_name``: trailing and non-breaking spaces in commodity and country names;
- ``misspelt_commodity``: ``Gemanium`` (= germanium), mapped through ``usgs_world_series.csv``;
- ``country_qualifier``: ``Brazil (beneficiated)``, ``United States (includes Puerto Rico)``;
- ``aggregate_row``: ``World total (rounded)``, ``Other countries``, ``United States and Canada``;
- ``withheld_W``, ``not_available_NA``, ``net_exporter_E``, ``dash_zero``;
- ``inequality_as_text`` (``>50``, ``<100,000``) and ``thousands_separator``;
- ``footnote_in_note``: footnote text kept in the ``note`` column, never parsed as a number;
- ``unit_blank_filled``: a row with a blank UNIT_MEAS takes the unit of its series;
- ``unit_mislabelled``: a series whose UNIT_MEAS contradicts its values (curated ``unit_override``, with the
  evidence in the series map's note);
- ``rounded_world_total``: world totals are rounded and may exclude U.S. production; shares use the sum of
  reported countries plus "Other countries", and the gap to the published total is recorded;
- ``empty_row``: rows with no value at all are dropped;
- ``duplicate_column``: a salient file with the same column twice keeps both (``Consump_t#2``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from critmin._text import normalise_name
from critmin.atlas.importers.common import CountryResolver, QuirkLog, parse_usgs_value, read_raw_csv
from critmin.errors import ImportDataError, Problem

SOURCE_ID = "usgs_mcs2025"
_MEASURE_COL = re.compile(r"^(PROD|CAP|RESERVES)(?:_EST)?_ ?(\d{4})$")
_MEASURE = {"PROD": "production", "CAP": "capacity", "RESERVES": "reserves"}
_NOTE = {"production": "PROD_NOTES", "capacity": "CAP_NOTES", "reserves": "RESERVE_NOTES"}

WORLD_COLUMNS = ("COMMODITY", "COUNTRY", "TYPE", "UNIT_MEAS")


def import_world_data(
    path: Path, series_map: pd.DataFrame, resolver: CountryResolver, quirks: QuirkLog
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """World production, capacity and reserves by country -> (production rows, world-total check, unmapped).

    ``series_map`` (critmin/atlas/curated/usgs_world_series.csv) maps each (COMMODITY, TYPE) to a commodity and stage.
    A series missing from the map is reported in ``unmapped`` and skipped, so a newer USGS release imports
    with a clear list of what still needs mapping.
    """
    df = read_raw_csv(path, quirks)
    for col in WORLD_COLUMNS:
        if col not in df.columns:
            raise ImportDataError(Problem(path.name, 1, col, "required column is missing"))
    value_cols = [(c, _MEASURE_COL.match(c)) for c in df.columns]
    value_cols = [(c, m) for c, m in value_cols if m]
    quirks.hit("stray_space_in_column_name", sum(1 for c, _ in value_cols if " " in c))
    if not value_cols:
        raise ImportDataError(Problem(path.name, 1, "PROD_2023", "no PROD_/CAP_/RESERVES_ year columns"))
    smap = {
        (normalise_name(r.usgs_commodity), normalise_name(r.usgs_type)): r
        for r in series_map.itertuples(index=False)
    }
    rows: list[dict[str, object]] = []
    unmapped: set[str] = set()
    series_units: dict[tuple[str, str], str] = {}
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        for col in ("COMMODITY", "COUNTRY", "TYPE"):
            raw_text = str(rec[col])
            if raw_text != normalise_name(raw_text):
                quirks.hit("whitespace_in_name")
        commodity, typ = normalise_name(rec["COMMODITY"]), normalise_name(rec["TYPE"])
        if commodity == "Gemanium":
            quirks.hit("misspelt_commodity")
        m = smap.get((commodity, typ))
        if m is None:
            unmapped.add(f"{commodity} | {typ}")
            continue
        unit = normalise_name(rec["UNIT_MEAS"])
        override = normalise_name(getattr(m, "unit_override", "") or "")
        if override and unit:  # a blank unit is filled from the series below (quirk unit_blank_filled)
            quirks.hit("unit_mislabelled")
            unit = override
        if unit:
            series_units.setdefault((commodity, typ), unit)
        country_raw = normalise_name(rec["COUNTRY"])
        entity, iso3 = resolver.require(country_raw, path.name, line, "COUNTRY")
        if entity != "country":
            quirks.hit("aggregate_row")
        elif "(" in country_raw:
            quirks.hit("country_qualifier")
        for col, mt in value_cols:
            assert mt is not None
            measure, year = _MEASURE[mt.group(1)], int(mt.group(2))
            try:
                value, qual = parse_usgs_value(rec[col], quirks)
            except ValueError as exc:
                raise ImportDataError(Problem(path.name, line, col, str(exc))) from exc
            if value is None and qual == "":
                continue
            note = normalise_name(rec.get(_NOTE[measure], ""))
            if note:
                quirks.hit("footnote_in_note")
            rows.append(
                {
                    "commodity_id": m.commodity_id,
                    "stage": m.stage,
                    "series": typ,
                    "for_shares": str(m.use_for_shares).strip().lower() == "yes",
                    "entity": entity,
                    "country_iso3": iso3,
                    "raw_name": country_raw,
                    "year": year,
                    "case": "",
                    "measure": measure,
                    "value": value,
                    "unit": unit,
                    "qualifier": qual,
                    "note": note,
                    "source_id": SOURCE_ID,
                    "_key": (commodity, typ),
                }
            )
    if not rows:
        raise ImportDataError(Problem(path.name, None, None, "no mapped rows: is this a USGS world data file?"))
    prod = pd.DataFrame(rows)
    blank_unit = prod["unit"] == ""
    if blank_unit.any():
        quirks.hit("unit_blank_filled", int(blank_unit.sum()))
        prod.loc[blank_unit, "unit"] = [series_units.get(k, "") for k in prod.loc[blank_unit, "_key"]]
    prod = prod.drop(columns="_key")
    check = world_total_check(prod)
    quirks.hit("rounded_world_total", int((check["gap_pct"].abs() > 0).sum()))
    return prod, check, sorted(unmapped)


def world_total_check(prod: pd.DataFrame) -> pd.DataFrame:
    """Compare sum(countries) + other with the published (rounded) world total, per series, year and measure.

    ``gap_pct = 100 * (published - computed) / published``. Where a series has several world rows (e.g.
    titanium 'World total (ilmenite, rounded)' and '(ilmenite and rutile, rounded)'), the one naming a single
    item (no ' and ') is used.
    """
    keys = ["commodity_id", "stage", "series", "year", "measure", "unit"]
    vals = prod[prod["value"].notna()]
    countries = vals[vals["entity"] == "country"].groupby(keys)["value"].sum().rename("countries_sum")
    other = vals[vals["entity"] == "other"].groupby(keys)["value"].sum().rename("other_sum")
    world = vals[vals["entity"] == "world"].copy()
    world["_combined"] = world["raw_name"].str.contains(" and ")
    world = world.sort_values([*keys, "_combined"]).drop_duplicates(keys, keep="first")
    published = world.set_index(keys)[["value", "note"]].rename(columns={"value": "published_total"})
    out = pd.concat([countries, other], axis=1).join(published, how="left").reset_index()
    out["countries_sum"] = out["countries_sum"].fillna(0.0)
    out["other_sum"] = out["other_sum"].fillna(0.0)
    out["computed_total"] = out["countries_sum"] + out["other_sum"]
    pub = out["published_total"]
    out["gap_pct"] = (100.0 * (pub - out["computed_total"]) / pub).where(pub > 0).round(3)
    out["note"] = out["note"].fillna("")
    out["source_id"] = SOURCE_ID
    return out


# ------------------------------------------------------------------------------------------- salient
_PREFIXES = (
    ("usprod", "production"),
    ("prod", "production"),
    ("imports", "imports"),
    ("exports", "exports"),
    ("consump", "consumption"),
    ("price", "price"),
    ("nir", "nir"),
    ("stocks", "stocks"),
    ("employment", "employment"),
    ("shipments", "shipments"),
)
_UNITS = {
    "t": "t",
    "kt": "kt",
    "kg": "kg",
    "g": "kg",  # germanium Consump_g is kilograms per the USGS metadata
    "mmt": "Mt",
    "mct": "million carats",
    "mcm": "million m3",
    "mdol": "million USD",
    "pct": "%",
    "ct": "%",
    "num": "number",
    "dt": "USD/t",
    "dkg": "USD/kg",
    "dlb": "USD/lb",
    "ctslb": "US cents/lb",
    "dtoz": "USD/troy oz",
    "dto": "USD/troy oz",
    "dg": "USD/g",
    "dst": "USD/short ton",
    "df": "USD/flask",
}


def classify_salient_column(column: str) -> tuple[str, str]:
    """(measure, unit) of a salient-statistics column from its prefix and suffix.

    ``Imports_Metal_kg`` -> ('imports', 'kg'); ``NIR_ct`` -> ('nir', '%'); ``Bauxite_NIR_pct`` -> ('nir', '%').
    """
    base = column.split("#")[0]
    parts = [p for p in re.split(r"_", base) if p]
    low = [p.lower() for p in parts]
    measure = "other"
    for p in low:
        for prefix, name in _PREFIXES:
            if p == prefix or (prefix in ("usprod", "imports", "exports", "consump", "price", "nir") and p.startswith(prefix)):
                measure = name
                break
        if measure != "other":
            break
    unit = _UNITS.get(low[-1], "") if low else ""
    if measure == "nir":
        unit = "%"
    return measure, unit


def import_salient(
    folder: Path, headline: pd.DataFrame, quirks: QuirkLog
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All salient-statistics files -> (long table of every column, headline U.S. trade table).

    The headline map (critmin/atlas/curated/usgs_salient_headline.csv) names, per file and form, the columns summed
    for production, imports and exports, and the consumption, NIR and price columns.
    """
    files = sorted(folder.glob("mcs*_salient.csv"))
    if not files:
        raise ImportDataError(Problem(str(folder), None, None, "no *_salient.csv files found"))
    long_rows: list[dict[str, object]] = []
    trade_rows: list[dict[str, object]] = []
    by_code = {code: grp for code, grp in headline.groupby("file_code", sort=True)}
    for path in files:
        code = path.name.split("-", 1)[1].rsplit("_salient", 1)[0]
        if code not in by_code:
            raise ImportDataError(Problem(path.name, None, None, f"salient file code '{code}' is not in usgs_salient_headline.csv"))
        hl = by_code[code]
        df = read_raw_csv(path, quirks)
        dup = [c for c in df.columns if "#" in c]
        quirks.hit("duplicate_column", len(dup))
        if "Year" not in df.columns:
            raise ImportDataError(Problem(path.name, 1, "Year", "required column is missing"))
        value_cols = [c for c in df.columns if c not in ("DataSource", "Source", "Commodity", "Year", "_line") and c]
        col_commodity: dict[str, str] = {}
        for r in hl.itertuples(index=False):
            for field in ("production_cols", "imports_cols", "exports_cols", "consumption_col", "nir_col", "price_col"):
                for c in _split(getattr(r, field)):
                    col_commodity.setdefault(c, r.commodity_id)
        default_commodity = str(hl["commodity_id"].iloc[0])
        parsed: dict[tuple[int, str], tuple[float | None, str]] = {}
        for rec in df.to_dict("records"):
            line = int(rec["_line"])
            try:
                year = int(float(normalise_name(rec["Year"])))
            except ValueError as exc:
                raise ImportDataError(Problem(path.name, line, "Year", f"'{rec['Year']}' is not a year")) from exc
            for c in value_cols:
                value, qual = parse_salient_cell(rec[c], quirks)
                parsed[(year, c)] = (value, qual)
                if value is None and qual == "":
                    continue
                measure, unit = classify_salient_column(c)
                long_rows.append(
                    {
                        "commodity_id": col_commodity.get(c, default_commodity),
                        "file_code": code,
                        "variable": c,
                        "measure": measure,
                        "year": year,
                        "value": value,
                        "unit": unit,
                        "qualifier": qual,
                        "source_id": SOURCE_ID,
                    }
                )
        years = sorted({y for y, _ in parsed})
        for r in hl.itertuples(index=False):
            for c in [*_split(r.production_cols), *_split(r.imports_cols), *_split(r.exports_cols),
                      *_split(r.consumption_col), *_split(r.nir_col), *_split(r.price_col)]:
                if c not in df.columns:
                    raise ImportDataError(Problem(path.name, 1, c, "column named in usgs_salient_headline.csv is missing"))
            for y in years:
                nir, nir_q = _single(parsed, y, r.nir_col)
                if nir_q == "E":
                    nir = 0.0
                price = _nonneg(_single(parsed, y, r.price_col)[0])
                trade_rows.append(
                    {
                        "commodity_id": r.commodity_id,
                        "form": _text(r.form),
                        "headline": len(hl[hl["commodity_id"] == r.commodity_id]) == 1 or _text(r.note).lower().startswith("headline"),
                        "year": y,
                        "production": _sum(parsed, y, r.production_cols),
                        "imports": _sum(parsed, y, r.imports_cols),
                        "exports": _sum(parsed, y, r.exports_cols),
                        "consumption": _nonneg(_single(parsed, y, r.consumption_col)[0]),
                        "nir_pct": nir,
                        "nir_qualifier": nir_q,
                        "price": price,
                        "price_unit": classify_salient_column(_text(r.price_col))[1] if _text(r.price_col) else "",
                        "unit": _text(r.unit),
                        "source_id": SOURCE_ID,
                    }
                )
    return pd.DataFrame(long_rows), pd.DataFrame(trade_rows)


def parse_salient_cell(text: object, quirks: QuirkLog) -> tuple[float | None, str]:
    """Parse a salient-statistics cell: USGS values as in :func:`parse_usgs_value`, plus the free text some
    cells hold ('Less than 1/2 unit.', 'Small', ranges '500–15,000'), recorded as not available (``NA``) and
    counted as ``text_in_numeric_cell``; a Unicode minus sign is read as a minus (``unicode_minus``)."""
    s = normalise_name(text)
    if "\u2212" in s:
        quirks.hit("unicode_minus")
        s = s.replace("\u2212", "-")
    try:
        return parse_usgs_value(s, quirks)
    except ValueError:
        quirks.hit("text_in_numeric_cell")
        return None, "NA"


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    return normalise_name(v)


def _split(v: object) -> list[str]:
    return [c.strip() for c in _text(v).split(";") if c.strip()]


def _single(parsed: dict[tuple[int, str], tuple[float | None, str]], year: int, col: object) -> tuple[float | None, str]:
    cols = _split(col)
    if not cols:
        return None, ""
    return parsed.get((year, cols[0]), (None, ""))


def _nonneg(v: float | None) -> float | None:
    return None if v is None or v < 0 else v


def _sum(parsed: dict[tuple[int, str], tuple[float | None, str]], year: int, cols: object) -> float | None:
    """Sum of several columns; None when any is withheld or missing (a partial sum would understate P, I or E)."""
    names = _split(cols)
    if not names:
        return None
    total = 0.0
    for c in names:
        value, qual = parsed.get((year, c), (None, ""))
        if value is None or qual in ("<", ">") or value < 0:
            return None
        total += value
    return total


def import_fig2_sources(path: Path, name_to_commodity: dict[str, str], resolver: CountryResolver, quirks: QuirkLog) -> pd.DataFrame:
    """Fig. 2 of MCS 2025: major U.S. import sources 2020-23 in descending order (ranks, no percentages)."""
    df = read_raw_csv(path, quirks)
    rows = []
    for rec in df.to_dict("records"):
        name = normalise_name(rec["Commodity"])
        cid = name_to_commodity.get(name)
        if cid is None:
            raise ImportDataError(Problem(path.name, int(rec["_line"]), "Commodity", f"commodity '{name}' is not in name_map.csv"))
        if not cid:
            continue
        partners = [normalise_name(p) for p in str(rec["Major_Import_Sources_2020_2023"]).split(",") if normalise_name(p)]
        for rank, p in enumerate(partners, start=1):
            entity, iso3 = resolver.require(p, path.name, int(rec["_line"]), "Major_Import_Sources_2020_2023")
            rows.append(
                {
                    "importer_iso3": "USA",
                    "commodity_id": cid,
                    "form": name,
                    "partner_iso3": iso3,
                    "partner_entity": entity,
                    "share_pct": None,
                    "bound": "",
                    "rank": rank,
                    "period": "2020-23",
                    "verification": "official file",
                    "note": normalise_name(rec.get("Notes", "")),
                    "source_id": SOURCE_ID,
                }
            )
    return pd.DataFrame(rows)


def import_fig2_reliance(
    path: Path, name_to_commodity: dict[str, str], notes: pd.DataFrame, us_trade: pd.DataFrame, year: int, quirks: QuirkLog
) -> pd.DataFrame:
    """U.S. trade rows carrying only a net import reliance, for commodities with no NIR in a salient table.

    Two published sources, in this order:

    - Fig. 2 of MCS 2025, which prints the 2024 NIR of each commodity it shows (``>95`` is read as a lower bound);
    - the Fig. 2 metadata, which names the commodities left out of the figure because the United States was a
      net exporter (NIR 0, qualifier ``E``) or because "available information was inadequate to calculate the
      exact percentage" (qualifier ``NA``, no value), transcribed with its quote in
      critmin/atlas/curated/usgs_nir_notes.csv.

    A commodity that a salient table already gives an NIR keeps it; these rows only fill the gaps.
    """
    have = set(us_trade.loc[us_trade["nir_pct"].notna() | us_trade["nir_qualifier"].isin(["NA", "W"]), "commodity_id"])
    rows: list[dict[str, object]] = []

    def add(cid: str, value: float | None, qual: str) -> None:
        rows.append({"commodity_id": cid, "form": "mcs2025_fig2", "headline": True, "year": year, "production": None, "imports": None,
                     "exports": None, "consumption": None, "nir_pct": value, "nir_qualifier": qual, "price": None,
                     "price_unit": "", "unit": "", "source_id": SOURCE_ID})
        have.add(cid)

    df = read_raw_csv(path, quirks)
    for rec in df.to_dict("records"):
        cid = name_to_commodity.get(normalise_name(rec["Commodity"]), "")
        if not cid or cid in have:
            continue
        value, qual = parse_salient_cell(rec.get("Net_Import_Reliance_pct_2024"), quirks)
        if value is None:
            continue
        add(cid, 0.0 if qual == "E" else value, qual)
    for rec in notes.to_dict("records"):
        cid, qual = str(rec["commodity_id"]), str(rec["nir_qualifier"])
        if qual not in ("E", "NA"):
            raise ImportDataError(Problem("usgs_nir_notes.csv", None, "nir_qualifier", f"'{qual}' is neither E nor NA"))
        if cid not in have:
            add(cid, 0.0 if qual == "E" else None, qual)
    return pd.DataFrame(rows, columns=list(us_trade.columns))
