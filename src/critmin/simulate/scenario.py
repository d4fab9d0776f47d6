"""Disruption scenarios: who restricts what, against whom, how much, for how long, and the responses.

A :class:`Scenario` is a pydantic definition; files (YAML or JSON, one scenario or a list) are read with
:func:`load_scenario_file`, which names the file, the scenario and the field of any error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from critmin.errors import CritminError, Problem

#: Target keywords: WORLD = every destination except the restrictors; BLOC = the participants together.
TARGET_KEYWORDS = ("WORLD", "BLOC")
Regime = Literal["ban", "quota", "licence", "suspension", "sanction", "closure"]
Status = Literal["in_force", "suspended", "ended", "unknown", "hypothetical"]


class ScenarioError(CritminError):
    """An invalid scenario definition; ``problems`` name the file, scenario and field."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("invalid scenario:\n  " + "\n  ".join(str(p) for p in problems))


class StockpileRelease(BaseModel):
    """Release from public stockpiles of the targeted buyers during the disruption.

    Each month the release is the quantity that would hold the targeted segment's price at ``price_cap``
    (ratio to the pre-disruption price), limited by ``max_release_t_per_month`` and the stock left.
    """

    model_config = ConfigDict(extra="forbid")

    holdings_t: float = Field(default=0.0, ge=0, description="Stock available to the targeted buyers at the start (t)")
    max_release_t_per_month: float | None = Field(default=None, ge=0, description="Release capacity (t/month); none = unlimited")
    price_cap: float = Field(default=1.0, ge=1.0, description="Price ratio P/P0 the release tries to hold")


class Response(BaseModel):
    """Responses of the targeted buyers."""

    model_config = ConfigDict(extra="forbid")

    stockpile: StockpileRelease | None = None
    demand_restraint: float = Field(default=0.0, ge=0.0, le=0.5, description="Share of targeted demand curtailed by policy")


