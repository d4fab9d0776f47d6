"""Table schemas as data: one mechanism for every table critmin reads.

Every table is described, column by column, in a CSV of the same form (table, column, dtype, required, unit,
check, description), as PyPSA does with its component attribute tables:

* the atlas tables in ``critmin/atlas/schema/tables.csv``;
* the project register (``projects``, ``support``) in ``critmin/portfolio/schema/register.csv``;
* the buyers register in ``critmin/deliver/schema/buyers.csv``.

:func:`read_schemas` reads any of them. From the same rows come the atlas's validation and type conversion,
the registers' column lists (their pydantic row models are tested against them), the data dictionaries in
``docs/data.md``, ``docs/portfolio.md`` and ``docs/deliver.md`` (:func:`schema_markdown`; a test keeps them
in step) and the Excel templates (:func:`template_workbook`).

dtypes: ``str``, ``float``, ``int``, ``year``, ``bool`` (yes/no), and references ``iso3`` (to
``countries.iso3``), ``source`` (to ``sources.source_id``), ``commodity`` (to ``commodities.commodity_id``)
and ``stage`` (to the stage vocabulary ``STAGES``); ``iso3list`` is a ``;``-separated list of ``iso3`` codes.
checks: ``unique``, ``nonneg`` (>= 0), ``pct`` (0..100), ``frac`` (0..1), ``date`` (``YYYY-MM`` or
``YYYY-MM-DD``), ``month`` (``YYYY-MM``), ``year_month`` (``YYYY`` or ``YYYY-MM``), ``year_date`` (``YYYY``,
``YYYY-MM`` or ``YYYY-MM-DD``), ``id`` (letters, digits, ``_ . -``; unique), ``ref:table.column`` (a value of
another table of the same file), ``in:a,b,c`` (allowed values; an empty item allows blank). Blank values pass
every check except ``in:`` (and ``required``).
"""

from __future__ import annotations

import csv
import datetime
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from critmin.errors import Problem

#: Stage vocabulary, in chain order. ``product`` covers other manufactured products (cement, lime...);
#: ``conversion`` (U3O8 to UF6, t U) and ``enrichment`` (t SWU) are the nuclear-fuel stages after uranium mining.
STAGES: tuple[str, ...] = (
    "mine",
    "refine",
    "conversion",
    "enrichment",
    "metal",
    "magnet",
    "cathode",
    "anode",
    "cell",
    "catalyst",
    "optical",
    "semiconductor",
    "product",
)
STAGE_ORDER: dict[str, int] = {s: i for i, s in enumerate(STAGES)}

#: Order in which tables are loaded (references point to earlier tables).
TABLE_ORDER: tuple[str, ...] = (
    "sources",
    "countries",
    "country_aliases",
    "blocs",
    "commodities",
    "stages",
    "chain_links",
    "production",
    "world_total_check",
    "stage_shares",
    "us_salient",
    "us_trade",
    "import_sources",
    "consumption",
    "demand",
    "governance",
    "events",
    "event_scenarios",
    "regime_transitions",
    "node_prices",
    "export_shares",
    "market_values",
    "world_output",
    "backtest_cases",
    "price_observations",
    "output_stops",
)

_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


def parse_input_control(text: object) -> dict[str, float]:
    """An event row's ``input_control``, ``"KOR:1;JPN:0.5"`` -> ``{"KOR": 1.0, "JPN": 0.5}`` ({} when blank).

    Raises ValueError for a part that is not ``ISO3:number``; the importer names the file, row and field.
    """
    out: dict[str, float] = {}
    if not isinstance(text, str):
        return out
    for part in (p.strip() for p in text.split(";") if p.strip()):
        iso, _, share = part.partition(":")
        try:
            out[iso.strip().upper()] = float(share)
        except ValueError:
            raise ValueError(f"'{part}' is not ISO3:share") from None
    return out


def parse_date(text: str, *, month_only: bool = False) -> tuple[int, int] | None:
    """Parse ``YYYY-MM`` or ``YYYY-MM-DD`` (only ``YYYY-MM`` when ``month_only``) into (year, month).

    Returns None when the text is not a valid date of that form (month 1-12, a real calendar day).
    """
    m = _DATE.match(text)
    if m is None or (month_only and m.group(3) is not None):
        return None
    year, month = int(m.group(1)), int(m.group(2))
    try:
        datetime.date(year, month, int(m.group(3) or 1))
    except ValueError:
        return None
    return year, month


