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
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from critmin.atlas.schema import STAGES, parse_date
from critmin.errors import CritminError, Problem
from critmin.inputs import CheckedRow
from critmin.output import write_atomic

if TYPE_CHECKING:
    from critmin.atlas.model import Atlas

# ------------------------------------------------------------------------------------------------ vocabulary

ID_PATTERN = r"^[A-Za-z0-9_.-]+$"

StatusClass = Literal[
    "operating", "commissioning", "construction", "financing", "permitted", "feasibility", "exploration", "paused", "unlikely"
]
#: Project status classes, from most to least advanced, with the meaning used when mapping raw status text.
STATUS_CLASSES: dict[str, str] = {
    "operating": "producing commercially (including campaign-based or ramping-up operation)",
    "commissioning": "built; trial, pilot or first commercial output, ramping to nameplate",
    "construction": "under construction (investment decision taken), including fit-out before first commercial output",
    "financing": "planned with finance being arranged or government finance announced or conditionally approved; construction not reported",
    "permitted": "main permits granted (e.g. record of decision); construction not started",
    "feasibility": "studies (scoping, PEA, pre-feasibility, feasibility), R&D or demonstration, or 'development' without permits, finance or construction",
    "exploration": "resource definition and exploration",
    "paused": "construction or production suspended",
    "unlikely": "the sponsor says the project is unlikely to proceed, or it was cancelled",
}

Instrument = Literal["grant", "loan", "loan_guarantee", "equity", "offtake", "price_floor", "insurance", "regulatory", "tax_credit"]
INSTRUMENTS: dict[str, str] = {
    "grant": "non-repayable money: grants, DPA Title III technology investment agreements, construction contracts, state/local incentives",
    "loan": "direct loans (incl. letters of interest, which are not counted)",
    "loan_guarantee": "guarantee of a commercial loan",
    "equity": "equity, preferred stock, warrants, equity options",
    "offtake": "government purchase commitment or stockpile contract",
    "price_floor": "guaranteed minimum price",
    "insurance": "political-risk or other insurance",
    "regulatory": "regulatory facilitation (permitting priority, FAST-41, ...)",
    "tax_credit": "tax credit (e.g. 48C)",
}

#: Commitment statuses whose amounts are never added to totals: non-binding letters, superseded, proposed,
#: preliminary, option and in-principle commitments. ``letter_of_intent`` is a non-binding letter like
#: ``letter_of_interest`` (``binding_LOI`` is binding and counts).
NOT_COUNTED_STATUSES: tuple[str, ...] = (
    "letter_of_interest", "letter_of_intent", "superseded", "proposed", "preliminary", "option", "in_principle"
)

#: Quantity basis of ``capacity_t`` per commodity: the basis of the atlas production data of the node.
NODE_BASIS: dict[str, str] = {
    "rare_earths": "t REO (rare-earth oxide equivalent)",
    "lithium": "t Li (contained lithium)",
    "cobalt": "t Co (contained metal)",
    "nickel": "t Ni (contained metal)",
    "antimony": "t Sb (contained metal)",
    "gallium": "t Ga (contained metal)",
    "germanium": "t Ge (contained metal)",
    "indium": "t In (contained metal)",
    "copper": "t Cu (contained metal)",
    "manganese": "t Mn (contained metal)",
    "tungsten": "t W (contained metal)",
    "palladium": "t Pd (contained metal)",
    "platinum": "t Pt (contained metal)",
    "magnesium": "t Mg metal (metal stage)",
    "ndfeb_magnets": "t magnets",
    "graphite": "t graphite (natural graphite, gross weight)",
    "battery_anode": "t active anode material",
    "battery_cathode": "t cathode active material",
}


def node_basis(commodity_id: str) -> str:
    """The unit of ``capacity_t`` for a commodity (contained metal when the commodity is not listed)."""
    return NODE_BASIS.get(commodity_id, "t contained element (the atlas basis of the commodity)")


def default_counts(commitment_status: str) -> bool:
    """Whether a support amount may be added to totals, from its commitment status alone.

    The rule: an action counts unless its raw row was flagged ``exclude_from_sum`` (superseded amounts,
    package totals overlapping their components, unresolved commitments; applied when the bundled register is
    built) or its status is one of :data:`NOT_COUNTED_STATUSES`. Conditional commitments and 2022 DOE
    selections count (they are recorded as such in ``commitment_status``).
    """
    return commitment_status.strip() not in NOT_COUNTED_STATUSES


