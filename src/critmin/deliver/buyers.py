"""The buyers register: who needs which material, how much, from which origins (CSV or Excel, validated).

Columns (``BUYER_COLUMNS``): buyer_id, name, country_iso3, commodity_id, stage, demand_t_per_year (t/yr on
the node's production basis; blank = not published), priority (1 defence/stockpile, 2 industry, 3 other),
min_contract_t (t over the planning horizon; blank = none), origin_rule (``any``, ``no_concern``,
``allied`` or ISO3 codes separated by ';'), start, end (YYYY-MM), kind (offtaker, aggregate, stockpile,
user), contract_projects (project ids of the buyer's contract, ';'-separated: only they deliver to it),
contract_share (the share of those projects' output the contract holds, instead of a volume), source, url, note. Errors name the file, the line (or sheet and cell) and the field; a file with any
bad row is rejected whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ConfigDict, Field, ValidationError, field_validator

from critmin.atlas.schema import TableSchema, read_schemas
from critmin.errors import CritminError, Problem
from critmin.inputs import CheckedRow
from critmin.portfolio.register_schema import Refs

#: The buyers register's schema (``critmin/deliver/schema/buyers.csv``, the atlas's schema mechanism): the column
#: list, the data dictionary in docs/deliver.md and the Excel template come from it; :class:`Buyer` is tested
#: against it.
BUYER_SCHEMAS: dict[str, TableSchema] = read_schemas("critmin.deliver", "schema/buyers.csv")
BUYER_COLUMNS: tuple[str, ...] = tuple(BUYER_SCHEMAS["buyers"].column_names)


class BuyerError(CritminError):
    """Invalid buyers file; ``problems`` name file, line or cell, and field."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("invalid buyers register:\n  " + "\n  ".join(str(p) for p in problems[:30]))


class Buyer(CheckedRow):
    """One buyer's need at one node (the API's rules for text and integers apply: critmin.inputs)."""

    model_config = ConfigDict(extra="ignore")

    buyer_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    country_iso3: str
    commodity_id: str
    stage: str
    demand_t_per_year: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    priority: int = Field(default=2, ge=1, le=3)
    min_contract_t: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    origin_rule: str = "no_concern"
    #: project ids the buyer's contract is with (';'-separated): only they deliver to it; blank = any project
    contract_projects: str = Field(default="", pattern=r"^([A-Za-z0-9_.-]+(;[A-Za-z0-9_.-]+)*)?$")
    #: share of the named projects' output the contract holds (review 35 L5: JARE's right to up to 65 % of Lynas' Dy/Tb)
    contract_share: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    start: str | None = Field(default=None, pattern=r"^\d{4}(-\d{2})?$")
    end: str | None = Field(default=None, pattern=r"^\d{4}(-\d{2})?$")
    kind: str = "user"
    form: str = ""
    source: str = ""
    url: str = ""
    note: str = ""

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        return "user" if v is None or str(v).strip() == "" else v

    @field_validator("contract_projects", "form", "source", "url", "note", mode="before")
    @classmethod
    def _none_blank(cls, v: Any) -> Any:
        return "" if v is None else v

    @field_validator("origin_rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        v = v.strip() or "no_concern"
        if v in ("any", "no_concern", "allied") or all(re.fullmatch(r"[A-Z]{3}", c.strip()) for c in v.split(";")):
            return v
        raise ValueError(f"'{v}' is not any, no_concern, allied or ISO3 codes separated by ';'")


def contract_of(buyer: Any) -> set[str]:
    """The project ids of a buyer's contract (``contract_projects``, ';'-separated); empty (blank, None or NaN, as a
    frame holds a missing cell): any project."""
    v = buyer.get("contract_projects")
    if v is None or (isinstance(v, float) and v != v):
        return set()
    return {c for c in str(v).split(";") if c}


def share_problems(b: Buyer) -> list[tuple[str, str]]:
    """(field, message) for a contract share without the projects it is a share of, or beside a published volume
    (the contract holds one or the other)."""
    if b.contract_share is None:
        return []
    if not contract_of(b.model_dump()):
        return [("contract_share", "a share of output needs the projects it is a share of (contract_projects)")]
    if b.demand_t_per_year is not None:
        return [("contract_share", "give a volume (demand_t_per_year) or a share of the named projects' output, not both")]
    return []


def node_problems(refs: Refs, concern: Iterable[str], country_iso3: str, commodity_id: str, stage: str,
                  concern_ok: bool = False) -> list[tuple[str, str]]:
    """(field, message) for an unknown country, a country of concern (unless ``concern_ok``: deliveries to
    one are not planned) and an unknown commodity-stage node of the atlas."""
    out = []
    if country_iso3 not in refs.iso3:
        out.append(("country_iso3", f"unknown country '{country_iso3}'"))
    elif not concern_ok and country_iso3 in concern:
        out.append(("country_iso3", "deliveries to a country of concern are not planned"))
    if (commodity_id, stage) not in refs.nodes:
        out.append(("stage", f"unknown node {commodity_id}/{stage}"))
    return out


def _blank_to_none(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if (v is None or (isinstance(v, float) and pd.isna(v)) or str(v).strip() == "") else v) for k, v in r.items()}


