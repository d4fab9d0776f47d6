"""The project register (issue 4, section 1): projects of interest and the government support they received.

A register is two tables, ``projects`` (one row per project, :class:`Project`) and ``support`` (one row per
support action, :class:`SupportAction`), kept as ``projects.csv`` and ``support.csv`` in a directory or as the
sheets ``projects`` and ``support`` of an Excel workbook. Reading validates every row and collects every
problem before failing: :class:`RegisterError` names the file, the line (or sheet and cell) and the field of
each one, and a register with any problem is never returned, imported or written.

Each project supplies one atlas stage node ``(commodity_id, stage)``; ``capacity_t`` is on the basis of the
atlas production data of that node (:data:`NODE_BASIS`). Blank means that no source gives the value: a model
that needs it must use a documented default and show it as an assumption.

Support rows carry ``counts``: whether the amount may be added to totals (:func:`default_counts` documents the
rule). :func:`support_summary` sums the counted USD per project and instrument.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import (
    ValidationError,
)

from critmin.errors import Problem

if TYPE_CHECKING:
    from critmin.atlas.model import Atlas

from critmin.portfolio.register_schema import (
    _ID,
    _MODELS,
    TABLES,
    Refs,
    RegisterError,
    RegisterProblem,
    _Loc,
    _Rows,
    _Valid,
)

# ------------------------------------------------------------------------------------------------ reading


def _header_problems(kind: str, header: Sequence[str], file: str, where: _Loc) -> list[Problem]:
    cols = TABLES[kind]
    names = {c.name for c in cols}
    problems: list[Problem] = []
    for c in cols:
        # an optional column may be left out (a register written before the column existed): its values are blank
        if c.name not in header and c.required:
            problems.append(where.problem(c.name, f"column '{c.name}' is missing from the {kind} table"))
    for h in header:
        if h not in names:
            problems.append(where.problem(None, f"unknown column '{h}' in the {kind} table; expected: {', '.join(c.name for c in cols)}"))
    seen: set[str] = set()
    for h in header:
        if h in seen:
            problems.append(where.problem(h, f"column '{h}' appears twice"))
        seen.add(h)
    return problems


def _kind_of(header: Sequence[str]) -> str | None:
    if "support_id" in header:
        return "support"
    if "project_id" in header and "name" in header:
        return "projects"
    return None


#: Malformed rows of one CSV reported before reading stops (the file is refused either way).
MAX_ROW_PROBLEMS = 200


def _read_csv(path: Path, kind: str | None = None) -> tuple[str | None, _Rows, list[Problem]]:
    """Rows of a register CSV (projects or support, detected from the header unless ``kind`` is given)."""
    from critmin.workbooks import WorkbookTooLarge, check_csv

    file = path.name
    try:
        data = path.read_bytes()
        check_csv(data, file)  # bounded before any row is parsed
        text = data.decode("utf-8-sig")
    except WorkbookTooLarge as exc:
        return kind, [], [RegisterProblem(file, None, None, f"too large: {exc}")]
    except OSError as exc:
        return kind, [], [RegisterProblem(file, None, None, f"cannot read the file: {exc.strerror or exc}")]
    except UnicodeDecodeError as exc:
        return kind, [], [RegisterProblem(file, None, None, f"not UTF-8 text: {exc}")]
    if not text.strip():
        return kind, [], [RegisterProblem(file, None, None, "file is empty")]
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text))
    rows: _Rows = []
    try:
        header = [h.strip() for h in next(reader)]
        kind = kind or _kind_of(header)
        if kind is None:
            return None, [], [RegisterProblem(file, 1, None, "not a register table: the header has neither support_id nor project_id and name")]
        problems += _header_problems(kind, header, file, _Loc(file, 1))
        last = reader.line_num
        for rec in reader:
            start, last = last + 1, reader.line_num
            if not rec or all(not x.strip() for x in rec):
                continue
            if len(rec) != len(header):
                problems.append(RegisterProblem(file, start, None, f"expected {len(header)} fields, found {len(rec)} (truncated or malformed row)"))
                if len(problems) >= MAX_ROW_PROBLEMS:
                    problems.append(RegisterProblem(file, start, None, f"reading stopped after {MAX_ROW_PROBLEMS} malformed rows"))
                    break
                continue
            rows.append((_Loc(file, start), dict(zip(header, rec, strict=True))))
    except csv.Error as exc:
        problems.append(RegisterProblem(file, reader.line_num, None, f"CSV syntax error: {exc}"))
    return kind, rows, problems


def _cell_value(v: Any) -> Any:
    if isinstance(v, datetime.datetime):
        return v.date().isoformat() if v.time() == datetime.time() else v.isoformat()
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)
    return v


def _read_xlsx(path: Path) -> tuple[dict[str, _Rows], list[Problem]]:
    """Rows of the ``projects`` and ``support`` sheets of a workbook (a missing support sheet means no rows)."""
    from openpyxl.utils import get_column_letter

    from critmin.workbooks import WorkbookTooLarge, read_sheets

    file = path.name
    try:
        sheets = read_sheets(path)  # bounded: size and extent checked before parsing, rows streamed
    except WorkbookTooLarge as exc:
        return {}, [RegisterProblem(file, None, None, f"too large: {exc}")]
    except Exception as exc:  # openpyxl raises many kinds of errors on a broken file
        return {}, [RegisterProblem(file, None, None, f"not a readable .xlsx workbook: {exc}")]
    out: dict[str, _Rows] = {}
    problems: list[Problem] = []
    for kind in TABLES:
        if kind not in sheets:
            if kind == "projects":
                problems.append(RegisterProblem(file, None, None, f"sheet '{kind}' is missing (sheets: {', '.join(sheets)})"))
            continue
        values = sheets[kind]
        if not values:
            problems.append(RegisterProblem(file, None, None, "sheet is empty", sheet=kind))
            continue
        header = [str(h).strip() if h is not None else "" for h in values[0]]
        while header and header[-1] == "":
            header.pop()
        letters = {h: get_column_letter(i + 1) for i, h in enumerate(header) if h}
        problems += _header_problems(kind, [h for h in header if h], file, _Loc(file, 1, kind, letters))
        rows: _Rows = []
        for r, rec in enumerate(values[1:], start=2):
            cells = list(rec[: len(header)])
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            d = {h: _cell_value(c) for h, c in zip(header, cells + [None] * (len(header) - len(cells)), strict=True) if h}
            rows.append((_Loc(file, r, kind, letters), d))
        out[kind] = rows
    return out, problems


def _validate_rows(kind: str, rows: _Rows, refs: Refs | None) -> tuple[_Valid, list[Problem]]:
    """Validate every row with the pydantic model of ``kind``; blank cells take the field's default."""
    model = _MODELS[kind]
    fields = set(model.model_fields)
    valid: _Valid = []
    problems: list[Problem] = []
    for loc, raw in rows:
        data = {k: v for k, v in raw.items() if k in fields and v is not None and not (isinstance(v, str) and not v.strip())}
        try:
            valid.append((loc, model.model_validate(data, context={"refs": refs})))
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                field = str(e["loc"][0]) if e["loc"] else None
                problems.append(loc.problem(field, error_message(e)))
    return valid, problems