# ------------------------------------------------------------------------------------------------ columns


@dataclass(frozen=True)
class ColumnDoc:
    """One register column: name, kind (text, float, int, bool), whether required, unit, allowed values."""

    name: str
    kind: str
    required: bool
    unit: str
    allowed: str
    description: str


_P = ColumnDoc
PROJECT_COLUMNS: tuple[ColumnDoc, ...] = (
    _P("project_id", "text", True, "", "letters, digits, _ . -; unique", "Project identifier"),
    _P("name", "text", True, "", "", "Project name"),
    _P("sponsor", "text", True, "", "", "Sponsor(s) and owners as published"),
    _P("country_iso3", "text", True, "", "ISO3 code of an atlas country", "Country where the project is located"),
    _P("commodity_id", "text", True, "", "atlas commodity id", "Commodity of the node the project supplies"),
    _P("stage", "text", True, "", ", ".join(STAGES) + "; (commodity_id, stage) must be an atlas stage node",
       "Stage of the node the project supplies: the most downstream output it produces at scale (see note)"),
    _P("product", "text", False, "", "", "Product(s) as published"),
    _P("capacity_t", "float", False, "t/yr on the node basis", ">= 0",
       "Capacity per year on the atlas basis of the node (REO, contained Li/Co/Ni/Sb/Ga, t magnets, t graphite, t anode material); blank when the published unit cannot be converted"),
    _P("capacity_raw", "text", False, "", "", "Capacity value and unit as published [basis]"),
    _P("capacity_conversion", "text", False, "", "", "Arithmetic from capacity_raw to capacity_t (stoichiometric or exact unit factors only)"),
    _P("ramp_up_months", "int", False, "months", ">= 0", "Months from first output to nameplate"),
    _P("capex_usd", "float", False, "USD", ">= 0", "Capital cost in USD: printed by a source, or a local-currency figure converted at the IMF rate (said in capex_note)"),
    _P("capex_note", "text", False, "", "", "Capex as published (currency, range, basis, lower bounds)"),
    _P("opex_usd_per_t", "float", False, "USD/t", ">= 0", "Operating cost per t of capacity basis (only when published)"),
    _P("unit_cost_usd_per_t", "float", False, "USD/t", ">= 0", "All-in unit cost per t (only when published)"),
    _P("status_class", "text", True, "", ", ".join(STATUS_CLASSES), "Normalised status (see REGISTER.md for definitions)"),
    _P("status", "text", False, "", "", "Status as published (as of date)"),
    _P("first_output", "text", False, "", "YYYY or YYYY-MM", "First (commercial) output, actual or targeted"),
    _P("completion_probability", "float", False, "fraction", "0..1", "Probability that the project is completed"),
    _P("delay_months", "float", False, "months", ">= 0", "Expected delay of first output"),
    _P("feoc", "text", False, "", "yes, no or blank",
       "Owned or controlled by an entity of a country of concern (blank unless a source says)"),
    _P("esg_flags", "text", False, "", "", "Environmental, social and governance issues reported"),
    _P("offtakes", "text", False, "", "", "Existing offtake agreements"),
    _P("frameworks", "text", False, "", "", "Government frameworks naming the project"),
    _P("japan_link", "text", False, "", "", "Japanese involvement (JOGMEC, Sojitz, ...)"),
    _P("sources", "text", True, "", "URLs separated by '; '", "Sources of the row"),
    _P("source_tiers", "text", False, "", "primary, press, database, republication, low-tier; one per source", "Tier of each source"),
    _P("verification", "text", False, "", "verbatim, third-party, mixed", "How the figures were verified"),
    _P("note", "text", False, "", "", "Curation decisions (node, status class, capacity) and notes from the sources"),
)
SUPPORT_COLUMNS: tuple[ColumnDoc, ...] = (
    _P("support_id", "text", True, "", "letters, digits, _ . -; unique", "Support action identifier"),
    _P("project_id", "text", True, "", "a project_id of the register", "Project supported"),
    _P("agency", "text", True, "", "", "Agency granting the support"),
    _P("participant_iso3", "text", True, "", "ISO3 codes of atlas countries separated by ';'", "Government(s) providing the support"),
    _P("instrument", "text", True, "", ", ".join(INSTRUMENTS), "Support instrument"),
    _P("instrument_detail", "text", False, "", "", "Instrument as described by the source"),
    _P("amount_usd", "float", False, "USD", ">= 0", "Amount in USD, only when a source printed a USD figure (see note for qualifiers and local amounts)"),
    _P("date", "text", False, "", "YYYY, YYYY-MM or YYYY-MM-DD", "Date of the action"),
    _P("commitment_status", "text", False, "", "free text (awarded, closed, conditional, letter_of_interest, ...)", "Commitment status as published"),
    _P("counts", "bool", False, "", "yes, no (blank: derived from commitment_status)",
       "Whether amount_usd may be added to totals (no for exclude_from_sum rows and for " + ", ".join(NOT_COUNTED_STATUSES) + ")"),
    _P("source", "text", False, "", "", "Source name"),
    _P("url", "text", True, "", "", "Source URL"),
    _P("source_tier", "text", False, "", "primary, press, database, republication, low-tier", "Tier of the source"),
    _P("verification", "text", False, "", "verbatim, third-party, mixed", "How the figure was verified"),
    _P("note", "text", False, "", "", "Qualifiers, local-currency amounts, exclusions and notes from the source"),
)
PROJECT_FIELDS: tuple[str, ...] = tuple(c.name for c in PROJECT_COLUMNS)
SUPPORT_FIELDS: tuple[str, ...] = tuple(c.name for c in SUPPORT_COLUMNS)
TABLES: dict[str, tuple[ColumnDoc, ...]] = {"projects": PROJECT_COLUMNS, "support": SUPPORT_COLUMNS}

