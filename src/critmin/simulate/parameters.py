"""Model parameters as data: defaults with sources or marked assumptions, uncertainty ranges, user overrides.

The table (``critmin/simulate/data/parameters.csv``) has one row per (name, scope). Scopes, most specific
first: ``node:<commodity>/<stage>``, ``commodity:<id>``, ``group:<group>``, ``*``. A user file with the same
columns replaces rows with the same (name, scope) and may add new scopes; ``--param NAME=VALUE`` fixes a
parameter everywhere (scope ``*``, no uncertainty).

Sampling is by inverse transform of uniforms: uniform ``low + u (high - low)``; triangular
``(low, mode = value, high)``; fixed ``value``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from critmin.errors import CritminError, Problem

COLUMNS = ["name", "scope", "value", "low", "high", "distribution", "unit", "kind", "source", "year", "url", "note"]
DISTRIBUTIONS = ("uniform", "triangular", "fixed")
KINDS = ("sourced", "assumption", "computed")

#: Parameters sampled per node and draw (the Monte Carlo dimensions), with their admissible range.
SAMPLED: dict[str, tuple[float, float]] = {
    "elasticity_demand": (-5.0, -1e-6),
    "elasticity_demand_long": (-5.0, -1e-6),
    "substitution_months": (1.0, 240.0),
    "elasticity_supply": (0.0, 5.0),
    "spare_capacity": (0.0, 5.0),
    "ramp_months": (0.0, 120.0),
    "leakage": (0.0, 1.0),
    "leakage_world": (0.0, 1.0),
    "restrictor_export_share": (0.0, 1.0),
    "inventory_months": (0.0, 1000.0),
    "stock_adjustment": (0.0, 1.0),
    "stock_half_cover_months": (0.01, 120.0),
    "hoarding_targeted": (0.0, 10.0),
    "hoarding_restrictor": (0.0, 10.0),
    "price_transmission": (0.0, 1.0),
    "downstream_value_multiple": (0.0, 5000.0),
    "max_price_ratio": (1.0, 1000.0),
    "demand_substitution_share": (0.0, 1.0),
}
#: Settings: the ``value`` column is used and a range is documentation only, except ``licence_denial``,
#: whose [low, high] is the uniform range of the withheld share of licence/quota scenarios without one.
SETTINGS: dict[str, tuple[float, float]] = {
    "licence_denial": (0.0, 1.0),
    "restraint_loss_fraction": (0.0, 1.0),
    "substitution_loss_fraction": (0.0, 1.0),
    "price_cut_output_fraction": (0.0, 1.0),
    "upper_bound_share_point": (0.0, 1.0),
    "in_force_horizon_months": (1.0, 120.0),
    "prior_strength_pair_years": (0.0, 1e6),
    "prior_strength_regime_years": (0.0, 1e6),
    "base_rate_restriction": (0.0, 1.0),
    "suspended_control_probability": (0.0, 1.0),
    "derived_demand_reference_multiple": (1.0, 1e6),
}


#: The settings that value the tonnes not consumed (docs/simulation.md §7): read together wherever a run is set up
#: from a parameter table (the back-test re-reads them from its calibrated table).
VALUATION_SETTINGS = ("restraint_loss_fraction", "substitution_loss_fraction", "price_cut_output_fraction")
#: The settings of the derived-demand rule (docs/simulation.md §4.2; its share κ_s is sampled), read with the valuation settings.
DEMAND_SETTINGS = ("derived_demand_reference_multiple",)


class ParameterError(CritminError):
    """Invalid parameter table or override."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("invalid parameters:\n  " + "\n  ".join(str(p) for p in problems))