class Scenario(BaseModel):
    """One supply disruption at one commodity-stage node.

    - ``restrictors``: ISO3 codes of the countries whose exports are restricted.
    - ``targets``: ``WORLD`` (every destination outside the restrictors), ``BLOC`` (the participants), or ISO3 codes.
    - ``withheld_share``: share of the restrictors' exports to the targets withheld; for a licence regime the
      share of export volume denied. ``withheld_low``/``withheld_high`` give an uncertainty range (uniform).
      Left out: 1 for bans, suspensions, closures and sanctions; the ``licence_denial`` parameter range for
      licence regimes and quotas.
    - ``scope_low``/``scope_high``: the share of the node's exports that the measure's product list covers
      (default 1); the withheld share applies within it, so the node loses ``scope × withheld share``.
    - ``leakage``: share of withheld exports that still reaches the targets through third countries
      (None = the parameter table's default for the node).
    - ``market_surplus``: the targeted segment's excess supply at the old price before the disruption, as a
      share of its demand (0: balanced, the risk library's baseline; the back-test sets it per event from
      sourced market balances).
    - ``stock_months`` (with ``stock_months_low``/``stock_months_high``, triangular): commercial stocks the
      targeted buyers hold at the start, in months of their consumption (None: the ``inventory_months``
      parameter plus the stocks located in targeted countries, ``located_stocks.csv``); an analyst facing a
      new event, or the back-test, states what was actually held.
    - ``withheld_by_month``: the withheld share month by month from the start (a recorded export series, or an
      analyst's expectation of a licensing stop); later months use the drawn share. ``front_loaded_share``:
      exports bought ahead of the start, as a share of a year's exports, held by the targeted buyers.
    - ``input_control``: the measure restricts an input the node is made from, not the node's product (China's
      licences on the ternary precursors that Korean cathode makers import). Producer ISO3 -> the share of its
      output at the node that depends on the restrictors' input; that output stands in for the restrictors'
      exports (all of it sold outside the restrictors) and the restrictors' own output at the node is not
      withheld (:func:`critmin.simulate.nodes.under_input_control`).
    - ``probability``: annual probability of the scenario (None = from the probability model; in-force
      controls are certain).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\-]+$")
    title: str = ""
    commodity: str
    stage: str
    restrictors: list[str] = Field(min_length=1)
    targets: list[str] = Field(default_factory=lambda: ["WORLD"], min_length=1)
    regime: Regime = "ban"
    withheld_share: float | None = Field(default=None, ge=0.0, le=1.0)
    withheld_low: float | None = Field(default=None, ge=0.0, le=1.0)
    withheld_high: float | None = Field(default=None, ge=0.0, le=1.0)
    scope_low: float = Field(default=1.0, ge=0.0, le=1.0, description=(
        "Low end of the share of the restrictors' exports at the node that the measure's product list covers "
        "(1 = the whole node; e.g. only cells above 300 Wh/kg of all lithium-ion cells)"))
    scope_high: float = Field(default=1.0, ge=0.0, le=1.0, description="High end of the covered share")
    start_month: int = Field(default=0, ge=0, description="Months from the reference date to the start")
    start_date: str | None = Field(default=None, pattern=r"^\d{4}(-\d{2})?$", description="Calendar start (YYYY or YYYY-MM) of a real event")
    duration_months: int = Field(default=12, ge=1, le=120)
    leakage: float | None = Field(default=None, ge=0.0, le=1.0)
    market_surplus: float = Field(default=0.0, ge=-0.5, le=1.0, description=(
        "Excess supply in the targeted segment before the disruption, as a share of its demand (0 = balanced; "
        "positive = oversupplied, e.g. a historical event's market; negative = already short)"))
    stock_months: float | None = Field(default=None, ge=0.0, le=600.0, description=(
        "Commercial stocks held by the targeted buyers at the start, months of their consumption (none = parameters)"))
    stock_months_low: float | None = Field(default=None, ge=0.0, le=600.0)
    stock_months_high: float | None = Field(default=None, ge=0.0, le=600.0)
    withheld_by_month: list[float] | None = Field(default=None, min_length=1, max_length=120, description=(
        "Share of the restrictors' exports to the targets withheld in months 1, 2, ... of the disruption (each 0-1; "
        "e.g. the fall customs recorded); it replaces the drawn withheld share in those months, later months use "
        "the drawn share. Times the measure's scope."))
    front_loaded_share: float = Field(default=0.0, ge=0.0, le=5.0, description=(
        "Exports to the targets above their baseline in the months before the start (buyers front-loading before "
        "a control takes effect), as a share of one year's baseline exports; held by the targeted buyers at the "
        "start, on top of their stocks"))
    input_control: dict[str, float] | None = Field(default=None, description=(
        "The measure restricts an input of the node, not its product: producer ISO3 -> share (0-1) of its output "
        "at the node made from the restrictors' input; that output is what is withheld, and the restrictors' own "
        "output at the node is not"))
    response: Response = Field(default_factory=lambda: Response())
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    status: Status = "hypothetical"
    family: str = Field(default="user", description="event, generated or user")
    event_id: str | None = None
    source_ids: list[str] = Field(default_factory=list)
    note: str = ""

    @field_validator("restrictors", "targets")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        out = [s.strip().upper() for s in v]
        if any(not s for s in out):
            raise ValueError("empty country code")
        return out

    @field_validator("input_control")
    @classmethod
    def _input_control(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return None
        out = {k.strip().upper(): float(x) for k, x in v.items()}
        bad = [k for k, x in out.items() if not (len(k) == 3 and k.isalpha()) or not 0.0 <= x <= 1.0]
        if bad or not out:
            raise ValueError(f"input_control needs ISO3 producers with shares in [0, 1]; {bad or 'empty'} do not")
        return out

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        for t in v:
            if t not in TARGET_KEYWORDS and not (len(t) == 3 and t.isalpha()):
                raise ValueError(f"'{t}' is not WORLD, BLOC or an ISO3 code")
        if "WORLD" in v and len(v) > 1:
            raise ValueError("WORLD cannot be combined with other targets")
        return v

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.withheld_share is None and (self.withheld_low is not None or self.withheld_high is not None):
            raise ValueError("withheld_low/withheld_high need withheld_share")
        if self.withheld_share is not None:
            lo = self.withheld_low if self.withheld_low is not None else self.withheld_share
            hi = self.withheld_high if self.withheld_high is not None else self.withheld_share
            if not lo <= self.withheld_share <= hi:
                raise ValueError(f"withheld_low <= withheld_share <= withheld_high fails ({lo}, {self.withheld_share}, {hi})")
        if self.stock_months is None and (self.stock_months_low is not None or self.stock_months_high is not None):
            raise ValueError("stock_months_low/stock_months_high need stock_months")
        if self.stock_months is not None:
            lo, hi = self.stock_range()
            if not lo <= self.stock_months <= hi:
                raise ValueError(f"stock_months_low <= stock_months <= stock_months_high fails ({lo}, {self.stock_months}, {hi})")
        if self.input_control is not None and self.targets != ["WORLD"]:
            raise ValueError("input_control needs targets [WORLD]: the output a measure on an input stops is never made, "
                             "so it cannot be diverted from named targets to other buyers")
        if self.input_control is not None and set(self.input_control) & set(self.restrictors):
            raise ValueError(f"input_control names a restrictor ({sorted(set(self.input_control) & set(self.restrictors))}): "
                             "it lists the producers that depend on the restrictors' input")
        if self.withheld_by_month is not None:
            bad = [i + 1 for i, x in enumerate(self.withheld_by_month) if not 0.0 <= x <= 1.0]
            if bad:
                raise ValueError(f"withheld_by_month must lie in [0, 1]; months {bad} do not")
        if self.scope_low > self.scope_high:
            raise ValueError(f"scope_low <= scope_high fails ({self.scope_low}, {self.scope_high})")
        overlap = set(self.restrictors) & set(self.targets)
        if overlap:
            raise ValueError(f"a restrictor cannot target itself: {sorted(overlap)}")
        return self

    @property
    def node(self) -> tuple[str, str]:
        return (self.commodity, self.stage)

    def stock_range(self) -> tuple[float, float]:
        """(low, high) of the targeted buyers' stocks at the start (months); NaN when not stated."""
        if self.stock_months is None:
            return float("nan"), float("nan")
        lo = self.stock_months_low if self.stock_months_low is not None else self.stock_months
        hi = self.stock_months_high if self.stock_months_high is not None else self.stock_months
        return float(lo), float(hi)

    def withheld_range(self) -> tuple[float, float] | None:
        """(low, high) of the withheld share, or None when it comes from the regime's default."""
        if self.withheld_share is None:
            return None
        lo = self.withheld_low if self.withheld_low is not None else self.withheld_share
        hi = self.withheld_high if self.withheld_high is not None else self.withheld_share
        return float(lo), float(hi)


