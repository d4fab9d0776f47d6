"""Importer for critmin's curated, sourced tables in data/raw (prices by node, trade, world output, events...).

Each raw file has the columns of its atlas table (``schema/tables.csv``) except ``source_id``, plus the
source columns ``source`` (organisation and title), ``url``, ``licence``, ``verification`` and optionally
``source_year`` (publication year). The source columns give a stable ``source_id`` (see
:class:`~critmin.atlas.importers.handbuilt.SourceRegistry`); country columns accept ISO3 codes or names; the
result is checked against the table's schema with the raw file's name and line in every problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from critmin._text import normalise_name
from critmin.atlas.importers.common import CountryResolver, QuirkLog, read_raw_csv
from critmin.atlas.importers.handbuilt import SourceRegistry
from critmin.atlas.schema import table_schemas, validate_table
from critmin.errors import ImportDataError, Problem

SOURCE_COLUMNS = ("source", "url", "licence", "verification")


def import_sourced_table(
    path: Path,
    table: str,
    sources: SourceRegistry,
    resolver: CountryResolver,
    refs: Mapping[str, Iterable[str]],
    quirks: QuirkLog,
    fixed: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Rows of ``path`` as the atlas table ``table`` (typed, validated); ``fixed`` sets columns the file omits.

    Problems (a missing column, an unknown country, commodity or stage, a value outside its check) name the
    file, the line and the field; the builder stops on them.
    """
    df = read_raw_csv(path, quirks)
    schema = table_schemas()[table]
    fixed = dict(fixed or {})
    wanted = [c for c in schema.column_names if c != "source_id" and c not in fixed]
    missing = [c for c in (*wanted, "source", "url", "verification") if c not in df.columns]
    if missing:
        raise ImportDataError([Problem(path.name, 1, c, "required column is missing") for c in missing])
    problems: list[Problem] = []
    records: list[list[str]] = []
    lines: list[int] = []
    dtypes = {c.column: c.dtype for c in schema.columns}
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        row: dict[str, str] = {}
        for col in schema.column_names:
            if col == "source_id":
                continue
            value = fixed[col] if col in fixed else normalise_name(rec.get(col, ""))
            if dtypes[col] == "iso3" and value:
                hit = resolver.resolve(value)
                if hit is None or hit[0] != "country":
                    problems.append(Problem(path.name, line, col, f"unknown country '{value}'"))
                    continue
                value = hit[1]
            row[col] = value
        src, url = normalise_name(rec.get("source", "")), normalise_name(rec.get("url", ""))
        if not src:
            problems.append(Problem(path.name, line, "source", "required value is blank (every row needs its source)"))
            continue
        sid = sources.register(src, url, normalise_name(rec.get("verification", "")) or "verbatim", rec.get("source_year") or None,
                               licence=normalise_name(rec.get("licence", "")))
        row["source_id"] = sid
        records.append([row.get(c, "") for c in schema.column_names])
        lines.append(line)
    if problems:
        raise ImportDataError(problems)
    frame, found = validate_table(table, schema.column_names, records, path.name, refs)
    if found:
        # validate_table numbers records from line 2; map them back to the file's lines
        fixed_lines = [Problem(p.file, lines[p.line - 2] if p.line and 2 <= p.line < len(lines) + 2 else p.line, p.field, p.message)
                       for p in found]
        raise ImportDataError(fixed_lines)
    return frame