def read_buyers(path: str | Path, atlas: Any = None) -> pd.DataFrame:
    """Validate a buyers CSV or .xlsx (sheet ``buyers``); returns the table or raises :class:`BuyerError`."""
    p = Path(path)
    if not p.is_file():
        raise BuyerError([Problem(str(p), None, None, "not a file" if p.exists() else "file not found")])
    from critmin.workbooks import check_csv

    xlsx = p.suffix.lower() == ".xlsx"
    try:
        if not xlsx:
            check_csv(p.read_bytes(), p.name)  # bounded before any row is parsed (WorkbookTooLarge is a ValueError)
        t = _read_buyers_sheet(p) if xlsx else pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, KeyError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise BuyerError([Problem(str(p), None, None, f"cannot read: {exc}")]) from exc
    problems: list[Problem] = []
    missing = [c for c in ("buyer_id", "name", "country_iso3", "commodity_id", "stage") if c not in t.columns]
    if missing:
        raise BuyerError([Problem(str(p), 1, c, "required column is missing") for c in missing])
    cols = list(t.columns)
    refs = Refs.of(atlas) if atlas is not None else None
    rows = []
    seen: dict[str, int] = {}
    for i, r in enumerate(t.to_dict("records")):
        line = i + 2

        def where(field: str, line: int = line) -> tuple[int | None, str]:
            if xlsx and field in cols:
                return None, f"sheet buyers, cell {chr(ord('A') + cols.index(field))}{line}, field '{field}'"
            return line, field

        try:
            b = Buyer.model_validate(_blank_to_none(r))
        except ValidationError as exc:
            for e in exc.errors():
                f = str(e["loc"][0]) if e["loc"] else ""
                ln, fld = where(f)
                problems.append(Problem(str(p), ln, fld, e["msg"]))
            continue
        found = node_problems(refs, atlas.concern, b.country_iso3, b.commodity_id, b.stage) if refs is not None else []
        if b.buyer_id in seen:
            found.append(("buyer_id", f"duplicate id (first on line {seen.get(b.buyer_id)})"))
        found += share_problems(b)
        for fld, msg in found:
            ln, f2 = where(fld)
            problems.append(Problem(str(p), ln, f2, msg))
        seen.setdefault(b.buyer_id, line)
        rows.append(b.model_dump())
    if problems:
        raise BuyerError(problems)
    return pd.DataFrame(rows, columns=list(BUYER_COLUMNS))


def buyers_workbook(buyers: pd.DataFrame | None = None) -> bytes:
    """The buyers register as an Excel template (sheet ``buyers`` and a README data dictionary), generated from
    the schema (:func:`critmin.atlas.schema.template_workbook`); :func:`read_buyers` reads it back."""
    from critmin.atlas.schema import template_workbook

    frame = buyers if buyers is not None else pd.DataFrame(columns=list(BUYER_COLUMNS))
    return template_workbook(BUYER_SCHEMAS, {"buyers": frame})


def _read_buyers_sheet(p: Path) -> pd.DataFrame:
    """The ``buyers`` sheet as text, through the bounded workbook reader (critmin.workbooks)."""
    from critmin.workbooks import read_sheets

    sheets = read_sheets(p)
    if "buyers" not in sheets:
        raise ValueError(f"sheet 'buyers' is missing (sheets: {', '.join(sheets)})")
    rows = [r for r in sheets["buyers"] if any(c is not None and str(c).strip() for c in r)]
    if not rows:
        return pd.DataFrame()
    header = [str(h).strip() if h is not None else "" for h in rows[0]]
    while header and header[-1] == "":
        header.pop()
    body = [["" if c is None else str(c) for c in r[: len(header)]] + [""] * max(0, len(header) - len(r)) for r in rows[1:]]
    return pd.DataFrame(body, columns=header)


def bundled_buyers_path() -> Path:
    return Path(str(resources.files("critmin.deliver").joinpath("data/buyers.csv")))


def bundled_buyers(atlas: Any = None) -> pd.DataFrame:
    return read_buyers(bundled_buyers_path(), atlas)
