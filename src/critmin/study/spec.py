"""The study file: what the group decides, in one YAML file (docs/plan.md, "The study file").

Paths in the file are relative to the file's folder. Every field has a default: an empty study is the
bundled one. :func:`load_spec` checks the file and every path it names before any work starts, and its
errors name the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from critmin._dates import check_month
from critmin.errors import CritminError
from critmin.inputs import printable, value_problem
from critmin.stockpile.policy import StockpilePolicy

PARTICIPANTS = ("USA", "JPN")


class StudyError(CritminError):
    """A study file or one of its inputs is wrong (the message names the file and the field)."""


class StudySpec(BaseModel):
    """One study (see module docstring); the template written by ``critmin study init`` documents each field."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = "critmin study"
    as_of: str | None = Field(None, description="Reference month YYYY-MM (default: this month)")
    draws: Annotated[int, Field(ge=50, le=20000)] = 500
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    delivery_months: Annotated[int, Field(ge=1, le=60)] = 6
    blocs: str | None = Field(None, description="CSV bloc_id,iso3 replacing the bundled membership of the blocs it names")
    register_path: str | None = Field(None, alias="register", description="Project register: a folder with projects.csv (+ support.csv) or an .xlsx")
    buyers: str | None = Field(None, description="Buyers register (CSV or .xlsx)")
    budgets: str | None = Field(None, description="CSV agency_id,instrument,budget_usd adding or replacing budgets")
    params: str | None = Field(None, description="CSV name,value[,scope] of simulator parameter overrides")
    critical_lists: dict[str, list[str]] = Field(default_factory=dict,
                                                 description="Participant -> commodity ids; a participant left out keeps its bundled list")
    stockpile: StockpilePolicy = Field(default_factory=StockpilePolicy)

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, raw: Any) -> Any:
        """Every text and integer in the file, names included, obeys :mod:`critmin.inputs` (a lone
        surrogate or control character in a name or a stage reached the reports; issue 14)."""
        def walk(v: Any, path: str) -> None:
            why = value_problem(v)
            if why:
                raise ValueError(f"{path or 'study'}: {why}")
            if isinstance(v, dict):
                for k, x in v.items():
                    name = f"{path}.{printable(str(k))}".lstrip(".")
                    walk(k, name + " (name)")
                    walk(x, name)
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, f"{path}.{i}")
        walk(raw, "")
        return raw

    @field_validator("as_of")
    @classmethod
    def _month(cls, v: str | None) -> str | None:
        return check_month(v)

    @field_validator("critical_lists")
    @classmethod
    def _participants(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = [k for k in v if k not in PARTICIPANTS]
        if bad:
            raise ValueError(f"participants are {', '.join(PARTICIPANTS)}; not {', '.join(bad)}")
        return {k: [str(x) for x in items] for k, items in v.items()}


#: Fields naming files (or folders), resolved against the study file's folder (names as in the file).
PATH_FIELDS = ("blocs", "register", "buyers", "budgets", "params")


def path_value(spec: StudySpec, field: str) -> str | None:
    """The value of a path field by its name in the file (``register`` is ``register_path`` in the model)."""
    return getattr(spec, "register_path" if field == "register" else field)


def load_spec(path: str | Path) -> tuple[StudySpec, Path]:
    """Read and check a study file; returns the spec and the folder its paths are relative to."""
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"{p}: study file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise StudyError(f"{p.name}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise StudyError(f"{p.name}: the study must be a mapping of fields (name, as_of, register, ...)")
    spec = spec_from_dict(raw, p.name)
    return spec, p.resolve().parent


def spec_from_dict(raw: dict[str, Any], where: str = "study") -> StudySpec:
    """A spec from a mapping, with errors naming ``where`` and the field."""
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        msgs = [f"{where}: field '{'.'.join(str(x) for x in e['loc'])}': {e['msg']}" for e in exc.errors()]
        raise StudyError("; ".join(msgs)) from None
