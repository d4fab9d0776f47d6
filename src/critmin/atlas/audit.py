"""Rows of the atlas without a source (the data audit that also ranks is :mod:`critmin.assess.audit`)."""

from __future__ import annotations

from critmin.atlas.model import Atlas
from critmin.atlas.schema import TABLE_ORDER, table_schemas


def rows_without_source(atlas: Atlas) -> dict[str, int]:
    """Rows per table whose ``source_id`` is blank or names no source."""
    known = set(atlas.sources["source_id"]) | {"user"}
    out = {}
    for name in TABLE_ORDER:
        cols = table_schemas()[name].column_names
        if "source_id" not in cols or name == "sources":
            continue
        f = atlas.tables[name]
        out[name] = int((~f["source_id"].isin(list(known))).sum())
    return out
