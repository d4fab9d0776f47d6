"""Export-restriction events and event scenarios: the bundled tables, and bad input refused with file/line/field."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from critmin.atlas import Atlas, load_atlas
from critmin.atlas.build import build_atlas, curated_dir
from critmin.atlas.importers.common import QuirkLog
from critmin.atlas.importers.events import import_event_scenarios, import_events, months_between, status_class
from critmin.atlas.schema import parse_date
from critmin.errors import AtlasError, ImportDataError

from .conftest import RAW

EVENTS = RAW / "events" / "export_restrictions.csv"
SCENARIOS = curated_dir() / "event_scenarios.csv"


@pytest.fixture(scope="module")
def refs(atlas: Atlas) -> tuple[set[str], dict[str, str], set[tuple[str, str]]]:
    iso = set(atlas.countries["iso3"])
    names = dict(zip(atlas.countries["iso3"], atlas.countries["name"], strict=True))
    nodes = set(zip(atlas.stages["commodity_id"], atlas.stages["stage"], strict=True))
    return iso, names, nodes


def _replace_field(src: Path, dst: Path, key: str, field: str, value: str) -> int:
    """Copy a CSV, setting ``field`` of the first record whose first cell is ``key``; returns its file line."""
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    hits = frame.index[frame.iloc[:, 0] == key]
    assert len(hits), key
    frame.loc[hits[0], field] = value
    frame.to_csv(dst, index=False, lineterminator="\n")
    return int(hits[0]) + 2


# ------------------------------------------------------------------------------------------- bundled tables
def test_events_table(atlas: Atlas) -> None:
    ev = atlas.events
    # the rows of the raw event file (2010 to mid-2026), each one event
    raw = Path(__file__).resolve().parents[1] / "data/raw/events/export_restrictions.csv"
    with raw.open(encoding="utf-8") as f:
        n_raw = sum(1 for _ in csv.DictReader(f))
    assert len(ev) == n_raw >= 33
    assert atlas.manifest["rows"]["events"] == n_raw  # type: ignore[index]
    assert ev["event_id"].is_unique
    cls = dict(zip(ev["event_id"], ev["status_class"], strict=True))
    assert cls["E010"] == "in_force"
    assert cls["E015"] == "suspended"
    assert cls["E017"] == "ended"
    assert cls["E007"] == "unknown"
    assert cls["E021"] == "suspended" and cls["E004"] == "ended" and cls["E028"] == "in_force"
    assert cls["E030"] == "in_force"  # Zimbabwe's Feb 2026 raw-mineral and concentrate ban, as last reported
    row = ev.set_index("event_id").loc["E010"]
    assert row["volume_change_pct"] == -100 and row["price_change_pct"] == -9
    assert row["start"] == "2023-08-01" and row["end"] == ""
    # quirk kept as published: suspended before entry into force, end before start
    e21 = ev.set_index("event_id").loc["E021"]
    assert e21["end"] < e21["start"]
    assert ev.set_index("event_id").at["E025", "imposed_by_iso3"] == "USA;GBR"


def test_one_source_per_event(atlas: Atlas) -> None:
    src = atlas.sources.set_index("source_id")
    for r in atlas.events.itertuples(index=False):
        assert r.source_id == f"event_{r.event_id}"
        assert src.at[r.source_id, "title"].startswith(f"Export restriction event {r.event_id}: ")
    s10 = src.loc["event_E010"]
    assert s10["title"] == "Export restriction event E010: licence requirement (dual-use) on gallium; germanium (China)"
    assert s10["year"] == 2023 and s10["verification"] == "mixed"
    assert "; https://" in s10["url"]  # multi-URL field kept as published
    assert pd.isna(src.at["event_E003", "year"])  # neither a start nor an announcement date
    assert src.at["event_E003", "organisation"].startswith("Cyceon")


def test_scenarios_reference_events_and_nodes(atlas: Atlas) -> None:
    sc = atlas.event_scenarios
    nodes = set(zip(atlas.stages["commodity_id"], atlas.stages["stage"], strict=True))
    ev = atlas.events.set_index("event_id")
    assert len(sc) >= 40
    for r in sc.itertuples(index=False):
        assert (r.commodity_id, r.stage) in nodes, (r.event_id, r.commodity_id, r.stage)
        assert r.event_id in ev.index
        assert r.restrictor_iso3 == ev.at[r.event_id, "country_iso3"]
        assert r.source_id == ev.at[r.event_id, "source_id"]
        assert 0 <= r.withheld_low <= r.withheld_share <= r.withheld_high <= 1
        assert r.regime in {"ban", "quota", "licence", "suspension", "sanction", "closure"}
        assert r.withheld_basis
    # events that cannot map to a node (technology-only, superhard materials, extraterritorial rule) have no rows
    assert not set(sc["event_id"]) & {"E012", "E020", "E022", "E024"}
    e15 = atlas.event_scenarios_for("E015")
    assert set(e15["targets"]) == {"USA"}
    assert {("gallium", "refine"), ("germanium", "refine"), ("antimony", "mine")} <= set(zip(e15["commodity_id"], e15["stage"], strict=True))
    assert int(e15["duration_months"].iloc[0]) == 11
    assert set(atlas.event_scenarios_for("E006")["targets"]) == {"CHN"}
    assert set(atlas.event_scenarios_for("E025")["targets"]) == {"USA;GBR"}
    e10 = atlas.event_scenarios_for("E010").set_index("commodity_id")
    assert e10.at["gallium", "withheld_share"] == 1.0 and "-100 %" in e10.at["gallium", "withheld_basis"]
    assert atlas.event_scenarios_for("E012").empty
    with pytest.raises(AtlasError):
        atlas.event_scenarios_for("E999")



def test_synthetic_graphite_anode_material_carries_no_2023_licence(atlas: Atlas) -> None:
    """Review 21 asked why synthetic graphite had no control in force; review 22 showed that mapping China's Dec 2023
    licences (E011) there counted the Oct 2025 anode package (E023) a second time through the regime's 'tightening'.
    E011 listed artificial graphite of >99.9 % purity, >30 MPa and >1.73 g/cm3 at once (block and isostatic grades),
    not anode powder; the raw monthly file shows the HS 3801.10 dip was brief (recomputed here). E023, which first
    listed anode material, is mapped once, at battery_anode/anode."""
    m = pd.read_csv(RAW / "events" / "export_monthly.csv", dtype={"hs_code": str})
    m = m[(m["case_id"] == "E011") & (m["hs_code"] == "3801.10")].set_index("month")["quantity"]
    before = m[[f"2023-{k:02d}" for k in range(6, 11)]].mean()
    assert 1 - m["2023-12"] / before == pytest.approx(0.156, abs=5e-4) and m["2024-01"] > before
    assert "synthetic_graphite" not in set(atlas.event_scenarios_for("E011")["commodity_id"])
    note = atlas.event_scenarios_for("E011").set_index("stage").at["refine", "note"]
    assert ">1.73 g/cm3 density at once" in note and "not anode powder" in note
    e23 = set(atlas.event_scenarios_for("E023")["commodity_id"])
    assert "synthetic_graphite" not in e23 and "battery_anode" in e23

def test_date_helpers() -> None:
    assert status_class("ongoing (as of 2025)") == "in_force"
    assert status_class("suspended before entry into force (until 2026-11-10)") == "suspended"
    assert status_class("ended (replaced by quotas)") == "ended"
    assert status_class("in limbo") is None
    assert parse_date("2025-02") == (2025, 2) and parse_date("2025-02-29") is None
    assert parse_date("2025-02-04", month_only=True) is None
    assert months_between("2024-12", "2025-11") == 11 and months_between("", "2025-11") is None


# ------------------------------------------------------------------------------------------- bad input
def test_unknown_country_in_raw_events(tmp_path: Path, refs) -> None:  # type: ignore[no-untyped-def]
    iso, names, _ = refs
    bad = tmp_path / "export_restrictions.csv"
    line = _replace_field(EVENTS, bad, "E010", "country_iso3", "XXY")
    with pytest.raises(ImportDataError) as exc:
        import_events(bad, iso, names, QuirkLog())
    p = exc.value.first
    assert (p.file, p.line, p.field) == ("export_restrictions.csv", line, "country_iso3")
    assert "XXY" in p.message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("start_date", "2023-13-01", "not a date"),
        ("status", "paused", "cannot classify"),
        ("export_volume_change_pct", "minus ten", "not a number"),
        ("imposed_by_iso3", "CHN;ZZZ", "ZZZ"),
    ],
)
def test_bad_event_fields(tmp_path: Path, refs, field: str, value: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    iso, names, _ = refs
    bad = tmp_path / "export_restrictions.csv"
    line = _replace_field(EVENTS, bad, "E011", field, value)
    with pytest.raises(ImportDataError) as exc:
        import_events(bad, iso, names, QuirkLog())
    p = exc.value.first
    assert (p.file, p.line, p.field) == ("export_restrictions.csv", line, field)
    assert fragment in p.message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("withheld_share", "1.5", "outside 0-1"),
        ("withheld_low", "0.95", "withheld_low <= withheld_share"),
        ("event_id", "E999", "unknown event"),
        ("stage", "magnet", "no atlas node"),
        ("restrictor_iso3", "XXY", "unknown country"),
        ("targets", "USA;QQQ", "unknown target"),
        ("regime", "embargo", "not one of"),
        ("duration_months", "7", "should be '54'"),
        ("start", "2010-08", "differs from the event's start"),
    ],
)
def test_bad_scenario_fields(tmp_path: Path, refs, field: str, value: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    iso, names, nodes = refs
    events, _ = import_events(EVENTS, iso, names, QuirkLog())
    bad = tmp_path / "event_scenarios.csv"
    line = _replace_field(SCENARIOS, bad, "E001", field, value)  # first row: E001 rare_earths/refine 0/0.4/0.72
    with pytest.raises(ImportDataError) as exc:
        import_event_scenarios(bad, events, nodes, iso, QuirkLog())
    p = exc.value.first
    want_field = "withheld_share" if field == "withheld_low" else field
    assert (p.file, p.line, p.field) == ("event_scenarios.csv", line, want_field)
    assert fragment in p.message


def test_build_refuses_share_over_one(tmp_path: Path) -> None:
    cdir = tmp_path / "curated"
    shutil.copytree(curated_dir(), cdir)
    line = _replace_field(SCENARIOS, cdir / "event_scenarios.csv", "E001", "withheld_high", "1.2")
    out = tmp_path / "atlas"
    with pytest.raises(ImportDataError) as exc:
        build_atlas(RAW, out, cdir)
    p = exc.value.first
    assert (p.file, p.line, p.field) == ("event_scenarios.csv", line, "withheld_high")
    assert not out.exists()  # a failed build writes nothing


def test_build_refuses_unknown_country_in_raw_events(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for entry in RAW.iterdir():
        if entry.name != "events":
            (raw / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (raw / "events").mkdir()
    for entry in (RAW / "events").iterdir():
        if entry.name != "export_restrictions.csv":
            (raw / "events" / entry.name).symlink_to(entry)
    line = _replace_field(EVENTS, raw / "events" / "export_restrictions.csv", "E017", "country_iso3", "DRC")
    with pytest.raises(ImportDataError) as exc:
        build_atlas(raw, tmp_path / "atlas")
    p = exc.value.first
    assert (p.file, p.line, p.field) == ("export_restrictions.csv", line, "country_iso3")


def test_loading_refuses_edited_scenarios(atlas_copy: Path) -> None:
    path = atlas_copy / "event_scenarios.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, "withheld_high"] = "1.5"
    frame.to_csv(path, index=False, lineterminator="\n")
    with pytest.raises(AtlasError) as exc:
        load_atlas(atlas_copy)
    p = exc.value.first
    assert (p.file, p.line, p.field) == ("event_scenarios.csv", 2, "withheld_high")


def test_loading_refuses_scenario_on_missing_node(atlas_copy: Path) -> None:
    path = atlas_copy / "event_scenarios.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[3, "stage"] = "magnet"
    frame.to_csv(path, index=False, lineterminator="\n")
    with pytest.raises(AtlasError) as exc:
        load_atlas(atlas_copy)
    p = exc.value.first
    assert (p.file, p.line, p.field) == ("event_scenarios.csv", 5, "stage")
    assert "no stage" in p.message
