"""Bounded readers for every tabular input (registers, buyers, study files; CLI and web alike). Excel: the
workbook's size and its sheets' extent are checked from the zip before anything is parsed, then rows are
streamed within the limits (a 50 KB workbook with one cell at XFD1048576 made openpyxl materialise the
grid: 8 GB; issue 14). CSV: the lines and the header's fields are counted before anything is parsed (a 3 MB
file of 1.5 million one-letter rows took 5 s and 400 MB to refuse row by row; issue 14)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from openpyxl.utils import column_index_from_string

#: Limits of an input workbook: rows and columns per sheet, uncompressed size of the whole file.
MAX_ROWS = 100_000
MAX_COLS = 200
MAX_UNCOMPRESSED = 100 * 2**20

_DIM = re.compile(rb'<(?:\w+:)?dimension[^>]*\bref="([A-Z]+)?(\d+)?(?::([A-Z]+)(\d+))?"')
_CELL_REF = re.compile(rb'<(?:\w+:)?c\b[^>]*\br="([A-Z]{1,3})(\d+)"')


class WorkbookTooLarge(ValueError):
    """The workbook exceeds the input limits (the message says which)."""


def check_workbook(source: str | Path | bytes, max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS) -> None:
    """Refuse, in well under a second, a workbook whose uncompressed size or any sheet's extent (its
    ``dimension`` and the cell references it holds) is beyond the limits; ValueError for a broken file."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a readable .xlsx workbook: {exc}") from exc
    total = sum(i.file_size for i in z.infolist())
    if total > MAX_UNCOMPRESSED:
        raise WorkbookTooLarge(f"the workbook unpacks to {total / 2**20:,.0f} MiB (limit {MAX_UNCOMPRESSED // 2**20} MiB)")
    for info in z.infolist():
        if not (info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")):
            continue
        with z.open(info) as fh:
            head = fh.read(4096)
            m = _DIM.search(head)
            if m and m.group(3):
                _limit(info.filename, m.group(3).decode(), int(m.group(4)), max_rows, max_cols)
            # the dimension may be absent or false: the cell references themselves, scanned in chunks
            tail = b""
            chunk = head
            while chunk:
                buf = tail + chunk
                for ref in _CELL_REF.finditer(buf):
                    _limit(info.filename, ref.group(1).decode(), int(ref.group(2)), max_rows, max_cols)
                tail = buf[-64:]
                chunk = fh.read(1 << 20)


def check_csv(data: bytes, name: str = "the file", max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS) -> None:
    """Refuse at once (:class:`WorkbookTooLarge`) a CSV with more than ``max_rows`` lines after its header or
    a header of more than ``max_cols`` fields: counted on the bytes (milliseconds for the largest upload),
    before any row is parsed. Lines, not records: a quoted field may span lines, which only counts earlier."""
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if lines - 1 > max_rows:
        raise WorkbookTooLarge(f"{name}: {lines - 1:,} lines after the header (limit {max_rows:,} rows)")
    header = data[: data.find(b"\n")] if b"\n" in data else data
    if header.count(b",") + 1 > max_cols:
        raise WorkbookTooLarge(f"{name}: {header.count(b',') + 1:,} columns in the header (limit {max_cols})")


def _limit(sheet: str, col: str, row: int, max_rows: int, max_cols: int) -> None:
    if row > max_rows + 1:
        raise WorkbookTooLarge(f"{sheet}: a cell in row {row:,} (limit {max_rows:,} rows)")
    if column_index_from_string(col) > max_cols:
        raise WorkbookTooLarge(f"{sheet}: a cell in column {col} (limit {max_cols} columns)")


def read_sheets(source: str | Path | bytes, max_rows: int = MAX_ROWS, max_cols: int = MAX_COLS) -> dict[str, list[tuple[Any, ...]]]:
    """Every sheet's rows as tuples of values, after :func:`check_workbook`, streamed (read-only) within the
    limits."""
    import warnings

    import openpyxl

    check_workbook(source, max_rows, max_cols)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl warns about workbook features it drops (styles, extensions)
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        return {name: list(wb[name].iter_rows(values_only=True, max_row=max_rows + 1, max_col=max_cols)) for name in wb.sheetnames}
    finally:
        wb.close()
