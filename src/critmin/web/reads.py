"""The atlas reads the dashboard makes (priority minerals, supply maps, chains, vulnerabilities, the scenario
library), each computed once and kept, with its serialised JSON, by the :class:`AtlasReads` of one workspace.

The atlas does not change while a server runs, so nothing here expires; the caches belong to the workspace
(never module-level), so two workspaces with different atlases in one process never answer from each other's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fastapi import Response
from starlette.concurrency import run_in_threadpool

#: Bounds on the serialised answers kept (query combinations of the cached reads: methods x perspectives x top,
#: nodes, chains, library pages of up to ~0.3 MB); past either the store is cleared and refilled on demand.
JSON_MAX_ENTRIES = 2000
JSON_MAX_BYTES = 64 * 2**20


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (the form every cached answer is stored in)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class AtlasReads:
    """The cached reads of one workspace's atlas. ``atlas`` and ``sim`` are fetched through callables so the
    (slow to build) simulator is built at first use, not when the app starts."""

    def __init__(self, sim: Callable[[], Any]):
        self._sim = sim
        self._values: dict[tuple[Any, ...], Any] = {}
        self._json: dict[tuple[Any, ...], bytes] = {}
        self._json_bytes = 0
        self._lock = threading.Lock()

    @property
    def atlas(self) -> Any:
        return self._sim().atlas

    # ---------------------------------------------------------------------------------------- answers
    async def answer(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Response:
        """The JSON response of ``build()`` under ``key``: from memory when kept, else built in a worker thread
        (never on the event loop) and kept."""
        body = self._json.get(key)
        if body is None:
            body = await run_in_threadpool(self._build_json, key, build)
        return Response(body, media_type="application/json")

    def _build_json(self, key: tuple[Any, ...], build: Callable[[], Any]) -> bytes:
        body = self._json.get(key)
        if body is None:
            body = dumps(build())
            with self._lock:
                if len(self._json) >= JSON_MAX_ENTRIES or self._json_bytes + len(body) > JSON_MAX_BYTES:
                    self._json.clear()
                    self._json_bytes = 0
                if key not in self._json:
                    self._json[key] = body
                    self._json_bytes += len(body)
        return body

    def _kept(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """``build()`` once per key (a value many answers derive from, such as the stage-shares table)."""
        if key not in self._values:
            value = build()
            with self._lock:
                self._values.setdefault(key, value)
        return self._values[key]

    # ---------------------------------------------------------------------------------------- values
    def priority(self, method: str, perspective: str) -> list[dict[str, Any]]:
        """The study's ranking (``Study.assess(perspective, method)``) as records, best first."""
        from critmin.study import Study
        from critmin.web.values import jsonable

        return self._kept(("priority", method, perspective),
                          lambda: jsonable(Study.from_parts(self.atlas).assess(perspective, method).ranking.to_dict("records")))

    def shares(self) -> Any:
        """The stage-shares table (country share of world supply at every commodity-stage node)."""
        from critmin.assess.supply import stage_shares_table

        return self._kept(("shares",), lambda: stage_shares_table(self.atlas))

    def nodes(self) -> list[dict[str, Any]]:
        """Commodity-stage nodes with country shares: commodity, stage, name, number of countries."""
        def build() -> list[dict[str, Any]]:
            g = self.shares().groupby(["commodity_id", "stage"], sort=True).size().reset_index(name="countries")
            names = self.commodity_names()
            return [{"commodity": r.commodity_id, "stage": r.stage, "name": names.get(r.commodity_id, r.commodity_id), "countries": int(r.countries)}
                    for r in g.itertuples()]
        return self._kept(("nodes",), build)

    def commodity_names(self) -> dict[str, str]:
        a = self.atlas
        return self._kept(("names",), lambda: dict(zip(a.commodities["commodity_id"], a.commodities["name"], strict=True)))

    def supply(self, commodity: str, stage: str) -> list[dict[str, Any]]:
        """Country shares at one node with basis, bound, year and source."""
        from critmin.web.values import jsonable

        def build() -> list[dict[str, Any]]:
            sh = self.shares()
            g = sh[(sh["commodity_id"] == commodity) & (sh["stage"] == stage)]
            cite = self.citations()
            return jsonable([{**r, "source": cite.get(str(r["source_id"]), {"title": str(r["source_id"]), "url": ""})}
                             for r in g[["country_iso3", "share", "basis", "bound", "year", "source_id"]].to_dict("records")])
        return self._kept(("supply", commodity, stage), build)

    def citations(self) -> dict[str, dict[str, str]]:
        """Source id -> what a reader cites: organisation, title, year and link (the dashboard shows these, not ids)."""
        def build() -> dict[str, dict[str, str]]:
            src = self.atlas.tables["sources"]
            return {str(r["source_id"]): {"id": str(r["source_id"]), "title": f"{r['organisation']}: {r['title']} ({r['year']})".replace(" (nan)", ""),
                                          "url": str(r["url"]) if str(r["url"]).startswith(("http://", "https://")) else ""}
                    for r in src.to_dict("records")}
        return self._kept(("citations",), build)

    def chains(self) -> list[str]:
        return self._kept(("chains",), lambda: sorted(str(c) for c in self.atlas.chain_links["chain_id"].unique()))

    def sankey(self, chain_id: str) -> dict[str, Any] | None:
        """The plotly Sankey figure of one chain (report.writers), or None for an unknown chain or one without shares."""
        from critmin.report.writers import sankey_figure as sankey_fig

        if chain_id not in set(self.chains()):  # before the cache: it keeps only the atlas's chains
            return None

        def build() -> dict[str, Any] | None:
            fig = sankey_fig(self.atlas, chain_id)
            return None if fig is None else json.loads(fig.to_json())
        return self._kept(("sankey", chain_id), build)

    def vulnerabilities(self) -> list[dict[str, Any]]:
        """``stage_metrics`` of every node, with the commodity's name and ``chokepoint`` (critmin method, BLOC)."""
        from critmin.assess.supply import stage_metrics
        from critmin.web.values import jsonable

        def build() -> list[dict[str, Any]]:
            choke = {r["commodity"]: r["chokepoint_stage"] for r in self.priority("critmin", "BLOC")}
            names = self.commodity_names()
            rows = jsonable(stage_metrics(self.atlas, shares=self.shares()).to_dict("records"))
            cite = self.citations()
            return [{**r, "name": names.get(r["commodity_id"], r["commodity_id"]), "chokepoint": choke.get(r["commodity_id"]) == r["stage"],
                     "sources": [cite.get(i, {"title": i, "url": ""}) for i in str(r.get("source_ids") or "").split(";") if i]}
                    for r in rows]
        return self._kept(("vulnerabilities",), build)

    def chain_nodes(self, chain_id: str) -> list[dict[str, Any]]:
        """Nodes of one chain ordered by ``step``, the longest path of links leading to the node (then commodity,
        stage); empty for an unknown chain."""
        if chain_id not in set(self.chains()):  # before the cache: it keeps only the atlas's chains
            return []

        def build() -> list[dict[str, Any]]:
            from critmin.atlas.schema import STAGE_ORDER

            links = self.atlas.chain_links
            edges = [((str(r.from_commodity), str(r.from_stage)), (str(r.to_commodity), str(r.to_stage)))
                     for r in links[links["chain_id"] == chain_id].itertuples()]
            step = {n: 0 for e in edges for n in e}
            for _ in range(len(step)):  # longest path in a DAG by relaxation (bounded: a cycle cannot loop forever)
                changed = False
                for a, b in edges:
                    if step[b] < step[a] + 1:
                        step[b], changed = step[a] + 1, True
                if not changed:
                    break
            names = self.commodity_names()
            order = sorted(step, key=lambda n: (step[n], n[0], STAGE_ORDER.get(n[1], 99), n[1]))
            return [{"commodity": c, "stage": st, "name": names.get(c, c), "step": step[(c, st)]} for c, st in order]
        return self._kept(("chain_nodes", chain_id), build)

    def parameters(self) -> dict[str, Any]:
        """The model parameter table the runs use (rows with value, range, distribution, unit, kind, source,
        year, url, note) and each name's admissible range and role (sampled per draw, or a setting)."""
        from critmin.simulate.parameters import SAMPLED, SETTINGS
        from critmin.web.values import jsonable

        def build() -> dict[str, Any]:
            sim = self._sim()
            names = [{"name": n, "role": role, "min": lo, "max": hi} for role, table in (("sampled", SAMPLED), ("setting", SETTINGS))
                     for n, (lo, hi) in table.items()]
            return {"origin": sim.params.origin, "names": jsonable(names), "rows": jsonable(sim.params.records())}
        return self._kept(("parameters",), build)

    def blocs(self) -> dict[str, Any]:
        """Bloc membership of the atlas (participants, like-minded partners, countries of concern), the blocs a
        run may replace, and the countries (ISO3, name) a membership may name."""
        from critmin.web.values import RUN_BLOCS

        def build() -> dict[str, Any]:
            c = self.atlas.countries
            return {"blocs": self.atlas.bloc_members(), "run_blocs": list(RUN_BLOCS),
                    "countries": [{"iso3": str(i), "name": str(n)} for i, n in sorted(zip(c["iso3"], c["name"], strict=True))]}
        return self._kept(("blocs",), build)

    def library(self) -> list[dict[str, Any]]:
        """The scenario library (events and generated scenarios), one summary row each."""
        def build() -> list[dict[str, Any]]:
            return [{"id": s.id, "title": s.title, "commodity": s.commodity, "stage": s.stage, "restrictors": s.restrictors,
                     "targets": s.targets, "regime": s.regime, "duration_months": s.duration_months, "family": s.family,
                     "status": s.status} for s in self._sim().library()]
        return self._kept(("library",), build)


# Reads that do not depend on the atlas: the same in every workspace of the process.
@lru_cache(maxsize=1)
def methods() -> list[dict[str, Any]]:
    """Criticality methods: name, title, citation."""
    from critmin.assess.methods.base import METHODS

    return [{"name": k, "title": getattr(v, "title", k), "citation": getattr(v, "citation", "")} for k, v in sorted(METHODS.items())]


@lru_cache(maxsize=1)
def agencies() -> list[dict[str, Any]]:
    """The bundled finance agencies, their instruments and budgets."""
    from critmin.portfolio.model import read_agencies
    from critmin.web.values import jsonable

    return jsonable(read_agencies().to_dict("records"))


@lru_cache(maxsize=1)
def plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@lru_cache(maxsize=1)
def topojson() -> bytes:
    from critmin.report.writers import world_topojson

    return world_topojson().encode("utf-8")
