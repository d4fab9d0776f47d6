"""Named cross-table consistency checks (PyPSA-style). Each returns a list of problems."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from critmin.errors import Problem

#: Tolerance (percentage points) on the sum of shares of one group; published shares are rounded.
SHARE_SUM_TOLERANCE_PCT = 2.0


def _line(frame: pd.DataFrame, idx: int) -> int:
    return int(idx) + 2


def check_production_units(t: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """All rows of one (commodity, stage, series, measure) must share one unit."""
    p = t["production"]
    out = []
    n_units = p.groupby(["commodity_id", "stage", "series", "measure"], sort=False)["unit"].transform("nunique")
    for idx in np.flatnonzero(n_units.to_numpy() > 1)[:20]:
        r = p.iloc[idx]
        out.append(
            Problem(
                "production.csv",
                _line(p, idx),
                "unit",
                f"unit mismatch: '{r['unit']}' differs from other rows of {r['commodity_id']}/{r['stage']}/{r['series']}",
            )
        )
    return out


def check_entity_country(t: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Country rows name a country; aggregate rows do not."""
    out = []
    for name in ("production", "country_aliases"):
        f = t[name]
        bad = (f["entity"] == "country") & (f["country_iso3" if name == "production" else "iso3"] == "")
        for idx in np.flatnonzero(bad.to_numpy())[:20]:
            out.append(Problem(f"{name}.csv", _line(f, idx), "country_iso3", "country row without an ISO3 code"))
    return out


def check_share_sums(t: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Shares of one group (same source, product, year, kind) must not add up to more than 100 %."""
    out = []
    groups = {
        "stage_shares": ["commodity_id", "stage", "product", "share_kind", "year", "source_id"],
        "import_sources": ["importer_iso3", "commodity_id", "form", "period", "source_id"],
    }
    for name, keys in groups.items():
        f = t[name]
        exact = f[f["bound"].isin(["", "approx"])] if "bound" in f else f
        sums = exact.groupby(keys, sort=False)["share_pct"].transform("sum")
        for idx in exact.index[(sums > 100 + SHARE_SUM_TOLERANCE_PCT).to_numpy()][:20]:
            out.append(
                Problem(f"{name}.csv", _line(f, idx), "share_pct", f"shares of this group add up to {sums.loc[idx]:.1f} % (> 100 %)")
            )
    return out


def check_us_trade_units(t: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """One commodity/form keeps one unit across years."""
    f = t["us_trade"]
    out = []
    n = f.groupby(["commodity_id", "form"], sort=False)["unit"].transform("nunique")
    for idx in np.flatnonzero(n.to_numpy() > 1)[:20]:
        out.append(Problem("us_trade.csv", _line(f, idx), "unit", "unit mismatch across years of one commodity/form"))
    return out


def check_chain_links(t: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Chain links join stages that exist."""
    nodes = set(zip(t["stages"]["commodity_id"], t["stages"]["stage"], strict=True))
    f = t["chain_links"]
    out = []
    for idx, r in f.iterrows():
        for side in ("from", "to"):
            if (r[f"{side}_commodity"], r[f"{side}_stage"]) not in nodes:
                out.append(
                    Problem(
                        "chain_links.csv",
                        _line(f, int(idx)),
                        f"{side}_stage",
                        f"no stage {r[f'{side}_commodity']}/{r[f'{side}_stage']} in stages.csv",
                    )
                )
    return out


def check_event_scenarios(t: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Event scenarios name an existing event (its country and source), an existing stage node, valid targets
    and a withheld range with low <= best <= high."""
    ev = t["events"].set_index("event_id")
    nodes = set(zip(t["stages"]["commodity_id"], t["stages"]["stage"], strict=True))
    known = set(t["countries"]["iso3"])
    f = t["event_scenarios"]
    out: list[Problem] = []

    def add(idx: int, field: str, message: str) -> None:
        if len(out) < 20:
            out.append(Problem("event_scenarios.csv", _line(f, idx), field, message))

    for idx, r in enumerate(f.itertuples(index=False)):
        if r.event_id not in ev.index:
            add(idx, "event_id", f"unknown event '{r.event_id}' (not in events.csv)")
        else:
            if r.restrictor_iso3 != ev.at[r.event_id, "country_iso3"]:
                add(idx, "restrictor_iso3", f"'{r.restrictor_iso3}' is not the country of event {r.event_id}")
            if r.source_id != ev.at[r.event_id, "source_id"]:
                add(idx, "source_id", f"'{r.source_id}' is not the source of event {r.event_id}")
        if (r.commodity_id, r.stage) not in nodes:
            add(idx, "stage", f"no stage {r.commodity_id}/{r.stage} in stages.csv")
        if r.targets != "WORLD" and any(c not in known for c in str(r.targets).split(";")):
            add(idx, "targets", f"targets '{r.targets}' must be WORLD or ';'-separated ISO3 codes")
        if not r.withheld_low <= r.withheld_share <= r.withheld_high:
            add(idx, "withheld_share", "need withheld_low <= withheld_share <= withheld_high")
    return out


CHECKS: tuple[Callable[[Mapping[str, pd.DataFrame]], list[Problem]], ...] = (
    check_production_units,
    check_entity_country,
    check_share_sums,
    check_us_trade_units,
    check_chain_links,
    check_event_scenarios,
)


def check_consistency(tables: Mapping[str, pd.DataFrame]) -> list[Problem]:
    """Run every named check; returns all problems found."""
    out: list[Problem] = []
    for check in CHECKS:
        out += check(tables)
    return out