_TRUE = {"yes", "true", "1"}
_FALSE = {"no", "false", "0"}


class ColumnSpec(BaseModel):
    """One column of an atlas table."""

    model_config = ConfigDict(frozen=True)

    table: str
    column: str
    dtype: str
    required: bool
    unit: str = ""
    check: str = ""
    description: str = ""

    @property
    def name(self) -> str:
        return self.column

    @property
    def kind(self) -> str:
        """How a value is read and written: ``text``, ``float``, ``int`` or ``bool``."""
        return {"float": "float", "int": "int", "year": "int", "bool": "bool"}.get(self.dtype, "text")

    @property
    def choices(self) -> list[str]:
        """The values of an ``in:`` check (blank left out); empty for other checks."""
        return [v for v in self.check[3:].split(",") if v] if self.check.startswith("in:") else []

    @property
    def allowed(self) -> str:
        """The values the column accepts, in words, from its dtype and check (data dictionaries, templates)."""
        words = [_DTYPE_WORDS.get(self.dtype, "")]
        if self.check.startswith("in:"):
            words.append(", ".join(self.choices) + ("; or blank" if "" in self.check[3:].split(",") else ""))
        elif self.check.startswith("ref:"):
            table, _, column = self.check[4:].partition(".")
            words.append(f"a {column} of {table}")
        else:
            words.append(_CHECK_WORDS.get(self.check, self.check))
        return "; ".join(w for w in words if w)


_DTYPE_WORDS = {"bool": "yes or no", "year": "year 1900-2100", "iso3": "ISO3 code of an atlas country",
                "iso3list": "ISO3 codes of atlas countries separated by ';'", "commodity": "atlas commodity id",
                "source": "a source_id of sources", "stage": "one of " + ", ".join(STAGES)}
_CHECK_WORDS = {"unique": "unique", "nonneg": ">= 0", "pct": "0..100", "frac": "0..1", "date": "YYYY-MM or YYYY-MM-DD",
                "month": "YYYY-MM", "year_month": "YYYY or YYYY-MM", "year_date": "YYYY, YYYY-MM or YYYY-MM-DD",
                "id": "letters, digits, _ . -; unique"}
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_YEAR_MONTH = re.compile(r"^\d{4}(-\d{2})?$")
_YEAR_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[ColumnSpec, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.column for c in self.columns]


