"""Render records and tables as a rich table, JSON, CSV or an Excel workbook (``--format``)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv", "xlsx")


def json_safe(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str):
        return v.item()
    if v is pd.NA:
        return None
    return v


def to_json(obj: Any) -> str:
    """JSON text with NaN turned into null and numpy scalars into Python numbers."""
    return json.dumps(json_safe(obj), indent=2, ensure_ascii=False)


def flatten(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Records -> flat frame; nested values (dicts, lists) become JSON strings."""
    rows = [{k: (json.dumps(json_safe(v), ensure_ascii=False) if isinstance(v, dict | list) else json_safe(v)) for k, v in r.items()} for r in records]
    return pd.DataFrame(rows)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file via a temporary file in the same folder, then rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Options of every workbook critmin writes: a text cell is text, never a live formula or link, whoever wrote
#: it (a project named ``=HYPERLINK(...)`` by one organisation must not run in another's plan.xlsx; issue 14).
XLSX_SAFE = {"options": {"strings_to_formulas": False, "strings_to_urls": False}}


def safe_excel_writer(buf: Any) -> pd.ExcelWriter:
    """A pandas ExcelWriter (xlsxwriter) that writes every string as text (:data:`XLSX_SAFE`)."""
    return pd.ExcelWriter(buf, engine="xlsxwriter", engine_kwargs=XLSX_SAFE)


def xlsx_bytes(sheets: dict[str, pd.DataFrame], meta: dict[str, Any] | None = None) -> bytes:
    """An Excel workbook with one sheet per frame (plus an 'about' sheet with provenance)."""
    buf = io.BytesIO()
    with safe_excel_writer(buf) as xl:
        for name, frame in sheets.items():
            frame.to_excel(xl, sheet_name=name[:31], index=False)
            ws = xl.sheets[name[:31]]
            for i, col in enumerate(frame.columns):
                width = min(60, max(10, len(str(col)) + 2, *(len(str(x)) + 1 for x in frame[col].head(50))))
                ws.set_column(i, i, width)
        if meta:
            pd.DataFrame({"key": list(meta), "value": [json.dumps(json_safe(v)) if isinstance(v, dict | list) else v for v in meta.values()]}).to_excel(
                xl, sheet_name="about", index=False
            )
    return buf.getvalue()


def emit(
    records: Sequence[dict[str, Any]] | dict[str, Any],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    title: str = "",
    out: Path | None = None,
    meta: dict[str, Any] | None = None,
    console: Console | None = None,
) -> None:
    """Print or save ``records`` in ``fmt``. xlsx needs ``out``; other formats go to ``out`` or stdout."""
    console = console or Console(width=max(Console().width, 160))
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; use one of {FORMATS}")
    if fmt == "json":
        text = to_json(records) + "\n"
        if out:
            write_atomic(out, text.encode())
        else:
            print(text, end="")
        return
    rec_list = [records] if isinstance(records, dict) else list(records)
    frame = flatten(rec_list)
    if fmt == "csv":
        buf = io.StringIO()
        frame.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        if out:
            write_atomic(out, buf.getvalue().encode())
        else:
            print(buf.getvalue(), end="")
        return
    if fmt == "xlsx":
        if out is None:
            raise ValueError("--format xlsx needs --out FILE.xlsx")
        write_atomic(out, xlsx_bytes({title[:31] or "data": frame}, meta))
        console.print(f"wrote {out}")
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    cols = list(columns or frame.columns)
    for i, c in enumerate(cols):
        if i == 0:  # the identifier column is never folded (ids are read and copied whole)
            width = min(max([len(_fmt(r.get(c))) for r in rec_list] + [len(c)]), 48)
            table.add_column(c, overflow="fold", min_width=width)
        else:
            table.add_column(c, overflow="fold")
    for r in rec_list:
        table.add_row(*[_fmt(r.get(c)) for c in cols])
    console.print(table)


def _fmt(v: Any) -> str:
    v = json_safe(v)
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    return str(v)
