"""Shared pieces of the importers: reading raw CSV files, parsing USGS numbers, resolving country names."""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from critmin._text import alias_key, normalise_name
from critmin.errors import ImportDataError, Problem


@dataclass
class QuirkLog:
    """Register of the raw-data quirks an importer handled, with how often each occurred."""

    counts: Counter[str] = field(default_factory=Counter)

    def hit(self, quirk: str, n: int = 1) -> None:
        if n:
            self.counts[quirk] += n


def read_raw_csv(path: Path, quirks: QuirkLog | None = None) -> pd.DataFrame:
    """Read a raw CSV as strings: BOM stripped, header names whitespace-normalised, nothing parsed as NaN.

    Adds a ``_line`` column with the 1-based file line of each record (header = line 1) for error messages.
    """
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf") and quirks is not None:
        quirks.hit("bom")
    text = raw.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration as exc:
        raise ImportDataError(Problem(path.name, None, None, "file is empty")) from exc
    clean = [normalise_name(h) for h in header]
    if quirks is not None:
        quirks.hit("stray_space_in_column_name", sum(1 for h, c in zip(header, clean, strict=True) if h != c))
    # a column name with an inner space before a year ('PROD_EST_ 2024') is kept as published
    rows, lines = [], []
    extra: list[Problem] = []
    for rec in reader:
        if not any(x.strip() for x in rec):
            continue
        if len(rec) < len(clean):
            rec = rec + [""] * (len(clean) - len(rec))
        elif any(x.strip() for x in rec[len(clean):]):
            # a stray comma in an unquoted cell shifts every later field: refuse it rather than drop the tail
            extra.append(Problem(path.name, reader.line_num, clean[-1], (
                f"{len(rec)} fields where the header has {len(clean)}: a cell with a comma must be quoted")))
        rows.append(rec[: len(clean)])
        lines.append(reader.line_num)
    if extra:
        raise ImportDataError(extra)
    # duplicate header names (e.g. 'Consump_t' twice) get a suffix so no column is lost
    seen: Counter[str] = Counter()
    names = []
    for c in clean:
        seen[c] += 1
        names.append(c if seen[c] == 1 else f"{c}#{seen[c]}")
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    frame["_line"] = lines
    return frame


_NUM = re.compile(r"^[<>]?\s*-?[0-9][0-9,]*(\.[0-9]+)?$")


def parse_usgs_value(text: object, quirks: QuirkLog | None = None) -> tuple[float | None, str]:
    """Parse a USGS cell into (value, qualifier).

    - blank -> (None, '') not reported;  ``W`` -> (None, 'W') withheld;  ``NA`` -> (None, 'NA');
    - ``E`` -> (None, 'E') net exporter (NIR columns);  ``—``/``-`` -> (0.0, '') zero;
    - ``>50`` -> (50.0, '>');  ``<100,000`` -> (100000.0, '<');  ``1,234`` -> (1234.0, '').
    Anything else raises ValueError.
    """
    s = normalise_name(text)
    if s == "":
        return None, ""
    if s in ("W", "NA", "E"):
        if quirks is not None:
            quirks.hit({"W": "withheld_W", "NA": "not_available_NA", "E": "net_exporter_E"}[s])
        return None, s
    if s in ("—", "–", "-", "--"):
        if quirks is not None:
            quirks.hit("dash_zero")
        return 0.0, ""
    if _NUM.match(s):
        qual = ""
        if s[0] in "<>":
            qual, s = s[0], s[1:].strip()
            if quirks is not None:
                quirks.hit("inequality_as_text")
        if "," in s:
            if quirks is not None:
                quirks.hit("thousands_separator")
            s = s.replace(",", "")
        v = float(s)
        if not math.isfinite(v):  # a 5,000-digit number is no production figure
            raise ValueError(f"'{s[:20]}...' ({len(s)} characters) is too large to be a value")
        return v, qual
    raise ValueError(f"cannot parse '{s}' as a USGS value")


class CountryResolver:
    """Map a country name or code as written in a dataset to (entity, iso3).

    entity is ``country``, ``other`` (a remainder of many small producers: 'Other countries', 'Rest of world'),
    ``world`` (a published total) or ``combined`` (several countries in one row, e.g. 'United States and
    Canada'). Lookup order: exact normalised alias (case-insensitive), ISO3 code, the name with a trailing
    parenthesised qualifier removed ('Brazil (beneficiated)' -> 'Brazil').
    """

    def __init__(self, aliases: pd.DataFrame, iso3_codes: set[str]):
        self.iso3_codes = iso3_codes
        self._map: dict[str, tuple[str, str]] = {}
        for alias, iso3, entity in zip(aliases["alias"], aliases["iso3"], aliases["entity"], strict=True):
            self._map.setdefault(alias_key(alias), (entity, iso3))

    def resolve(self, name: object) -> tuple[str, str] | None:
        s = normalise_name(name)
        key = s.casefold()
        if key in self._map:
            return self._map[key]
        if s.upper() in self.iso3_codes and len(s) == 3:
            return "country", s.upper()
        low = key
        if low.startswith("world total") or low == "world":
            return "world", ""
        if low.startswith("other countries") or low in ("other", "rest of world", "others"):
            return "other", ""
        base = re.sub(r"\s*\([^)]*\)\s*$", "", s).strip()
        if base != s:
            return self.resolve(base)
        # a footnote marker glued to the name: 'China3' -> 'China'
        base = re.sub(r"(?<=[A-Za-z)])\s*\d{1,2}$", "", s).strip()
        if base != s:
            return self.resolve(base)
        return None

    def require(self, name: object, file: str, line: int, field: str) -> tuple[str, str]:
        hit = self.resolve(name)
        if hit is None:
            raise ImportDataError(Problem(file, line, field, f"unknown country '{normalise_name(name)}'"))
        return hit
