"""World Bank Worldwide Governance Indicators importer (latest year of each indicator).

Quirks: missing values are the string ``..`` (``wgi_missing``); codes are World Bank codes, not all ISO
(``ROM``, ``ZAR``, ``TMP``, ``ADO``, ``KSV``, ``WBG``...): they are mapped through the alias table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from critmin.atlas.importers.common import CountryResolver, QuirkLog, read_raw_csv
from critmin.errors import ImportDataError, Problem

SOURCE_ID = "wb_wgi_2024"
INDICATORS = ("va", "pv", "ge", "rq", "rl", "cc")
#: Fewest economies with an estimate per indicator in the latest year before the file is taken as truncated.
MIN_COUNTRIES = 180


def import_wgi(path: Path, resolver: CountryResolver, quirks: QuirkLog) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return (governance rows for the latest year, {iso3: World Bank country name})."""
    df = read_raw_csv(path, quirks)
    for col in ("code", "countryname", "year", "indicator", "estimate"):
        if col not in df.columns:
            raise ImportDataError(Problem(path.name, 1, col, "required column is missing"))
    missing = df["estimate"].str.strip() == ".."
    quirks.hit("wgi_missing", int(missing.sum()))
    df = df[~missing & df["indicator"].isin(INDICATORS)].copy()
    df["year"] = df["year"].astype(int)
    df["estimate_f"] = pd.to_numeric(df["estimate"], errors="coerce")
    bad = df["estimate_f"].isna()
    if bad.any():
        r = df[bad].iloc[0]
        raise ImportDataError(Problem(path.name, int(r["_line"]), "estimate", f"'{r['estimate']}' is not a number"))
    latest = int(df["year"].max())
    df = df[df["year"] == latest]
    # a file cut short at a line boundary passes the CSV checks: the latest year must hold every indicator
    # for (nearly) every economy (WGI 2024 covers about 200 with estimates per indicator)
    counts = df.groupby("indicator")["code"].nunique()
    short = {i: int(counts.get(i, 0)) for i in INDICATORS if counts.get(i, 0) < MIN_COUNTRIES}
    if short:
        raise ImportDataError(Problem(path.name, None, "indicator", f"looks truncated: year {latest} has too few economies for "
                                      + ", ".join(f"{i} ({n})" for i, n in short.items()) + f" (at least {MIN_COUNTRIES} expected)"))
    rows: list[dict[str, object]] = []
    names: dict[str, str] = {}
    for rec in df.to_dict("records"):
        entity, iso3 = resolver.require(rec["code"], path.name, int(rec["_line"]), "code")
        if entity != "country":
            continue
        names.setdefault(iso3, str(rec["countryname"]).strip())
        rows.append(
            {"iso3": iso3, "year": latest, "indicator": rec["indicator"], "estimate": round(float(rec["estimate_f"]), 6), "source_id": SOURCE_ID}
        )
    return pd.DataFrame(rows), names