def _problems(exc: ValidationError, file: str, label: str) -> list[Problem]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"])
        out.append(Problem(file, None, f"{label}{'.' + loc if loc else ''}", e["msg"]))
    return out


def parse_scenarios(data: Any, file: str = "<scenario>") -> list[Scenario]:
    """Validate scenario data (a mapping, a list of mappings or ``{"scenarios": [...]}``)."""
    if isinstance(data, dict) and "scenarios" in data:
        data = data["scenarios"]
    items = data if isinstance(data, list) else [data]
    out: list[Scenario] = []
    problems: list[Problem] = []
    for i, item in enumerate(items):
        label = f"scenario[{i}]" + (f" '{item.get('id')}'" if isinstance(item, dict) and item.get("id") else "")
        if not isinstance(item, dict):
            problems.append(Problem(file, None, label, "a scenario must be a mapping of fields"))
            continue
        try:
            out.append(Scenario.model_validate(item))
        except ValidationError as exc:
            problems.extend(_problems(exc, file, label))
    ids = [s.id for s in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        problems.append(Problem(file, None, "id", f"duplicate scenario ids: {dup}"))
    if problems:
        raise ScenarioError(problems)
    return out


def load_scenario_file(path: str | Path) -> list[Scenario]:
    """Read scenarios from a YAML (.yaml/.yml) or JSON file."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError([Problem(str(p), None, None, "not a file" if p.exists() else "file not found")])
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([Problem(str(p), None, None, f"not UTF-8 text: {exc}")]) from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None) or (getattr(getattr(exc, "problem_mark", None), "line", -1) + 1 or None)
        raise ScenarioError([Problem(str(p), line, None, f"not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}")]) from exc
    except RecursionError as exc:  # deeply nested input: refused with the file named, never a traceback (issue 14)
        raise ScenarioError([Problem(str(p), None, None, "nested too deeply to be a scenario file")]) from exc
    if data is None:
        raise ScenarioError([Problem(str(p), None, None, "file is empty")])
    return parse_scenarios(data, str(p))
