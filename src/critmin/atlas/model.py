"""The Atlas: the reference data critmin works on, as validated, typed tables.

Definitions (countries, commodities, stages, blocs, sources) and numeric tables (production, shares, trade,
governance) are pandas frames with one row per observation and named columns; each row carries a
``source_id``. The Atlas is immutable: use :meth:`Atlas.with_blocs` to get a copy with other bloc members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import pandas as pd

from critmin.atlas.schema import STAGE_ORDER, TABLE_ORDER
from critmin.errors import AtlasError, Problem

BLOC_IDS = ("participants", "like_minded", "concern")


@dataclass(frozen=True)
class Atlas:
    """Validated atlas tables plus provenance (``data_version``: hash of the table contents)."""

    tables: Mapping[str, pd.DataFrame]
    data_version: str
    path: str
    manifest: Mapping[str, object] = field(default_factory=dict)

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = object.__getattribute__(self, "tables")
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    # ----------------------------------------------------------------- definitions
    def bloc(self, bloc_id: str) -> frozenset[str]:
        """ISO3 members of a bloc (``participants``, ``like_minded``, ``concern``)."""
        b = self.tables["blocs"]
        # kept per blocs table (a bloc is asked for per project and option: 8,900 pandas filters, 4.9 s, in a
        # 2,000-project portfolio); a replaced table (Atlas.with_blocs makes a new atlas) is read afresh
        cache = self.__dict__.setdefault("_bloc_cache", {})
        key = (bloc_id, id(b), len(b))
        if key not in cache:
            cache[key] = frozenset(b.loc[b["bloc_id"] == bloc_id, "iso3"])
        return cache[key]

    def rows_of(self, table: str, keys: tuple[str, ...], values: tuple[object, ...]) -> pd.DataFrame:
        """Rows of ``table`` whose ``keys`` columns equal ``values`` (an empty frame with the columns when none).

        The table is grouped once per atlas and key set: building the simulator's nodes asks for one
        (country, commodity) slice of the production, consumption, trade and import tables about 170 times each,
        and a pandas filter per ask took a second of every simulator build."""
        t = self.tables[table]
        cache = self.__dict__.setdefault("_rows_cache", {})
        ck = (table, keys, id(t), len(t))
        if ck not in cache:
            cache[ck] = ({k: g for k, g in t.groupby(list(keys), sort=False, dropna=False)} if len(t) else {}, t.iloc[0:0])
        groups, empty = cache[ck]
        return groups.get(tuple(values), empty)

    @property
    def participants(self) -> frozenset[str]:
        return self.bloc("participants")

    @property
    def like_minded(self) -> frozenset[str]:
        return self.bloc("like_minded")

    @property
    def concern(self) -> frozenset[str]:
        """Countries of concern (default: the U.S. statutory covered nations CHN, RUS, PRK, IRN)."""
        return self.bloc("concern")

    @property
    def allied(self) -> frozenset[str]:
        """The bloc in the wide sense: participants plus like-minded partners."""
        return self.participants | self.like_minded

    def bloc_members(self) -> dict[str, list[str]]:
        """Members of each bloc, ``{bloc_id: sorted ISO3 codes}`` (recorded in outputs with the data version)."""
        b = self.tables["blocs"]
        return {bloc: sorted(b.loc[b["bloc_id"] == bloc, "iso3"]) for bloc in BLOC_IDS}

    def with_blocs(self, members: Mapping[str, Iterable[str]]) -> Atlas:
        """Copy of the atlas with the given blocs replaced, e.g. ``{"concern": ["CHN", "RUS"]}``.

        Unknown country codes raise :class:`AtlasError`.
        """
        known = set(self.tables["countries"]["iso3"])
        blocs = self.tables["blocs"]
        frames = [blocs[~blocs["bloc_id"].isin(list(members))]]
        problems = []
        for bloc_id, isos in members.items():
            if bloc_id not in BLOC_IDS:
                problems.append(Problem("<blocs>", None, "bloc_id", f"unknown bloc '{bloc_id}'; use one of {BLOC_IDS}"))
                continue
            isos = sorted(set(isos))
            for iso in isos:
                if iso not in known:
                    problems.append(Problem("<blocs>", None, "iso3", f"unknown country '{iso}' in bloc '{bloc_id}'"))
            frames.append(
                pd.DataFrame({"bloc_id": bloc_id, "iso3": isos, "source_id": "user", "note": "set by the user"})
            )
        if problems:
            raise AtlasError(problems)
        new = dict(self.tables)
        new["blocs"] = pd.concat(frames, ignore_index=True)
        return replace(self, tables=new)

    def country_name(self, iso3: str) -> str:
        names = self._country_names()
        return names.get(iso3, iso3)

    def _country_names(self) -> dict[str, str]:
        c = self.tables["countries"]
        return dict(zip(c["iso3"], c["name"], strict=True))

    def commodity_ids(self) -> list[str]:
        return list(self.tables["commodities"]["commodity_id"])

    def commodity_name(self, commodity_id: str) -> str:
        c = self.tables["commodities"]
        hit = c.loc[c["commodity_id"] == commodity_id, "name"]
        return str(hit.iloc[0]) if len(hit) else commodity_id

    def chain_nodes(self, commodity_id: str) -> list[tuple[str, str]]:
        """(commodity, stage) nodes of a commodity's chain: its own stages, then every product downstream.

        Downstream nodes come from ``chain_links``; e.g. rare earths -> NdFeB magnets. Sorted by stage order.
        """
        stages = self.tables["stages"]
        links = self.tables["chain_links"]
        cache = self.__dict__.setdefault("_chain_cache", {})
        ck = (commodity_id, id(stages), len(stages), id(links), len(links))
        if ck in cache:
            return list(cache[ck])
        own = [(commodity_id, s) for s in stages.loc[stages["commodity_id"] == commodity_id, "stage"]]
        seen = set(own)
        frontier = list(own)
        while frontier:
            c, s = frontier.pop()
            hit = links[(links["from_commodity"] == c) & (links["from_stage"] == s)]
            for tc, ts in zip(hit["to_commodity"], hit["to_stage"], strict=True):
                if (tc, ts) not in seen:
                    seen.add((tc, ts))
                    frontier.append((tc, ts))
        cache[ck] = sorted(seen, key=lambda n: (STAGE_ORDER.get(n[1], 99), n[0] != commodity_id, n[0]))
        return list(cache[ck])

    # ----------------------------------------------------------------- events
    def event_scenarios_for(self, event_id: str) -> pd.DataFrame:
        """Scenario rows (affected nodes, targets, withheld fraction) of one export-restriction event.

        An event without rows (e.g. a technology-only export ban) gives an empty frame; an unknown event id
        raises :class:`AtlasError`.
        """
        if event_id not in set(self.tables["events"]["event_id"]):
            raise AtlasError(Problem("<events>", None, "event_id", f"unknown event '{event_id}'"))
        s = self.tables["event_scenarios"]
        return s[s["event_id"] == event_id].reset_index(drop=True)

    def summary(self) -> dict[str, int]:
        """Row count of every table."""
        return {name: len(self.tables[name]) for name in TABLE_ORDER}
