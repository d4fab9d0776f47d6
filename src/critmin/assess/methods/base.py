"""Plug-in interface of criticality methods.

A method is an object with a ``name``, a ``title``, a ``citation``, documented ``parameters`` (defaults the
user can override) and ``score(ctx, commodity_id) -> MethodScore``. Register new methods with
:func:`register`. Each method reports the chokepoint: the stage whose risk term is largest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from critmin.assess.exposure import Reliance, import_sourcing, participants_of, perspective_reliance
from critmin.assess.supply import governance, stage_metrics, stage_shares_table
from critmin.atlas.model import Atlas
from critmin.errors import MethodError


@dataclass(frozen=True)
class Parameter:
    """A named modelling assumption with its default, unit, and where the default comes from."""

    name: str
    default: float
    unit: str
    description: str
    source: str = "assumption (critmin default; override with --param)"


@dataclass
class MethodScore:
    score: float | None
    chokepoint_stage: str | None
    stage_scores: dict[str, float] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    source_ids: list[str] = field(default_factory=list)


class AssessmentContext:
    """Everything a method needs for one perspective and year, computed once and shared across commodities."""

    def __init__(self, atlas: Atlas, perspective: str, year: int = 2024):
        self.atlas = atlas
        self.perspective = perspective.upper()
        self.members = participants_of(atlas, self.perspective)
        self.year = year
        self.shares = stage_shares_table(atlas, year)
        self.metrics = stage_metrics(atlas, year, self.shares)
        self.gov = governance(atlas)
        self._metric_index = {(r.commodity_id, r.stage): r for r in self.metrics.itertuples(index=False)}
        self._shares_by_node = {k: g for k, g in self.shares.groupby(["commodity_id", "stage"])}
        self._reliance: dict[str, Reliance] = {}

    def nodes(self, commodity_id: str) -> list[tuple[str, str]]:
        """The commodity's own stages that have share data: where its score and chokepoint come from.

        Downstream products (lithium -> battery cathode) are not among them: they are commodities with their own
        rows and scores, and only part of the mineral's use flows to them (about 1 % of U.S. manganese goes into
        cathodes), so taking their concentration as the mineral's would count one chokepoint twice and name a
        product the mineral's buyers do not buy. They are reported by :meth:`downstream_nodes`.
        """
        return [n for n in self.atlas.chain_nodes(commodity_id) if n[0] == commodity_id and n in self._metric_index]

    def downstream_nodes(self, commodity_id: str) -> list[tuple[str, str]]:
        """Products downstream of the commodity (other commodities of its chain) that have share data."""
        return [n for n in self.atlas.chain_nodes(commodity_id) if n[0] != commodity_id and n in self._metric_index]

    def all_nodes(self, commodity_id: str) -> list[tuple[str, str]]:
        return self.atlas.chain_nodes(commodity_id)

    def metric(self, node: tuple[str, str]) -> Any:
        return self._metric_index.get(node)

    def node_shares(self, node: tuple[str, str]) -> pd.Series:
        g = self._shares_by_node.get(node)
        if g is None:
            return pd.Series(dtype=float)
        return g.groupby("country_iso3")["share"].sum()

    def reliance(self, commodity_id: str) -> Reliance:
        if commodity_id not in self._reliance:
            self._reliance[commodity_id] = perspective_reliance(self.atlas, self.perspective, commodity_id, self.year)
        return self._reliance[commodity_id]

    def sourcing(self, commodity_id: str) -> tuple[pd.Series, str, list[str], bool] | None:
        """Import shares of the perspective (fractions by partner); BLOC averages participants' tables.

        For the BLOC, imports from one participant to another are domestic and are dropped; participants are
        given equal weights (their import volumes are not in the atlas) - flagged as a proxy.
        """
        found = [(iso, import_sourcing(self.atlas, iso, commodity_id)) for iso in self.members]
        found = [(iso, f) for iso, f in found if f is not None]
        if not found:
            return None
        if len(self.members) == 1:
            s, basis, src = found[0][1]  # type: ignore[misc]
            return s, basis, src, False
        members = set(self.members)
        parts = [f[0][~f[0].index.isin(list(members))] for _, f in found]  # type: ignore[index]
        mean = pd.concat(parts, axis=1).fillna(0.0).sum(axis=1) / len(parts)
        basis = "; ".join(f[1] for _, f in found)  # type: ignore[index]
        missing = members - {iso for iso, _ in found}
        note = f"proxy: equal-weight mean of participants' import tables ({basis})"
        if missing:
            note += f"; no import table for {', '.join(sorted(missing))}"
        return mean.sort_values(ascending=False), note, sorted({s for _, f in found for s in f[2]}), True  # type: ignore[index]

    def wgi(self, isos: pd.Index) -> np.ndarray:
        median = float(np.nanmedian(self.gov["wgi_scaled"]))
        return isos.map(self.gov["wgi_scaled"]).to_numpy(dtype=float, na_value=median)

    def instability(self, isos: pd.Index) -> np.ndarray:
        median = float(np.nanmedian(self.gov["instability"]))
        return isos.map(self.gov["instability"]).to_numpy(dtype=float, na_value=median)


class Method:
    """Base class: subclasses set the class attributes and implement :meth:`score`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()

    def __init__(self, overrides: Mapping[str, float] | None = None):
        known = {p.name: p for p in self.parameters}
        self.params: dict[str, float] = {p.name: p.default for p in self.parameters}
        for k, v in (overrides or {}).items():
            if k not in known:
                raise MethodError(f"method '{self.name}' has no parameter '{k}'; parameters: {sorted(known)}")
            self.params[k] = float(v)

    def score(self, ctx: AssessmentContext, commodity_id: str) -> MethodScore:  # pragma: no cover - abstract
        raise NotImplementedError

    # shared helper: reliance with the documented fallback
    def exposure(self, ctx: AssessmentContext, commodity_id: str, flags: list[str]) -> tuple[float, Reliance]:
        rel = ctx.reliance(commodity_id)
        if rel.value is None:
            flags.append(f"import reliance unknown ({rel.basis}): assumed {self.params['missing_reliance']:g}")
            return self.params["missing_reliance"], rel
        if rel.proxy or "inferred" in rel.basis:
            flags.append(f"import reliance {rel.basis}")
        return float(rel.value), rel


MISSING_RELIANCE = Parameter(
    "missing_reliance",
    1.0,
    "fraction",
    "Import reliance assumed where the atlas has none for the perspective (1 = fully import-reliant, the "
    "conservative choice); every such use is flagged in the output",
)

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, overrides: Mapping[str, float] | None = None) -> Method:
    if name not in METHODS:
        raise MethodError(f"unknown method '{name}'; available: {sorted(METHODS)}")
    return METHODS[name](overrides)