def error_message(e: Any) -> str:
    if e["type"] == "missing":
        return "required value is blank"
    msg = str(e["msg"])
    msg = msg.removeprefix("Value error, ")
    value = e.get("input")
    if e["type"] != "value_error" and isinstance(value, str | int | float):
        msg += f" (got '{value}')"
    return msg


def _cross_check(projects: _Valid, support: _Valid, known_projects: Iterable[str] = ()) -> list[Problem]:
    """Duplicate ids and support rows naming no project of the register."""
    problems: list[Problem] = []
    for kind, rows in (("projects", projects), ("support", support)):
        key = _ID[kind]
        first: dict[str, _Loc] = {}
        for loc, m in rows:
            ident = getattr(m, key)
            if ident in first:
                problems.append(loc.problem(key, f"duplicate {key} '{ident}' (first at {first[ident].where()})"))
            else:
                first[ident] = loc
    ids = {m.project_id for _, m in projects} | set(known_projects)
    for loc, m in support:
        if m.project_id not in ids:
            problems.append(loc.problem("project_id", f"unknown project_id '{m.project_id}': no such project in the register"))
    return problems


# ------------------------------------------------------------------------------------------------ register


@dataclass(frozen=True)
class Register:
    """A validated register: ``projects`` and ``support`` frames with the columns of :data:`PROJECT_COLUMNS` and
    :data:`SUPPORT_COLUMNS` (text blank as '', numbers blank as NaN or <NA>, ``counts`` boolean), sorted by id."""

    projects: pd.DataFrame
    support: pd.DataFrame

    def project(self, project_id: str) -> dict[str, Any]:
        """One project as a record; :class:`RegisterError` when there is no such project."""
        rows = self.projects[self.projects["project_id"] == project_id]
        if rows.empty:
            raise RegisterError(f"no project '{project_id}' in the register")
        return dict(rows.iloc[0].to_dict())

    def support_for(self, project_id: str) -> pd.DataFrame:
        """The support actions of one project."""
        return self.support[self.support["project_id"] == project_id].reset_index(drop=True)


