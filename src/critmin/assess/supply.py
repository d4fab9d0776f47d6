"""Country shares of world supply at every commodity-stage node, and their concentration metrics.

Which data a node uses (first that exists, for the latest year up to the reference year):

1. USGS world production tonnage (series marked ``for_shares``);
2. IEA production tonnage (2024 observed; copper, cobalt, lithium, nickel, graphite, magnet rare earths);
3. a published share table (``stage_shares``): observed, not projected, production before capacity, a
   table of the whole node before one of a subset (a product naming one chemistry, e.g. "LFP cathodes"), the
   newest year up to the reference year (the year after only for a node published for no earlier year),
   then the table attributing most of world supply to named countries, verbatim before third-party.

Shares from tonnage are ``q_i / (Σ_countries q + q_other)``; the "other" remainder is never a country.
Published shares name only some countries; the unnamed rest is treated like "other" (coverage < 1).

A country that a node's table leaves in its unnamed rest (IEA's "Rest of world" holds Japan's refined nickel) can
be attributed out of it by a ``stage_shares`` row of kind ``production_in_remainder``: its share ``a`` is added
to the node when the table does not name the country, and is at most the rest, ``a <= 1 - Σ named shares``
(a larger figure is cut to the rest; :func:`remainder_attributions`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from critmin.assess.concentration import hhi, hhi_wgi, top_n_share, wgi_scaled
from critmin.atlas.model import Atlas
from critmin.atlas.schema import STAGE_ORDER

DATASET_PRIORITY = {"usgs_mcs2025": 0, "iea_cmd_2025": 1}
_VERIFICATION_RANK = {"verbatim": 0, "third-party": 1, "computed": 2}
_KIND_RANK = {"production": 0, "capacity": 1}
#: Share kind of a country's production attributed out of a node table's unnamed rest.
REMAINDER_KIND = "production_in_remainder"
#: Dataset label of a published table of capacity shares (used for a node where no production table exists).
CAPACITY_DATASET = "stage_shares capacity"
#: Dataset label of a share attributed out of a node table's unnamed rest (:func:`remainder_attributions`).
REMAINDER_DATASET = "stage_shares remainder"
#: A published product naming one part of a node (a battery chemistry, a precursor): used only when nothing
#: covers the whole node.
SUBSET_PRODUCT = r"\bLFP\b|\bNMC\b|\bNCA\b|\bpCAM\b|\bonly\b"


def governance(atlas: Atlas) -> pd.DataFrame:
    """Per country: mean of the six WGI estimates, EU-scaled WGI (0 best-10 worst), political instability.

    ``instability = (2.5 - pv) / 5`` clipped to [0, 1] (GeoPolRisk, from the political-stability indicator).
    Index: iso3.
    """
    g = atlas.governance
    wide = g.pivot_table(index="iso3", columns="indicator", values="estimate", aggfunc="first")
    mean = wide.mean(axis=1)
    out = pd.DataFrame({"wgi_mean": mean, "wgi_scaled": wgi_scaled(mean.to_numpy())}, index=wide.index)
    pv = wide["pv"] if "pv" in wide else pd.Series(np.nan, index=wide.index)
    out["instability"] = np.clip((2.5 - pv) / 5.0, 0.0, 1.0)
    out["year"] = g.groupby("iso3")["year"].max()
    return out


def stage_shares_table(atlas: Atlas, year: int = 2024) -> pd.DataFrame:
    """Long table of country shares per node.

    Columns: commodity_id, stage, country_iso3, share (fraction), basis ('tonnage' or 'published'),
    bound ('' or approx/ge/le), year, source_id, dataset.
    """
    frames = [_from_production(atlas, year)]
    have = set(zip(frames[0]["commodity_id"], frames[0]["stage"], strict=True)) if len(frames[0]) else set()
    frames.append(_from_published(atlas, year, exclude=have))
    out = pd.concat([f for f in frames if len(f)], ignore_index=True)
    out = pd.concat([out, remainder_attributions(atlas, out, year)], ignore_index=True)
    return out.sort_values(["commodity_id", "stage", "share", "country_iso3"], ascending=[True, True, False, True], kind="stable").reset_index(drop=True)


def remainder_attributions(atlas: Atlas, shares: pd.DataFrame, year: int = 2024) -> pd.DataFrame:
    """Rows of countries attributed out of a node table's unnamed rest (kind ``production_in_remainder``).

    For each node of ``shares`` and each attribution row of that node (the newest year up to ``year``) whose
    country the node's table does not name: ``share = min(a, rest)`` with ``rest = 1 - Σ named shares`` less
    the attributions already taken, in descending order of ``a``. Same columns as :func:`stage_shares_table`;
    ``dataset`` is :data:`REMAINDER_DATASET`, ``basis`` that of the node's table and ``year`` the attribution's own (Japan's
    nickel: 2019, older than the table's 2024)."""
    cols = ["commodity_id", "stage", "country_iso3", "year", "source_id", "share", "basis", "bound", "dataset"]
    s = atlas.stage_shares
    s = s[(s["share_kind"] == REMAINDER_KIND) & ~s["projection"] & (s["year"] <= year)]
    if s.empty or shares.empty:
        return pd.DataFrame(columns=cols)
    s = s.sort_values("year").drop_duplicates(["commodity_id", "stage", "country_iso3"], keep="last")
    rows = []
    for (c, st), g in s.groupby(["commodity_id", "stage"], sort=True):
        node = shares[(shares["commodity_id"] == c) & (shares["stage"] == st)]
        if node.empty:
            continue
        named = set(node["country_iso3"])
        rest = max(0.0, 1.0 - float(node["share"].sum()))
        for r in g.sort_values("share_pct", ascending=False).itertuples(index=False):
            if r.country_iso3 in named or rest <= 0:
                continue
            a = min(float(r.share_pct) / 100.0, rest)
            rest -= a
            rows.append({"commodity_id": c, "stage": st, "country_iso3": r.country_iso3, "year": int(r.year),
                         "source_id": r.source_id, "share": a, "basis": str(node["basis"].iloc[0]), "bound": r.bound or "",
                         "dataset": REMAINDER_DATASET})
    return pd.DataFrame(rows, columns=cols)


def _from_production(atlas: Atlas, year: int) -> pd.DataFrame:
    p = atlas.production
    p = p[p["for_shares"] & (p["case"] == "") & (p["measure"] == "production") & (p["year"] <= year) & p["value"].notna()]
    p = p[p["entity"].isin(["country", "other"])].copy()
    p["_prio"] = p["source_id"].map(DATASET_PRIORITY).fillna(9)
    # latest year with data for each node and dataset; then the best dataset
    p = p[p["value"] > 0]
    best = (
        p.groupby(["commodity_id", "stage", "source_id", "_prio"])["year"].max().reset_index()
        .sort_values(["commodity_id", "stage", "_prio"]).drop_duplicates(["commodity_id", "stage"])
    )
    sel = p.merge(best[["commodity_id", "stage", "source_id", "year"]], on=["commodity_id", "stage", "source_id", "year"])
    total = sel.groupby(["commodity_id", "stage"])["value"].transform("sum")
    sel = sel.assign(share=sel["value"] / total)
    countries = sel[sel["entity"] == "country"]
    out = countries.groupby(["commodity_id", "stage", "country_iso3", "year", "source_id"], as_index=False)["share"].sum()
    out["basis"] = "tonnage"
    out["bound"] = ""
    out["dataset"] = out["source_id"]
    return out


def _from_published(atlas: Atlas, year: int, exclude: set[tuple[str, str]]) -> pd.DataFrame:
    s = atlas.stage_shares
    s = s[~s["projection"] & s["share_kind"].isin(list(_KIND_RANK)) & (s["year"] <= year + 1)].copy()
    # the reference year or earlier; a node published only for the year after (e.g. 2025 estimates) takes that
    newest_ok = s.groupby(["commodity_id", "stage"])["year"].transform("min") <= year
    s = s[(s["year"] <= year) | ~newest_ok]
    if exclude:
        keep = [(c, st) not in exclude for c, st in zip(s["commodity_id"], s["stage"], strict=True)]
        s = s[keep]
    if s.empty:
        return s
    # one table = one product, kind and year; a table compiled from several sources (each naming different
    # countries) counts as one, a country named twice keeping its best-verified figure
    s["_v"] = s["verification"].map(_VERIFICATION_RANK).fillna(3)
    s = s.sort_values(["_v", "source_id"]).drop_duplicates(["commodity_id", "stage", "product", "share_kind", "year", "country_iso3"])
    group = ["commodity_id", "stage", "product", "share_kind", "year"]
    g = s.groupby(group, as_index=False).agg(
        n=("country_iso3", "nunique"), coverage=("share_pct", "sum"), verification=("verification", "first"),
        source_id=("source_id", "min"),
    )
    g["_k"] = g["share_kind"].map(_KIND_RANK)
    g["_v"] = g["verification"].map(_VERIFICATION_RANK).fillna(3)
    g["_subset"] = g["product"].str.contains(SUBSET_PRODUCT, case=True, regex=True).astype(int)
    g = g.sort_values(
        ["commodity_id", "stage", "_k", "_subset", "year", "coverage", "_v", "source_id"],
        ascending=[True, True, True, True, False, False, True, True],
    )
    best = g.drop_duplicates(["commodity_id", "stage"])[group]
    sel = s.drop(columns="_v").merge(best, on=group)
    # a capacity table stands in for production: its dataset says so, and the node is flagged (review 17)
    out = sel.assign(share=sel["share_pct"] / 100.0, basis="published",
                     dataset=np.where(sel["share_kind"] == "capacity", CAPACITY_DATASET, "stage_shares"))
    return out[["commodity_id", "stage", "country_iso3", "year", "source_id", "share", "basis", "bound", "dataset"]]


def stage_metrics(atlas: Atlas, year: int = 2024, shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """Concentration metrics per node.

    Columns: commodity_id, stage, hhi (0-10,000, over named countries), hhi_wgi (0-10), top_country,
    top_share, top3_share, concern_share, bloc_share (participants + like-minded), participants_share,
    coverage (share attributed to named countries), n_countries, basis, bound, year, source_ids.
    """
    sh = stage_shares_table(atlas, year) if shares is None else shares
    gov = governance(atlas)
    wgi = sh["country_iso3"].map(gov["wgi_scaled"])
    # countries without a WGI estimate get the median score, flagged in `wgi_imputed`
    median = float(np.nanmedian(gov["wgi_scaled"])) if len(gov) else 5.0
    sh = sh.assign(wgi=wgi.fillna(median), wgi_imputed=wgi.isna())
    concern, allied, participants = atlas.concern, atlas.allied, atlas.participants
    rows = []
    for (c, st), grp in sh.groupby(["commodity_id", "stage"], sort=True):
        s = grp["share"].to_numpy()
        order = np.argsort(-s, kind="stable")
        isos = grp["country_iso3"].to_numpy()
        rows.append(
            {
                "commodity_id": c,
                "stage": st,
                "hhi": float(hhi(s)),
                "hhi_wgi": float(hhi_wgi(s, grp["wgi"].to_numpy())),
                "top_country": str(isos[order[0]]),
                "top_share": float(s[order[0]]),
                "top3_share": float(top_n_share(s, 3)),
                "concern_share": float(s[np.isin(isos, list(concern))].sum()),
                "bloc_share": float(s[np.isin(isos, list(allied))].sum()),
                "participants_share": float(s[np.isin(isos, list(participants))].sum()),
                "coverage": float(s.sum()),
                "n_countries": int(len(s)),
                "basis": str(grp["basis"].iloc[0]),
                "bound": ";".join(sorted({b for b in grp["bound"] if b})),
                "wgi_imputed": ";".join(sorted(isos[grp["wgi_imputed"].to_numpy()])),
                "year": int(grp["year"].max()),
                "source_ids": ";".join(sorted(set(grp["source_id"]))),
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        out["_o"] = out["stage"].map(STAGE_ORDER)
        out = out.sort_values(["commodity_id", "_o"]).drop(columns="_o").reset_index(drop=True)
    return out