# ------------------------------------------------------------------------------------------------ models

_YEAR_MONTH = re.compile(r"^\d{4}(-\d{2})?$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass(frozen=True)
class Refs:
    """Reference sets of the atlas used in validation (passed as pydantic validation context)."""

    iso3: frozenset[str]
    commodities: frozenset[str]
    nodes: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, atlas: Atlas) -> Refs:
        st = atlas.stages
        return cls(
            iso3=frozenset(atlas.countries["iso3"]),
            commodities=frozenset(atlas.commodities["commodity_id"]),
            nodes=frozenset(zip(st["commodity_id"], st["stage"], strict=True)),
        )


def _refs(info: ValidationInfo) -> Refs | None:
    ctx = info.context
    return ctx.get("refs") if isinstance(ctx, dict) else None


class _Row(CheckedRow):
    """A register row: the API's rules for text and integers apply to imported rows too (critmin.inputs)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, coerce_numbers_to_str=True, str_strip_whitespace=True, extra="forbid")


class Project(_Row):
    """One project of interest (a row of ``projects.csv``). See :data:`PROJECT_COLUMNS` for the meaning of each field."""

    project_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    sponsor: str = Field(min_length=1)
    country_iso3: str
    commodity_id: str
    stage: str
    product: str = ""
    capacity_t: float | None = Field(None, ge=0)
    capacity_raw: str = ""
    capacity_conversion: str = ""
    ramp_up_months: int | None = Field(None, ge=0)
    capex_usd: float | None = Field(None, ge=0)
    capex_note: str = ""
    opex_usd_per_t: float | None = Field(None, ge=0)
    unit_cost_usd_per_t: float | None = Field(None, ge=0)
    status_class: StatusClass
    status: str = ""
    first_output: str = ""
    completion_probability: float | None = Field(None, ge=0, le=1)
    delay_months: float | None = Field(None, ge=0)
    feoc: Literal["yes", "no", ""] = ""
    esg_flags: str = ""
    offtakes: str = ""
    frameworks: str = ""
    japan_link: str = ""
    sources: str = Field(min_length=1)
    source_tiers: str = ""
    verification: str = ""
    note: str = ""

    @field_validator("country_iso3")
    @classmethod
    def _country(cls, v: str, info: ValidationInfo) -> str:
        refs = _refs(info)
        if refs is not None and v not in refs.iso3:
            raise ValueError(f"unknown country '{v}': not an ISO3 code of the atlas")
        return v

    @field_validator("commodity_id")
    @classmethod
    def _commodity(cls, v: str, info: ValidationInfo) -> str:
        refs = _refs(info)
        if refs is not None and v not in refs.commodities:
            raise ValueError(f"unknown commodity '{v}': not a commodity_id of the atlas")
        return v

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: str, info: ValidationInfo) -> str:
        if v not in STAGES:
            raise ValueError(f"unknown stage '{v}'; use one of {', '.join(STAGES)}")
        refs = _refs(info)
        commodity = info.data.get("commodity_id")
        if refs is not None and commodity is not None:
            stages = sorted(s for c, s in refs.nodes if c == commodity)
            # a commodity without any stage node in the atlas (e.g. scandium) accepts any stage of the vocabulary
            if stages and (commodity, v) not in refs.nodes:
                raise ValueError(f"({commodity}, {v}) is not a stage node of the atlas; {commodity} has: {', '.join(stages)}")
        return v

    @field_validator("first_output")
    @classmethod
    def _first_output(cls, v: str) -> str:
        if v and (not _YEAR_MONTH.match(v) or (len(v) > 4 and parse_date(v) is None)):
            raise ValueError(f"'{v}' is not a year YYYY or a month YYYY-MM")
        return v

    @field_validator("feoc", mode="before")
    @classmethod
    def _feoc(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class SupportAction(_Row):
    """One government support action for a project (a row of ``support.csv``)."""

    support_id: str = Field(pattern=ID_PATTERN)
    project_id: str = Field(pattern=ID_PATTERN)
    agency: str = Field(min_length=1)
    participant_iso3: str
    instrument: Instrument
    instrument_detail: str = ""
    amount_usd: float | None = Field(None, ge=0)
    date: str = ""
    commitment_status: str = ""
    counts: bool | None = None
    source: str = ""
    url: str = Field(min_length=1)
    source_tier: str = ""
    verification: str = ""
    note: str = ""

    @field_validator("participant_iso3")
    @classmethod
    def _participants(cls, v: str, info: ValidationInfo) -> str:
        codes = [c.strip() for c in v.split(";")]
        if any(not c for c in codes):
            raise ValueError(f"'{v}' has an empty item; separate ISO3 codes with ';'")
        refs = _refs(info)
        if refs is not None:
            bad = [c for c in codes if c not in refs.iso3]
            if bad:
                raise ValueError(f"unknown country {', '.join(repr(b) for b in bad)}: not an ISO3 code of the atlas")
        return ";".join(codes)

    @field_validator("date")
    @classmethod
    def _date(cls, v: str) -> str:
        if v and (not _DATE.match(v) or (len(v) > 4 and parse_date(v) is None)):
            raise ValueError(f"'{v}' is not a date YYYY, YYYY-MM or YYYY-MM-DD")
        return v

    @field_validator("counts", mode="before")
    @classmethod
    def _counts(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @property
    def counted(self) -> bool:
        return default_counts(self.commitment_status) if self.counts is None else self.counts


_MODELS: dict[str, type[_Row]] = {"projects": Project, "support": SupportAction}
_ID: dict[str, str] = {"projects": "project_id", "support": "support_id"}

# ------------------------------------------------------------------------------------------------ errors


@dataclass(frozen=True)
class RegisterProblem(Problem):
    """A :class:`Problem` that may sit in a workbook: then ``sheet`` and ``cell`` (e.g. ``F7``) say where."""

    sheet: str | None = None
    cell: str | None = None

    def __str__(self) -> str:
        if self.sheet is None:
            return super().__str__()
        where = f"{self.file}, sheet {self.sheet}"
        if self.cell:
            where += f", cell {self.cell}"
        elif self.line is not None:
            where += f", row {self.line}"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class RegisterError(CritminError):
    """An invalid register file. ``problems`` lists every problem found, each naming file, line or cell, and field."""

    def __init__(self, problems: Sequence[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(file="<register>", line=None, field=None, message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the project register:\n  {shown}{more}")


@dataclass(frozen=True)
class _Loc:
    """Where a row comes from: a CSV line, or a workbook row (with the column letter of each field)."""

    file: str
    line: int
    sheet: str | None = None
    letters: Mapping[str, str] | None = None

    def problem(self, field: str | None, message: str) -> RegisterProblem:
        if self.sheet is None:
            return RegisterProblem(self.file, self.line, field, message)
        letter = (self.letters or {}).get(field or "")
        return RegisterProblem(self.file, self.line, field, message, sheet=self.sheet, cell=f"{letter}{self.line}" if letter else None)

    def where(self) -> str:
        if self.sheet is None:
            return f"{self.file} line {self.line}"
        return f"{self.file} sheet {self.sheet} row {self.line}"


_Rows = list[tuple[_Loc, dict[str, Any]]]
_Valid = list[tuple[_Loc, Any]]

# ------------------------------------------------------------------------------------------------ reading


def _header_problems(kind: str, header: Sequence[str], file: str, where: _Loc) -> list[Problem]:
    cols = TABLES[kind]
    names = {c.name for c in cols}
    problems: list[Problem] = []
    for c in cols:
        if c.name not in header:
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


# ------------------------------------------------------------------------------------------------ writing


def _fmt_float(v: float) -> str:
    if math.isnan(v):
        return ""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6f}".rstrip("0").rstrip(".")


def _csv_bytes(kind: str, frame: pd.DataFrame) -> bytes:
    cols = TABLES[kind]
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    w.writerow([c.name for c in cols])
    for rec in frame.to_dict("records"):
        row = []
        for c in cols:
            v = rec[c.name]
            if c.kind == "bool":
                row.append("yes" if bool(v) else "no")
            elif _blank(v):
                row.append("")
            elif c.kind == "float":
                row.append(_fmt_float(float(v)))
            elif c.kind == "int":
                row.append(str(int(v)))
            else:
                row.append(str(v))
        w.writerow(row)
    return buf.getvalue().encode("utf-8")


def write_register(register: Register, directory: str | Path) -> None:
    """Write ``projects.csv`` and ``support.csv`` into ``directory``, all or nothing.

    Both files are first written to a temporary folder inside ``directory``, then moved into place; if a move
    fails, the files already replaced are restored from a backup, so a failure leaves the old files untouched.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    payload = {f"{kind}.csv": _csv_bytes(kind, getattr(register, kind)) for kind in TABLES}
    tmp = Path(tempfile.mkdtemp(prefix=".register-", dir=root))
    try:
        for name, data in payload.items():
            (tmp / name).write_bytes(data)
            if (root / name).exists():
                shutil.copy2(root / name, tmp / f"{name}.bak")
        done: list[str] = []
        try:
            for name in payload:
                os.replace(tmp / name, root / name)
                done.append(name)
        except BaseException:
            for name in done:
                bak = tmp / f"{name}.bak"
                if bak.exists():
                    os.replace(bak, root / name)
                else:
                    (root / name).unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_register(source_file: str | Path, directory: str | Path, replace: bool = False, atlas: Atlas | None = None) -> dict[str, int]:
    """Import a .csv (projects or support table) or .xlsx workbook into the register in ``directory``.

    The whole file is validated first; then its rows are merged by id into the register already in the
    directory (a row with a known id replaces it, a new id is added) or, with ``replace``, the tables present
    in the file replace those of the directory. The result is validated as a whole (duplicate ids, support for
    missing projects) and written atomically. If any row is bad nothing is written and :class:`RegisterError`
    lists every problem. Returns counts: ``added``/``updated`` projects and support rows, and the totals.
    """
    src = Path(source_file)
    root = Path(directory)
    refs = _atlas_refs(atlas)
    if src.is_dir():
        raise RegisterError(RegisterProblem(src.name, None, None, "import a .csv or .xlsx file, not a directory"))
    tables, problems = _read_source(src)
    if not problems and not tables:
        problems.append(RegisterProblem(src.name, None, None, "no register table found in the file"))
    new_p, p1 = _validate_rows("projects", tables.get("projects", []), refs)
    new_s, p2 = _validate_rows("support", tables.get("support", []), refs)
    problems += p1 + p2
    if problems:
        raise RegisterError(problems)
    # the register already in the directory (empty when there is none yet)
    if (root / "projects.csv").exists():
        old_tables, p3 = _read_source(root)
        old_p, old_s, p4 = _validate(old_tables, refs)
        if p3 + p4:
            raise RegisterError(p3 + p4)
    else:
        old_p, old_s = [], []
    counts: dict[str, int] = {}
    merged: dict[str, _Valid] = {}
    for kind, old, new in (("projects", old_p, new_p), ("support", old_s, new_s)):
        key = _ID[kind]
        present = kind in tables
        old_ids = {getattr(m, key) for _, m in old}
        new_ids = {getattr(m, key) for _, m in new}
        if replace and present:
            rows = list(new)
        else:
            rows = [(loc, m) for loc, m in old if getattr(m, key) not in new_ids] + list(new)
        merged[kind] = rows
        counts[f"{kind}_added"] = len(new_ids - old_ids)
        counts[f"{kind}_updated"] = len(new_ids & old_ids)
        counts[f"{kind}_removed"] = len(old_ids - new_ids) if replace and present else 0
        counts[kind] = len({getattr(m, key) for _, m in rows})
    problems = _cross_check(merged["projects"], merged["support"])
    if problems:
        raise RegisterError(problems)
    register = Register(models_frame("projects", (m for _, m in merged["projects"])), models_frame("support", (m for _, m in merged["support"])))
    write_register(register, root)
    return counts