def models_frame(kind: str, rows: Iterable[Any]) -> pd.DataFrame:
    cols = TABLES[kind]
    records = []
    for m in rows:
        d = m.model_dump()
        if kind == "support":
            d["counts"] = m.counted
        records.append(d)
    records.sort(key=lambda d: d[_ID[kind]])
    data: dict[str, Any] = {}
    for c in cols:
        vals = [r[c.name] for r in records]
        if c.kind == "float":
            data[c.name] = pd.Series([math.nan if v is None else float(v) for v in vals], dtype="float64")
        elif c.kind == "int":
            data[c.name] = pd.Series(vals, dtype="Int64")
        elif c.kind == "bool":
            data[c.name] = pd.Series([bool(v) for v in vals], dtype="bool")
        else:
            data[c.name] = pd.Series(["" if v is None else str(v) for v in vals], dtype=object)
    return pd.DataFrame(data, columns=[c.name for c in cols])


def _blank(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def _atlas_refs(atlas: Atlas | None) -> Refs:
    if atlas is None:
        from critmin.atlas import load_atlas

        atlas = load_atlas()
    return Refs.of(atlas)


def _read_source(path: Path) -> tuple[dict[str, _Rows], list[Problem]]:
    """Raw rows of a register source: a directory (projects.csv, support.csv), a .csv table or an .xlsx workbook."""
    if path.is_dir():
        tables: dict[str, _Rows] = {}
        problems: list[Problem] = []
        for kind in TABLES:
            f = path / f"{kind}.csv"
            if not f.exists():
                if kind == "projects":
                    problems.append(RegisterProblem(f.name, None, None, "file is missing from the register directory"))
                continue
            _, rows, p = _read_csv(f, kind)
            tables[kind], problems = rows, problems + p
        return tables, problems
    if not path.exists():
        return {}, [RegisterProblem(path.name, None, None, "file not found")]
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _read_xlsx(path)
    if suffix == ".csv":
        found, rows, p = _read_csv(path)
        return ({found: rows} if found else {}), p
    return {}, [RegisterProblem(path.name, None, None, "unsupported file type: use a register directory, a .csv or an .xlsx file")]


def _validate(tables: Mapping[str, _Rows], refs: Refs, known_projects: Iterable[str] = ()) -> tuple[_Valid, _Valid, list[Problem]]:
    projects, p1 = _validate_rows("projects", list(tables.get("projects", [])), refs)
    support, p2 = _validate_rows("support", list(tables.get("support", [])), refs)
    problems = p1 + p2
    # cross-table checks on the rows that passed; ids of rows that failed still count as known projects
    failed_ids = {str(r.get("project_id", "")).strip() for _, r in tables.get("projects", [])}
    problems += _cross_check(projects, support, set(known_projects) | failed_ids)
    return projects, support, problems


def read_register(projects_path: str | Path, support_path: str | Path | None = None, atlas: Atlas | None = None) -> Register:
    """Read and validate a register.

    ``projects_path`` is a register directory (``projects.csv`` and optional ``support.csv``), a projects CSV or
    an ``.xlsx`` workbook (sheets ``projects`` and ``support``). ``support_path`` names a support CSV; without
    it a projects CSV has no support rows. Every row is checked against the atlas (default: the bundled one);
    any problem raises :class:`RegisterError` listing all of them.
    """
    path = Path(projects_path)
    tables, problems = _read_source(path)
    if not problems and "projects" not in tables:
        raise RegisterError(RegisterProblem(path.name, 1, None, "no projects table here (a support table alone is not a register; pass the projects first)"))
    if support_path is not None:
        kind, rows, p = _read_csv(Path(support_path), "support")
        tables = {**tables, "support": rows}
        problems += p
    refs = _atlas_refs(atlas)
    projects, support, p = _validate(tables, refs)
    problems += p
    if problems:
        raise RegisterError(problems)
    return Register(models_frame("projects", (m for _, m in projects)), models_frame("support", (m for _, m in support)))


def bundled_register_path() -> Path:
    """Directory of the register shipped inside the package."""
    return Path(str(resources.files("critmin.portfolio").joinpath("data")))


def bundled_register(atlas: Atlas | None = None) -> Register:
    """The bundled example pipeline: real announced projects and support actions (see data/REGISTER.md)."""
    return read_register(bundled_register_path(), atlas=atlas)


def check_file(path: str | Path, atlas: Atlas | None = None, against: Register | None = None) -> Register:
    """Validate any register source (directory, .csv of projects or support, .xlsx) and return its content.

    A support-only CSV is checked against the projects of ``against`` (default: the bundled register).
    """
    p = Path(path)
    tables, problems = _read_source(p)
    known: set[str] = set()
    if "support" in tables and "projects" not in tables:
        base = against if against is not None else bundled_register(atlas)
        known = set(base.projects["project_id"])
    projects, support, p2 = _validate(tables, _atlas_refs(atlas), known)
    problems += p2
    if problems:
        raise RegisterError(problems)
    return Register(models_frame("projects", (m for _, m in projects)), models_frame("support", (m for _, m in support)))


# ------------------------------------------------------------------------------------------------ summaries


def support_summary(register: Register) -> pd.DataFrame:
    """Counted support per project and instrument: ``counted_usd`` (sum of ``amount_usd`` of counted rows),
    ``actions`` (counted rows) and ``actions_without_usd`` (counted rows with no USD amount)."""
    s = register.support[register.support["counts"]]
    if s.empty:
        return pd.DataFrame(columns=["project_id", "instrument", "counted_usd", "actions", "actions_without_usd"])
    g = s.groupby(["project_id", "instrument"], sort=True)
    out = pd.DataFrame(
        {
            "counted_usd": g["amount_usd"].sum(min_count=0),
            "actions": g.size(),
            "actions_without_usd": g["amount_usd"].apply(lambda x: int(x.isna().sum())),
        }
    ).reset_index()
    out["counted_usd"] = out["counted_usd"].astype(float)
    out["actions"] = out["actions"].astype(int)
    out["actions_without_usd"] = out["actions_without_usd"].astype(int)
    return out


def counted_support_usd(register: Register) -> dict[str, float]:
    """Counted support in USD per project (0.0 for a project without counted amounts)."""
    total = {pid: 0.0 for pid in register.projects["project_id"]}
    for rec in support_summary(register).to_dict("records"):
        total[rec["project_id"]] = total.get(rec["project_id"], 0.0) + float(rec["counted_usd"])
    return total