@cache
def read_schemas(package: str, resource: str) -> dict[str, TableSchema]:
    """Read a schema CSV (``resource`` inside ``package``) into one :class:`TableSchema` per table, in file order."""
    text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    specs: dict[str, list[ColumnSpec]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        spec = ColumnSpec(
            table=row["table"],
            column=row["column"],
            dtype=row["dtype"],
            required=row["required"] == "yes",
            unit=row["unit"],
            check=row["check"],
            description=row["description"],
        )
        specs.setdefault(spec.table, []).append(spec)
    return {name: TableSchema(name, tuple(cols)) for name, cols in specs.items()}


def table_schemas() -> dict[str, TableSchema]:
    """The atlas tables' schemas (``critmin/atlas/schema/tables.csv``)."""
    return read_schemas("critmin.atlas", "schema/tables.csv")


def schema_markdown(schemas: Mapping[str, TableSchema], rows: Mapping[str, int] | None = None) -> str:
    """The data dictionary of ``schemas`` in Markdown: one section per table, one row per column (type,
    required, unit, allowed values, description); ``rows`` adds each table's row count."""
    out = []
    for name, t in schemas.items():
        out.append(f"### `{name}`\n")
        if rows is not None and name in rows:
            out.append(f"{rows[name]} rows in the bundled data.\n")
        out.append("| column | type | required | unit | allowed | description |")
        out.append("|---|---|---|---|---|---|")
        for c in t.columns:
            cells = [f"`{c.column}`", c.dtype, "yes" if c.required else "no", c.unit, c.allowed, c.description]
            out.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
        out.append("")
    return "\n".join(out)


def template_workbook(schemas: Mapping[str, TableSchema], frames: Mapping[str, pd.DataFrame],
                      readme_extra: list[dict[str, str]] | None = None) -> bytes:
    """An Excel workbook to fill in, from the schemas: one sheet per table (bold, frozen header, the rows of
    ``frames``, drop-down lists for ``in:`` and yes/no columns, text starting with '=' kept as text) and a
    ``README`` sheet with the data dictionary (plus ``readme_extra`` rows, e.g. a vocabulary)."""
    import openpyxl
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, t in schemas.items():
        ws = wb.create_sheet(name)
        frame = frames.get(name, pd.DataFrame(columns=t.column_names))
        ws.append(t.column_names)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for rec in frame.to_dict("records"):
            ws.append([_xlsx_value(rec.get(c.column), c) for c in t.columns])
        for r in ws.iter_rows(min_row=2):  # text that starts with '=' must stay text, not become a formula
            for cell in r:
                if cell.data_type == "f":
                    cell.data_type = "s"
        last = max(ws.max_row, 1) + 500
        for i, c in enumerate(t.columns, start=1):
            letter = get_column_letter(i)
            values = frame[c.column].head(50) if c.column in frame.columns and len(frame) else []
            ws.column_dimensions[letter].width = min(50, max(10, len(c.column) + 2, *(len(str(x)) + 1 for x in values)))
            choices = "yes,no" if c.dtype == "bool" else ",".join(c.choices)
            if choices:
                dv = DataValidation(type="list", formula1=f'"{choices}"', allow_blank=not c.required)
                dv.error = f"{c.column} must be one of: {choices}"
                dv.errorTitle = f"invalid {c.column}"
                dv.add(f"{letter}2:{letter}{last}")
                ws.add_data_validation(dv)
        ws.freeze_panes = "B2"
    ws = wb.create_sheet("README")
    head = ["sheet", "column", "required", "type", "unit", "allowed", "description"]
    ws.append(head)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for name, t in schemas.items():
        for c in t.columns:
            ws.append([name, c.column, "yes" if c.required else "no", c.kind, c.unit, c.allowed, c.description])
    for extra in readme_extra or []:
        ws.append([str(extra.get(h, "")) for h in head])
    for i, width in enumerate((12, 24, 10, 8, 22, 60, 100), start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _xlsx_value(v: object, c: ColumnSpec) -> object:
    if c.kind == "bool":
        return "yes" if bool(v) else "no"
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
        return None
    if c.kind == "float":
        return float(v)  # type: ignore[arg-type]
    if c.kind == "int":
        return int(v)  # type: ignore[call-overload]
    return str(v)


def read_csv_strict(text: str, file: str) -> tuple[list[str], list[list[str]], list[Problem]]:
    """Parse CSV text; every record must have as many fields as the header (a truncated file fails here).

    Returns (header, records, problems); line numbers in problems are 1-based file lines.
    """
    problems: list[Problem] = []
    if not text.strip():
        return [], [], [Problem(file, None, None, "file is empty")]
    if not text.endswith("\n"):
        problems.append(Problem(file, None, None, "file does not end with a newline: it looks truncated"))
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except csv.Error as exc:  # pragma: no cover - csv rarely fails on a header
        return [], [], [Problem(file, 1, None, f"unreadable header: {exc}")]
    header = [h.strip().lstrip("\ufeff") for h in header]
    records: list[list[str]] = []
    try:
        for rec in reader:
            line = reader.line_num
            if not rec:
                continue
            if len(rec) != len(header):
                problems.append(
                    Problem(file, line, None, f"expected {len(header)} fields, found {len(rec)} (truncated or malformed row)")
                )
                continue
            records.append(rec)
    except csv.Error as exc:
        problems.append(Problem(file, reader.line_num, None, f"CSV syntax error: {exc}"))
    return header, records, problems


def validate_table(
    name: str,
    header: list[str],
    records: list[list[str]],
    file: str,
    refs: Mapping[str, Iterable[str]],
) -> tuple[pd.DataFrame, list[Problem]]:
    """Check one table against its schema and convert it to typed columns.

    ``refs`` maps a reference dtype (``iso3``, ``source``, ``commodity``, ``stage``) to the allowed values.
    Returns the typed frame and the problems found (an empty list when the table is valid).
    """
    schema = table_schemas()[name]
    problems: list[Problem] = []
    missing = [c for c in schema.column_names if c not in header]
    if missing:
        return pd.DataFrame(), [Problem(file, 1, c, "required column is missing") for c in missing]
    raw = pd.DataFrame(records, columns=header, dtype=object) if records else pd.DataFrame(columns=header, dtype=object)
    # line number of each record; blank records were skipped by the reader, so count them from the data
    lines = np.arange(len(raw)) + 2
    out: dict[str, pd.Series] = {}
    for spec in schema.columns:
        col = raw[spec.column].astype(str).str.strip()
        blank = col == ""

        def report(mask: np.ndarray | pd.Series, message: str, spec: ColumnSpec = spec, col: pd.Series = col) -> None:
            idx = np.flatnonzero(np.asarray(mask))
            for i in idx[:50]:
                problems.append(Problem(file, int(lines[i]), spec.column, message.format(value=col.iloc[i])))

        if spec.required:
            report(blank, "required value is blank")
        if spec.dtype in ("float", "int", "year"):
            num = pd.to_numeric(col.where(~blank), errors="coerce")
            report(~blank & num.isna(), "'{value}' is not a number")
            if spec.dtype in ("int", "year"):
                report(~num.isna() & (num != np.round(num)), "'{value}' is not a whole number")
            if spec.dtype == "year":
                report(~num.isna() & ((num < 1900) | (num > 2100)), "year {value} out of range 1900-2100")
            if spec.check == "nonneg":
                report(num < 0, "negative value {value}")
            elif spec.check == "pct":
                report((num < 0) | (num > 100), "share {value} is outside 0-100 %")
            elif spec.check == "frac":
                report((num < 0) | (num > 1), "fraction {value} is outside 0-1")
            if spec.dtype == "float":
                out[spec.column] = num.astype("float64")
            else:
                out[spec.column] = num.astype("Int64")
        elif spec.dtype == "bool":
            low = col.str.lower()
            bad = ~blank & ~low.isin(_TRUE | _FALSE)
            report(bad, "'{value}' is not yes/no")
            out[spec.column] = low.isin(_TRUE)
        elif spec.dtype == "iso3list":
            known = set(refs.get("iso3", ()))
            bad_list = col.map(lambda v, known=known: bool(v) and any(c.strip() not in known for c in v.split(";")))
            report(bad_list, "unknown iso3 in '{value}'")
            out[spec.column] = col
        else:
            if spec.dtype in refs:
                allowed = set(refs[spec.dtype])
                report(~blank & ~col.isin(allowed), f"unknown {spec.dtype} '{{value}}'")
            out[spec.column] = col
        if spec.check in ("date", "month"):
            month_only = spec.check == "month"
            bad_date = col.map(lambda v, m=month_only: bool(v) and parse_date(v, month_only=m) is None)
            form = "YYYY-MM" if month_only else "YYYY-MM or YYYY-MM-DD"
            report(bad_date, f"'{{value}}' is not a date of the form {form}")
        if spec.check in ("year_month", "year_date"):
            rx = _YEAR_MONTH if spec.check == "year_month" else _YEAR_DATE
            bad_form = col.map(lambda v, rx=rx: bool(v) and (not rx.match(v) or (len(v) > 4 and parse_date(v) is None)))
            report(bad_form, f"'{{value}}' is not of the form {_CHECK_WORDS[spec.check]}")
        if spec.check.startswith("in:"):
            allowed_values = spec.check[3:].split(",")
            report(~col.isin(allowed_values), f"'{{value}}' is not one of {allowed_values}")
        if spec.check == "id":
            report(~blank & ~col.map(lambda v: bool(_ID.match(v))), "'{value}' is not an id (letters, digits, _ . -)")
        if spec.check in ("unique", "id"):
            report(col.duplicated(keep="first") & ~blank, "duplicate value '{value}'")
    frame = pd.DataFrame(out, index=pd.RangeIndex(len(raw)))
    return frame, problems


def format_csv(frame: pd.DataFrame, name: str) -> str:
    """Serialise a table deterministically in schema column order (LF, minimal quoting, repr-exact floats)."""
    schema = table_schemas()[name]
    cols = schema.column_names
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    dtypes = {c.column: c.dtype for c in schema.columns}
    for rec in frame[cols].itertuples(index=False, name=None):
        writer.writerow([_cell(v, dtypes[c]) for v, c in zip(rec, cols, strict=True)])
    return buf.getvalue()


def _cell(value: object, dtype: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if dtype == "bool":
        return "yes" if bool(value) else "no"
    if dtype in ("int", "year"):
        return str(int(value))  # type: ignore[call-overload]
    if dtype == "float":
        f = float(value)  # type: ignore[arg-type]
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)
    return str(value)
