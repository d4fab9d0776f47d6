"""The register's schema: vocabulary (status classes, instruments, node bases), the documented columns of
``projects`` and ``support``, the row models that validate them and the register's errors (docs/portfolio.md §1)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from critmin.atlas.schema import STAGES, ColumnSpec, TableSchema, parse_date, read_schemas
from critmin.errors import CritminError, Problem
from critmin.inputs import CheckedRow

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
    "battery_cathode": "t nickel-based cathode active material (NCM/NCA)",
    "battery_cathode_lfp": "t LFP cathode active material",
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


#: The register's columns, read from ``critmin/portfolio/schema/register.csv`` (the schema mechanism of the atlas,
#: :func:`critmin.atlas.schema.read_schemas`): the data dictionary, the Excel template and the CSV writer use
#: them; the row models below are tested against them.
REGISTER_SCHEMAS: dict[str, TableSchema] = read_schemas("critmin.portfolio", "schema/register.csv")
PROJECT_COLUMNS: tuple[ColumnSpec, ...] = REGISTER_SCHEMAS["projects"].columns
SUPPORT_COLUMNS: tuple[ColumnSpec, ...] = REGISTER_SCHEMAS["support"].columns
PROJECT_FIELDS: tuple[str, ...] = tuple(c.name for c in PROJECT_COLUMNS)
SUPPORT_FIELDS: tuple[str, ...] = tuple(c.name for c in SUPPORT_COLUMNS)
TABLES: dict[str, tuple[ColumnSpec, ...]] = {"projects": PROJECT_COLUMNS, "support": SUPPORT_COLUMNS}

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


def parse_coproducts(text: object) -> list[tuple[str, float]]:
    """``commodity:tonnes a year`` pairs separated by ``;`` (the register's ``coproducts``), e.g.
    ``gold:14.40;bismuth:2337`` -> ``[("gold", 14.4), ("bismuth", 2337.0)]``; blank -> ``[]``. A malformed part or a
    quantity that is not positive raises ``ValueError`` naming it."""
    out: list[tuple[str, float]] = []
    if not isinstance(text, str):
        return out
    for part in (x.strip() for x in text.split(";") if x.strip()):
        name, sep, qty = part.partition(":")
        try:
            t = float(qty)
        except ValueError:
            t = float("nan")
        if not sep or not name.strip() or not t > 0:
            raise ValueError(f"'{part}' is not commodity:tonnes a year (e.g. gold:14.40)")
        out.append((name.strip(), t))
    return out


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
    output_t: float | None = Field(None, ge=0)
    output_period: str = ""
    output_note: str = ""
    capex_usd: float | None = Field(None, ge=0)
    capex_note: str = ""
    private_finance_usd: float | None = Field(None, ge=0)
    coproducts: str = ""
    opex_usd_per_t: float | None = Field(None, ge=0)
    unit_cost_usd_per_t: float | None = Field(None, ge=0)
    life_years: float | None = Field(None, gt=0)
    status_class: StatusClass
    status: str = ""
    first_output: str = ""
    completion_probability: float | None = Field(None, ge=0, le=1)
    delay_months: float | None = Field(None, ge=0)
    feoc: Literal["yes", "no", ""] = ""
    federal_decision_pending: Literal["yes", "no", "facilitated", ""] = ""
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

    @field_validator("coproducts")
    @classmethod
    def _coproducts(cls, v: str, info: ValidationInfo) -> str:
        refs = _refs(info)
        for name, _ in parse_coproducts(v):
            if refs is not None and name not in refs.commodities:
                raise ValueError(f"unknown commodity '{name}' in coproducts: not a commodity_id of the atlas")
        return v

    @field_validator("first_output")
    @classmethod
    def _first_output(cls, v: str) -> str:
        if v and (not _YEAR_MONTH.match(v) or (len(v) > 4 and parse_date(v) is None)):
            raise ValueError(f"'{v}' is not a year YYYY or a month YYYY-MM")
        return v

    @field_validator("feoc", "federal_decision_pending", mode="before")
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

