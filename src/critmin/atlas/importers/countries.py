"""Country codes and aliases (USGS, World Bank and IEA spellings -> ISO 3166-1 alpha-3)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from critmin._text import normalise_name
from critmin.atlas.importers.common import QuirkLog, read_raw_csv
from critmin.errors import ImportDataError, Problem

SOURCE_ID = "critmin_curation"


def _entity(name: str, iso3: str) -> str:
    if iso3:
        return "country"
    low = name.casefold()
    if low.startswith("world"):
        return "world"
    if low.startswith("other") or low.startswith("rest of"):
        return "other"
    return "combined"


def import_aliases(raw_codes: Path, extra: Path, quirks: QuirkLog) -> pd.DataFrame:
    """Alias table from ``country_codes/country_name_to_iso3.csv`` plus critmin's extra aliases."""
    frames = []
    for path in (raw_codes, extra):
        df = read_raw_csv(path, quirks)
        for col in ("dataset", "source_name", "iso3"):
            if col not in df.columns:
                raise ImportDataError(Problem(path.name, 1, col, "required column is missing"))
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    # the World Bank rows read 'CODE | Name': both the code and the name are aliases
    split = df["source_name"].str.contains(" | ", regex=False)
    if split.any():
        quirks.hit("code_and_name_in_one_cell", int(split.sum()))
        parts = df[split]["source_name"].str.split(" | ", n=1, regex=False)
        codes, names = df[split].copy(), df[split].copy()
        codes["source_name"] = parts.str[0]
        names["source_name"] = parts.str[1]
        df = pd.concat([df[~split], codes, names], ignore_index=True)
    df["alias"] = df["source_name"].map(normalise_name)
    df["iso3"] = df["iso3"].str.strip().str.upper()
    df["entity"] = [_entity(a, i) for a, i in zip(df["alias"], df["iso3"], strict=True)]
    df["source_id"] = SOURCE_ID
    out = df[["alias", "dataset", "iso3", "entity", "source_id"]].drop_duplicates(["alias", "dataset"])
    return out.sort_values(["dataset", "alias"], kind="stable").reset_index(drop=True)


def build_countries(aliases: pd.DataFrame, wgi_names: dict[str, str]) -> pd.DataFrame:
    """One row per ISO3 code that appears in the aliases; World Bank name where known."""
    isos = sorted(set(aliases.loc[aliases["entity"] == "country", "iso3"]))
    first_alias = (
        aliases[aliases["entity"] == "country"].sort_values(["iso3", "dataset", "alias"]).drop_duplicates("iso3")
    )
    fallback = dict(zip(first_alias["iso3"], first_alias["alias"], strict=True))
    return pd.DataFrame(
        {"iso3": isos, "name": [wgi_names.get(i, fallback.get(i, i)) for i in isos], "source_id": SOURCE_ID}
    )
