"""Request and response shapes of the REST API (pydantic): what the OpenAPI spec documents."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from critmin.inputs import TEXT_PATTERN, printable, value_problem
from critmin.web.models import ROLES
from critmin.web.security import PASSWORD_MAX, PASSWORD_MIN

RunKind = Literal["simulate", "risk", "portfolio", "stockpile", "deliver", "match", "plan", "respond"]
Role = Literal["government", "agency", "partner", "company", "observer"]
assert set(ROLES) == set(Role.__args__)  # type: ignore[attr-defined]


#: Largest id or version the API accepts (the database's 32-bit integer columns).
INT_MAX = 2**31 - 1
#: Text as :mod:`critmin.inputs` allows it: no control character but tab, line feed and carriage return
#: (PostgreSQL's text columns cannot store a NUL; a U+0001 broke the Excel export; issue 14).
TEXT = TEXT_PATTERN
OrgName = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]


def plain_json(value: Any, path: str = "") -> Any:
    """``value`` unchanged when both databases can store it; ValueError naming the first NaN or infinite
    number (JSON has none), text that breaks the rules of :mod:`critmin.inputs` or an integer out of range."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'value'}: not a finite number")
    why = value_problem(value)  # lone surrogates, control characters, integers beyond ±(2^53 - 1): critmin.inputs
    if why:
        raise ValueError(f"{path or 'value'}: {why}")
    if isinstance(value, dict):
        for k, v in value.items():
            name = printable(str(k))  # the path quotes the name: never the refused character itself
            plain_json(k, f"{path}.{name}".lstrip(".") + " (name)")
            plain_json(v, f"{path}.{name}".lstrip("."))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            plain_json(v, f"{path}.{i}".lstrip("."))
    return value


#: A JSON object of fields or parameters, checked by :func:`plain_json` on the value as parsed from the
#: request, before pydantic-core reads it (it fails on a lone surrogate in a member name with a bare
#: UnicodeEncodeError: a server error instead of 422; issue 14).
PlainDict = Annotated[dict[str, Any], BeforeValidator(lambda v: plain_json(v))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=320, pattern=TEXT, description="The user's email")
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class PasswordChangeIn(Strict):
    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, pattern=TEXT)


class ColleagueOut(BaseModel):
    email: str
    role: str
    active: bool
    created_at: str | None


class LoginOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    csrf_token: str = Field(description="Send in X-CSRF-Token with cookie sessions")
    expires_at: str
    user: UserOut


class UserOut(BaseModel):
    id: int
    email: str
    org: str
    role: str


class OfferIn(Strict):
    """A supplier's offer of output (t/yr) at one node, from a month on (blank = available now)."""

    offer_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=120)
    supplier: str = Field(min_length=1, max_length=300)
    country_iso3: str = Field(pattern=r"^[A-Z]{3}$")
    commodity_id: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    volume_t_per_year: float = Field(gt=0, allow_inf_nan=False)
    available_from: str = Field(default="", pattern=r"^(\d{4}-\d{2})?$")
    product: str = ""
    source: str = ""
    note: str = ""


class RecordIn(Strict):
    """A record to create: ``data`` holds the fields of its kind (see docs/web.md), ``confidential`` hides it
    from other organisations, ``shared_with`` names organisations that may still read it."""

    data: PlainDict
    confidential: bool = False
    shared_with: list[OrgName] = Field(default_factory=list, max_length=100)


class RecordUpdate(Strict):
    """An update: ``version`` must be the version read (else 409, nothing written)."""

    version: int = Field(ge=1, le=INT_MAX)
    data: PlainDict | None = None
    confidential: bool | None = None
    shared_with: list[OrgName] | None = Field(default=None, max_length=100)


class RecordOut(BaseModel):
    id: int
    kind: str
    key: str
    org: str
    confidential: bool
    shared_with: list[str]
    version: int
    data: dict[str, Any]
    created_at: str
    updated_at: str
    can_edit: bool


class Page(BaseModel):
    total: int
    items: list[Any]


class RunIn(Strict):
    """A background job: ``kind`` and its parameters (docs/web.md lists them per kind)."""

    kind: RunKind
    params: PlainDict = Field(default_factory=dict)


class RunOut(BaseModel):
    id: int
    kind: str
    status: str
    progress: float
    message: str
    params: dict[str, Any]
    inputs_sha256: str
    data_version: str
    critmin_version: str
    org: str
    user: str
    confidential: bool
    cached_from: int | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    files: list[str]


class CommentIn(Strict):
    body: str = Field(min_length=1, max_length=10000, pattern=TEXT)


class CommentOut(BaseModel):
    id: int
    user: str
    org: str
    body: str
    created_at: str


LoginOut.model_rebuild()