# ------------------------------------------------------------------------------------------------ export


def readme_frame() -> pd.DataFrame:
    """One row per register column: sheet, column, required, kind, unit, allowed values, description."""
    rows = [
        {"sheet": kind, "column": c.name, "required": "yes" if c.required else "no", "type": c.kind, "unit": c.unit, "allowed": c.allowed, "description": c.description}
        for kind, cols in TABLES.items()
        for c in cols
    ]
    rows += [{"sheet": "status_class", "column": k, "required": "", "type": "", "unit": "", "allowed": "", "description": v} for k, v in STATUS_CLASSES.items()]
    rows += [{"sheet": "instrument", "column": k, "required": "", "type": "", "unit": "", "allowed": "", "description": v} for k, v in INSTRUMENTS.items()]
    return pd.DataFrame(rows)


def xlsx_template(register: Register) -> bytes:
    import openpyxl
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    lists = {
        "status_class": ",".join(STATUS_CLASSES),
        "instrument": ",".join(INSTRUMENTS),
        "feoc": "yes,no",
        "counts": "yes,no",
    }
    for kind, cols in TABLES.items():
        ws = wb.create_sheet(kind)
        frame = getattr(register, kind)
        ws.append([c.name for c in cols])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for rec in frame.to_dict("records"):
            row: list[Any] = []
            for c in cols:
                v = rec[c.name]
                if c.kind == "bool":
                    row.append("yes" if bool(v) else "no")
                elif _blank(v):
                    row.append(None)
                elif c.kind == "float":
                    row.append(float(v))
                elif c.kind == "int":
                    row.append(int(v))
                else:
                    row.append(str(v))
            ws.append(row)
        # text that starts with '=' must stay text, not become a formula
        for r in ws.iter_rows(min_row=2):
            for cell in r:
                if cell.data_type == "f":
                    cell.data_type = "s"
        last = max(ws.max_row, 1) + 500
        for i, c in enumerate(cols, start=1):
            letter = get_column_letter(i)
            width = min(50, max(10, len(c.name) + 2, *(len(str(x)) + 1 for x in frame[c.name].head(50)))) if len(frame) else len(c.name) + 4
            ws.column_dimensions[letter].width = width
            if c.name in lists:
                dv = DataValidation(type="list", formula1=f'"{lists[c.name]}"', allow_blank=not c.required)
                dv.error = f"{c.name} must be one of: {lists[c.name]}"
                dv.errorTitle = f"invalid {c.name}"
                dv.add(f"{letter}2:{letter}{last}")
                ws.add_data_validation(dv)
        ws.freeze_panes = "B2"
    ws = wb.create_sheet("README")
    readme = readme_frame()
    ws.append(list(readme.columns))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for rec in readme.to_dict("records"):
        ws.append([str(rec[c]) for c in readme.columns])
    for i, width in enumerate((12, 24, 10, 8, 22, 60, 100), start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_register(register: Register, path: str | Path) -> None:
    """Write the register to ``path``: ``.csv`` writes the projects table; ``.xlsx`` writes a template workbook
    (sheets ``projects``, ``support`` and ``README`` describing every column, with drop-down lists for
    ``status_class``, ``instrument``, ``feoc`` and ``counts``) that :func:`import_register` reads back."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        write_atomic(p, _csv_bytes("projects", register.projects))
    elif suffix == ".xlsx":
        write_atomic(p, xlsx_template(register))
    else:
        raise RegisterError(RegisterProblem(p.name, None, None, "export to a .csv or .xlsx file"))


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