@dataclass(frozen=True)
class ParamSpec:
    """One resolved parameter for one node."""

    name: str
    value: float
    low: float
    high: float
    distribution: str
    kind: str
    scope: str
    source: str

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF at uniforms ``u``."""
        lo, hi, m = self.low, self.high, self.value
        if self.distribution == "fixed" or hi <= lo:
            return np.full(np.shape(u), m, dtype=float)
        if self.distribution == "uniform":
            return lo + u * (hi - lo)
        c = (m - lo) / (hi - lo)
        return np.where(u < c, lo + np.sqrt(u * (hi - lo) * (m - lo)), hi - np.sqrt((1 - u) * (hi - lo) * (hi - m)))


def default_parameter_file() -> Path:
    return Path(str(resources.files("critmin.simulate").joinpath("data/parameters.csv")))


def _num(v: object) -> float:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan
    return x if np.isfinite(x) else np.nan  # '1e999' or a 5,000-digit number is no number (reported as such)


def read_parameter_file(path: str | Path) -> pd.DataFrame:
    """Read and validate a parameter table; errors name the file, line and field."""
    p = Path(path)
    if not p.is_file():
        raise ParameterError([Problem(str(p), None, None, "not a file" if p.exists() else "file not found")])
    from critmin.atlas.schema import read_csv_strict

    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParameterError([Problem(str(p), None, None, f"not a readable UTF-8 CSV file: {exc}")]) from exc
    # every row must have the header's fields and the file its final newline: a truncated row is refused
    header, records, problems = read_csv_strict(text.replace("\r\n", "\n"), str(p))
    if problems:
        raise ParameterError(problems)
    df = pd.DataFrame(records, columns=header, dtype=str)
    return check_parameter_table(df, str(p))


def check_parameter_table(df: pd.DataFrame, where: str, first_line: int = 2) -> pd.DataFrame:
    """Validate a parameter table of strings (the CSV's columns; ``name``, ``scope``, ``value`` required) and
    return it with every column of ``COLUMNS``; problems name ``where``, the row (``first_line`` for the
    first row: 2 in a CSV file under its header) and the field. Missing cells are blanks."""
    df = df.fillna("").astype(str)
    missing = [c for c in ("name", "scope", "value") if c not in df.columns]
    if missing:
        raise ParameterError([Problem(where, first_line - 1, c, "required column is missing") for c in missing])
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = ""
    problems: list[Problem] = []
    known = {**SAMPLED, **SETTINGS}
    for i, r in enumerate(df.to_dict("records")):
        line = i + first_line
        name = r["name"].strip()
        if name not in known:
            problems.append(Problem(where, line, "name", f"unknown parameter '{name}'; known: {', '.join(sorted(known))}"))
            continue
        scope = r["scope"].strip()
        if not (scope == "*" or scope.split(":", 1)[0] in ("group", "commodity", "node") and ":" in scope):
            problems.append(Problem(where, line, "scope", f"'{scope}' is not *, group:<g>, commodity:<id> or node:<id>/<stage>"))
        dist = r["distribution"].strip() or "fixed"
        if dist not in DISTRIBUTIONS:
            problems.append(Problem(where, line, "distribution", f"'{dist}' is not one of {DISTRIBUTIONS}"))
        kind = r["kind"].strip()
        if kind and kind not in KINDS:
            problems.append(Problem(where, line, "kind", f"'{kind}' is not one of {KINDS}"))
        v, lo, hi = _num(r["value"]), _num(r["low"]), _num(r["high"])
        if kind == "computed" and name != "base_rate_restriction" and not np.isfinite(v):
            problems.append(Problem(where, line, "value", f"only base_rate_restriction may be left blank (computed); {name} needs a number"))
            continue
        if kind != "computed" and not np.isfinite(v):
            problems.append(Problem(where, line, "value", f"'{r['value']}' is not a number"))
            continue
        a, b = known[name]
        for fld, x in (("value", v), ("low", lo), ("high", hi)):
            if np.isfinite(x) and not a <= x <= b:
                problems.append(Problem(where, line, fld, f"{name} = {x:g} is outside [{a:g}, {b:g}]"))
        if dist != "fixed":
            if not (np.isfinite(lo) and np.isfinite(hi)):
                problems.append(Problem(where, line, "low", f"a {dist} distribution needs low and high"))
            elif not lo <= (v if np.isfinite(v) else lo) <= hi:
                problems.append(Problem(where, line, "value", f"low <= value <= high fails ({lo:g}, {v:g}, {hi:g})"))
    keys = list(zip(df["name"].str.strip(), df["scope"].str.strip(), strict=True))
    seen: dict[tuple[str, str], int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            problems.append(Problem(where, i + first_line, "scope", f"duplicate row for ({k[0]}, {k[1]}), first on line {seen[k]}"))
        else:
            seen[k] = i + first_line
    if problems:
        raise ParameterError(problems)
    df["name"] = df["name"].str.strip()
    df["scope"] = df["scope"].str.strip()
    df["distribution"] = df["distribution"].str.strip().replace("", "fixed")
    return df[COLUMNS].reset_index(drop=True)


class Parameters:
    """A parameter table with resolution per node and overrides."""

    def __init__(self, table: pd.DataFrame, origin: str = "bundled"):
        self.table = table.reset_index(drop=True)
        self.origin = origin
        self._rows: dict[tuple[str, str], dict[str, object]] = {
            (str(r["name"]), str(r["scope"])): r for r in self.table.to_dict("records")
        }

    @classmethod
    def load(cls, override: str | Path | None = None, fixed: Mapping[str, float] | None = None) -> Parameters:
        """Bundled defaults, then the rows of ``override`` (same columns), then ``fixed`` NAME=VALUE pairs."""
        base = read_parameter_file(default_parameter_file())
        origin = "bundled"
        if override is not None:
            extra = read_parameter_file(override)
            key = set(zip(extra["name"], extra["scope"], strict=True))
            base = base[[k not in key for k in zip(base["name"], base["scope"], strict=True)]]
            base = pd.concat([base, extra], ignore_index=True)
            origin += f" + {Path(override).name}"
        for name, v in (fixed or {}).items():
            known = {**SAMPLED, **SETTINGS}
            if name not in known:
                raise ParameterError([Problem("--param", None, name, f"unknown parameter; known: {', '.join(sorted(known))}")])
            a, b = known[name]
            if not a <= v <= b:
                raise ParameterError([Problem("--param", None, name, f"{v:g} is outside [{a:g}, {b:g}]")])
            base = base[base["name"] != name]
            row = dict.fromkeys(COLUMNS, "")
            row.update(name=name, scope="*", value=str(v), low=str(v), high=str(v), distribution="fixed", kind="assumption", source="user override (--param)")
            base = pd.concat([base, pd.DataFrame([row])], ignore_index=True)
            origin += f" + {name}={v:g}"
        return cls(base, origin)

    @property
    def sha256(self) -> str:
        """SHA-256 of the table as CSV: what outputs record, and what tells two parameter sets apart."""
        return hashlib.sha256(self.table.to_csv(index=False).encode()).hexdigest()

    def with_rows(self, rows: pd.DataFrame, label: str) -> Parameters:
        """These parameters with the rows of ``rows`` (strings, checked as by :func:`check_parameter_table`;
        problems name ``label`` and the row, 0 for the first) replacing the rows with the same (name, scope),
        as an override file does."""
        extra = check_parameter_table(rows, label, first_line=0)
        key = set(zip(extra["name"], extra["scope"], strict=True))
        base = self.table[[k not in key for k in zip(self.table["name"], self.table["scope"], strict=True)]]
        return Parameters(pd.concat([base, extra], ignore_index=True), f"{self.origin} + {label}")

    def resolve(self, name: str, commodity: str = "", stage: str = "", group: str = "") -> ParamSpec:
        """Most specific row for a node: node, commodity, group, then ``*``."""
        for scope in (f"node:{commodity}/{stage}", f"commodity:{commodity}", f"group:{group}", "*"):
            r = self._rows.get((name, scope))
            if r is not None:
                v, lo, hi = _num(r["value"]), _num(r["low"]), _num(r["high"])
                dist = str(r["distribution"])
                if dist == "fixed" or not (np.isfinite(lo) and np.isfinite(hi)):
                    lo = hi = v
                    dist = "fixed"
                return ParamSpec(name, v, lo, hi, dist, str(r["kind"]), scope, str(r["source"]))
        raise ParameterError([Problem(self.origin, None, name, "no default row (scope '*') for this parameter")])

    def check_scopes(self, commodities: set[str], groups: set[str], nodes: set[str], first_line: int | None = None) -> None:
        """Every scope names a known commodity, group or node (a typo would otherwise do nothing); problems
        name the row when ``first_line`` (the first row's number) is given."""
        problems = []
        for i, r in enumerate(self.table.to_dict("records")):
            kind, _, what = str(r["scope"]).partition(":")
            known = {"commodity": commodities, "group": groups, "node": nodes}.get(kind)
            if known is not None and what not in known:
                line = None if first_line is None else i + first_line
                problems.append(Problem(self.origin, line, "scope", f"{r['name']}: unknown {kind} '{what}'"))
        if problems:
            raise ParameterError(problems)

    def setting(self, name: str) -> float:
        return self.resolve(name).value

    def records(self) -> list[dict[str, object]]:
        """The table as records (recorded in outputs)."""
        return [{k: r[k] for k in COLUMNS} for r in self.table.to_dict("records")]
