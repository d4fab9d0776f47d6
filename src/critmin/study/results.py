"""Typed results of :class:`critmin.Study`'s methods (issue 13).

Each result is a frozen dataclass whose fields are pandas DataFrames with labelled columns, plus ``record`` (the
JSON-ready record that the CLI's ``--format json`` and the web API return) and ``metadata`` (data version,
parameters, seed, draws). Every result has:

* ``tables()`` -> the DataFrames by name;
* ``units(table)`` -> each column's unit, read from its name (:func:`unit_of`);
* ``to_dict()`` -> the record, JSON-safe (NaN as None);
* ``to_excel(path)`` -> one sheet per table and an ``about`` sheet with the metadata, written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from critmin.output import json_safe, write_atomic, xlsx_bytes

#: Column-name endings and the unit they state, longest first (critmin names every quantity with its unit).
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_usd_per_usd", "USD per USD"),
    ("_usd_per_t", "USD/t"),
    ("_t_per_year", "t/yr"),
    ("_t_per_month", "t/month"),
    ("_usd", "USD"),
    ("_t", "t"),
    ("_months", "months"),
    ("_month", "month"),
    ("_days", "days"),
    ("days_of_consumption", "days"),
    ("_ratio", "ratio to the baseline"),
    ("_ratio_p50", "ratio to the baseline"),
    ("share_of_loss", "fraction"),
    ("share_met", "fraction"),
    ("_share", "fraction"),
    ("share", "fraction"),
    ("probability", "probability"),
    ("_pct", "%"),
)


def unit_of(column: str) -> str:
    """The unit a column's name states (``expected_loss_usd`` -> USD, ``shortfall_t`` -> t); '' when it states
    none (ids, names, categories, scores)."""
    for end, unit in UNIT_SUFFIXES:
        if column.endswith(end) or column == end:
            return unit
    return ""


def _sheet(df: pd.DataFrame) -> pd.DataFrame:
    """A table as a worksheet: nested values (lists, dicts) written as JSON text, so every cell is a scalar."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object and out[c].map(lambda v: isinstance(v, dict | list | tuple)).any():
            out[c] = out[c].map(lambda v: json.dumps(json_safe(v), ensure_ascii=False) if isinstance(v, dict | list | tuple) else v)
    return out


@dataclass(frozen=True)
class Result:
    """Base of every result (see module docstring)."""

    record: Mapping[str, Any] = field(repr=False)
    metadata: Mapping[str, Any] = field(repr=False)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result's DataFrames by field name (None fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), pd.DataFrame)}

    def units(self, table: str | None = None) -> dict[str, str]:
        """Unit of each column of ``table`` (default: the first table), from the column names."""
        t = self.tables()
        df = t[table] if table else next(iter(t.values()))
        return {str(c): unit_of(str(c)) for c in df.columns}

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.record)
        out.setdefault("metadata", dict(self.metadata))
        return json_safe(out)

    def to_excel(self, path: str | Path) -> Path:
        p = Path(path)
        meta = {k: v for k, v in self.metadata.items() if k != "probability_model"}
        write_atomic(p, xlsx_bytes({k: _sheet(v) for k, v in self.tables().items()}, meta))
        return p

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape[0]} rows" for k, v in self.tables().items())
        return f"{type(self).__name__}({shapes}; data {self.metadata.get('data_version', '?')})"


@dataclass(frozen=True, repr=False)
class AssessmentResult(Result):
    """Priority minerals: one row per commodity, ranked (``rank``, ``score``, ``chokepoint_stage``, ...)."""

    ranking: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True, repr=False)
class ChainResult(Result):
    """A commodity's chain: one row per stage (country shares, HHI, concern share, stage risk) and the chokepoint."""

    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    countries: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def chokepoint(self) -> str:
        return str(self.record.get("chokepoint_stage"))


@dataclass(frozen=True, repr=False)
class SimulationResult(Result):
    """A disruption run: one row per scenario and perspective (losses in USD, price ratios, shortfall in t), and
    the monthly bands when asked for."""

    results: pd.DataFrame = field(default_factory=pd.DataFrame)
    paths: pd.DataFrame | None = None


@dataclass(frozen=True, repr=False)
class RiskResult(Result):
    """The risk ranking: probability-weighted consumer loss per commodity, VaR, CVaR, producers' gain, net."""

    ranking: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True, repr=False)
class PortfolioResult(Result):
    """The financing portfolio: selected options, every project's decision and reason, budgets, risk reduction."""

    selected: pd.DataFrame = field(default_factory=pd.DataFrame)
    projects: pd.DataFrame = field(default_factory=pd.DataFrame)
    budgets: pd.DataFrame = field(default_factory=pd.DataFrame)
    risk_reduction: pd.DataFrame = field(default_factory=pd.DataFrame)
    frontier: pd.DataFrame | None = None


@dataclass(frozen=True, repr=False)
class StockpileResult(Result):
    """Stock targets per participant and node (t, USD, days of consumption), and the budgeted programmes."""

    stocks: pd.DataFrame = field(default_factory=pd.DataFrame)
    budget_plans: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True, repr=False)
class DeliveryResult(Result):
    """The delivery programme: per buyer (demand, delivered, short), per project, and the monthly allocation."""

    buyers: pd.DataFrame = field(default_factory=pd.DataFrame)
    projects: pd.DataFrame = field(default_factory=pd.DataFrame)
    allocation: pd.DataFrame = field(default_factory=pd.DataFrame)
    not_supplying: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True, repr=False)
class MatchResult(Result):
    """Supplier-buyer matching: the chosen pairs with their scores and reasons, every compatible candidate pair,
    the needs left unmatched and the pairs refused (with the reason)."""

    matches: pd.DataFrame = field(default_factory=pd.DataFrame)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    unmatched_needs: pd.DataFrame = field(default_factory=pd.DataFrame)
    refused: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True, repr=False)
class BriefResult(Result):
    """The rapid-response brief of a new event (``critmin respond``); ``record`` is brief.json."""

    impact: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True, repr=False)
class PlanResult(Result):
    """The coordinated plan (plan.json is ``record``; ``summary`` the executive answer) and one table per part.

    Reads like the plan.json record too (``plan["summary"]``), for code written against the record."""

    priority_minerals: pd.DataFrame = field(default_factory=pd.DataFrame)
    scenarios: pd.DataFrame = field(default_factory=pd.DataFrame)
    portfolio: pd.DataFrame = field(default_factory=pd.DataFrame)
    stockpiles: pd.DataFrame = field(default_factory=pd.DataFrame)
    deliveries: pd.DataFrame = field(default_factory=pd.DataFrame)
    matches: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.record["summary"])

    def __getitem__(self, key: str) -> Any:
        return self.record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.record)

    def keys(self) -> Any:
        return self.record.keys()

    def to_excel(self, path: str | Path) -> Path:
        """The plan's own workbook (the executive answer first, formatted tables), as ``critmin plan`` writes it."""
        from critmin.report.writers import xlsx_plan

        p = Path(path)
        write_atomic(p, xlsx_plan(dict(self.record)))
        return p
