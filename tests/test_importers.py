"""USGS/IEA/WGI importers on the real raw files and on corrupted copies: one test per quirk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from critmin.atlas.build import build_tables, curated_dir
from critmin.atlas.importers import usgs
from critmin.atlas.importers.common import CountryResolver, QuirkLog, parse_usgs_value, read_raw_csv
from critmin.atlas.importers.countries import import_aliases
from critmin.errors import ImportDataError

from .conftest import RAW

WORLD = RAW / "usgs_mcs2025/world_data/MCS2025_World_Data.csv"


@pytest.fixture(scope="module")
def resolver() -> CountryResolver:
    aliases = import_aliases(RAW / "country_codes/country_name_to_iso3.csv", curated_dir() / "country_aliases_extra.csv", QuirkLog())
    return CountryResolver(aliases, set(aliases.loc[aliases["entity"] == "country", "iso3"]))


@pytest.fixture(scope="module")
def world(resolver: CountryResolver) -> tuple[pd.DataFrame, pd.DataFrame, list[str], QuirkLog]:
    q = QuirkLog()
    series = read_raw_csv(curated_dir() / "usgs_world_series.csv").drop(columns="_line")
    prod, check, unmapped = usgs.import_world_data(WORLD, series, resolver, q)
    return prod, check, unmapped, q


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (None, "")),
        ("W", (None, "W")),
        ("NA", (None, "NA")),
        ("E", (None, "E")),
        ("—", (0.0, "")),
        (">50", (50.0, ">")),
        ("<100,000", (100000.0, "<")),
        (">17,000,000", (17_000_000.0, ">")),
        ("1,234", (1234.0, "")),
        (" 45000 ", (45000.0, "")),
    ],
)
def test_parse_usgs_value(text: str, expected: tuple[float | None, str]) -> None:
    assert parse_usgs_value(text) == expected


def test_parse_usgs_value_rejects_text() -> None:
    with pytest.raises(ValueError):
        parse_usgs_value("estimated 2023")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Congo (Kinshasa)", ("country", "COD")),
        ("Burma", ("country", "MMR")),
        ("Korea, Republic of", ("country", "KOR")),
        ("Korea, North", ("country", "PRK")),
        ("Russia ", ("country", "RUS")),
        ("United\xa0States (kyanite)", ("country", "USA")),
        ("Brazil (beneficiated)", ("country", "BRA")),
        ("China3", ("country", "CHN")),
        ("World total (rounded)", ("world", "")),
        ("World total (rounded) 10", ("world", "")),
        ("Other Countries", ("other", "")),
        ("Rest of world", ("other", "")),
        ("United\xa0States and Canada", ("combined", "")),
        ("ZAR", ("country", "COD")),
        ("ROM", ("country", "ROU")),
    ],
)
def test_country_resolver(resolver: CountryResolver, name: str, expected: tuple[str, str]) -> None:
    assert resolver.resolve(name) == expected


def test_world_data_quirks_all_handled(world: tuple[pd.DataFrame, pd.DataFrame, list[str], QuirkLog]) -> None:
    prod, check, unmapped, q = world
    assert unmapped == []
    for quirk in (
        "bom", "stray_space_in_column_name", "whitespace_in_name", "misspelt_commodity", "country_qualifier",
        "aggregate_row", "inequality_as_text", "thousands_separator",
        "footnote_in_note", "unit_blank_filled", "rounded_world_total",
    ):
        assert q.counts[quirk] > 0, quirk
    # Gemanium -> germanium (all its values are blank in this release, so no row survives); 2024 column read
    series = read_raw_csv(curated_dir() / "usgs_world_series.csv")
    assert series.loc[series["usgs_commodity"] == "Gemanium", "commodity_id"].tolist() == ["germanium"]
    assert set(prod["year"]) == {2023, 2024}
    # no row keeps a blank unit
    assert (prod["unit"] != "").all()


def test_world_data_golden_rare_earths(world: tuple[pd.DataFrame, pd.DataFrame, list[str], QuirkLog]) -> None:
    prod, check, _, _ = world
    re24 = prod[(prod["commodity_id"] == "rare_earths") & (prod["year"] == 2024) & (prod["measure"] == "production")]
    china = re24[re24["country_iso3"] == "CHN"]["value"].item()
    assert china == 270000.0
    row = check[(check["commodity_id"] == "rare_earths") & (check["year"] == 2024) & (check["measure"] == "production")].iloc[0]
    # countries 392,850 t + Other countries 1,100 t, published world total 390,000 t (rounded)
    assert row["countries_sum"] == 392850.0
    assert row["other_sum"] == 1100.0
    assert row["published_total"] == 390000.0
    assert row["gap_pct"] == pytest.approx(100 * (390000 - 393950) / 390000, abs=1e-3)


def test_world_total_excluding_us_is_recorded(world: tuple[pd.DataFrame, pd.DataFrame, list[str], QuirkLog]) -> None:
    _, check, _, _ = world
    li = check[(check["commodity_id"] == "lithium") & (check["year"] == 2024) & (check["measure"] == "production")].iloc[0]
    assert "Excludes U.S. production" in li["note"]


def test_corrupted_world_value_names_file_line_field(tmp_path: Path, resolver: CountryResolver) -> None:
    lines = WORLD.read_text(encoding="utf-8-sig").splitlines()
    lines[5] = lines[5].replace("50000", "5O000", 1)  # letter O in a number
    bad = tmp_path / "MCS2025_World_Data.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    series = read_raw_csv(curated_dir() / "usgs_world_series.csv").drop(columns="_line")
    with pytest.raises(ImportDataError) as exc:
        usgs.import_world_data(bad, series, resolver, QuirkLog())
    p = exc.value.first
    assert (p.file, p.line) == ("MCS2025_World_Data.csv", 6)
    assert p.field and p.field.startswith("CAP")


def test_unknown_country_in_raw_file(tmp_path: Path, resolver: CountryResolver) -> None:
    text = WORLD.read_text(encoding="utf-8-sig").replace("MCS2025,Abrasives,Austria,", "MCS2025,Abrasives,Atlantis,", 1)
    bad = tmp_path / "w.csv"
    bad.write_text(text, encoding="utf-8")
    series = read_raw_csv(curated_dir() / "usgs_world_series.csv").drop(columns="_line")
    with pytest.raises(ImportDataError, match="unknown country 'Atlantis'"):
        usgs.import_world_data(bad, series, resolver, QuirkLog())


def test_newer_release_with_new_series_reports_unmapped(tmp_path: Path, resolver: CountryResolver) -> None:
    text = WORLD.read_text(encoding="utf-8-sig") + "MCS2026,Unobtainium,China,Mine production,metric tons,1,2,,,,,,\n"
    f = tmp_path / "w.csv"
    f.write_text(text, encoding="utf-8")
    series = read_raw_csv(curated_dir() / "usgs_world_series.csv").drop(columns="_line")
    _, _, unmapped = usgs.import_world_data(f, series, resolver, QuirkLog())[:3]
    assert unmapped == ["Unobtainium | Mine production"]


def test_salient_quirks() -> None:
    q = QuirkLog()
    headline = read_raw_csv(curated_dir() / "usgs_salient_headline.csv").drop(columns="_line")
    long, trade = usgs.import_salient(RAW / "usgs_mcs2025/salient_commodity", headline, q)
    for quirk in ("bom", "withheld_W", "net_exporter_E", "duplicate_column", "text_in_numeric_cell", "unicode_minus"):
        assert q.counts[quirk] > 0, quirk
    # germanium 'Consump_g' is kilograms per the USGS metadata
    assert usgs.classify_salient_column("Consump_g") == ("consumption", "kg")
    assert usgs.classify_salient_column("NIR_ct") == ("nir", "%")
    assert usgs.classify_salient_column("Bauxite_NIR_pct") == ("nir", "%")
    # bauxite file's first column is 'Source', not a value
    assert not (long["variable"] == "Source").any()
    ga = trade[(trade["commodity_id"] == "gallium") & (trade["year"] == 2024)].iloc[0]
    assert ga["nir_pct"] == 100.0
    li = trade[(trade["commodity_id"] == "lithium") & (trade["year"] == 2024)].iloc[0]
    assert (li["nir_pct"], li["nir_qualifier"]) == (50.0, ">")
    ree = trade[(trade["commodity_id"] == "rare_earths") & (trade["year"] == 2024) & trade["headline"]].iloc[0]
    assert ree["nir_pct"] == 80.0  # NIR_Compounds-Metals_t, not the concentrate column ('E')


def test_missing_raw_file_is_a_clear_error(tmp_path: Path) -> None:
    shutil.copytree(RAW, tmp_path / "raw")
    (tmp_path / "raw/iea_critical_minerals_dataset/iea.json").unlink()
    with pytest.raises(ImportDataError, match="raw input 'iea' is missing"):
        build_tables(tmp_path / "raw")


def test_hostile_atlas_and_cli_inputs_fail_with_the_file_named(resolver: CountryResolver, tmp_path: Path) -> None:
    """Issue 14 finding 8: a WGI file cut in half was accepted, a 5,000-digit number became inf, deep JSON
    nesting gave a traceback, and a truncated --params row was accepted."""
    from critmin.atlas.importers.wgi import import_wgi
    from critmin.simulate.parameters import ParameterError, read_parameter_file

    # WGI cut at a line boundary in the latest year's block
    src = RAW / "worldbank_wgi/wgidataset_2024update_long.csv"
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    latest = max(i for i, ln in enumerate(lines) if ",2023," in ln)
    cut = tmp_path / "wgi.csv"
    cut.write_text("".join(lines[: latest - 600]), encoding="utf-8")
    with pytest.raises(ImportDataError, match="looks truncated"):
        import_wgi(cut, resolver, QuirkLog())
    import_wgi(src, resolver, QuirkLog())  # the real file passes
    with pytest.raises(ValueError, match="too large"):
        parse_usgs_value("9" * 5000)
    # deep nesting is checked in a child process: a RecursionError inside the C JSON decoder leaves CPython
    # 3.11's recursion bookkeeping off, which would break pytest's later source parsing in this process
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code = f"""
from pathlib import Path
from critmin.atlas.importers.common import QuirkLog
from critmin.atlas.importers.iea import import_iea
from critmin.errors import ImportDataError
from critmin.simulate.scenario import ScenarioError, load_scenario_file
deep = Path({str(deep)!r})
try:
    import_iea(deep, {{}}, None, QuirkLog())
except ImportDataError as e:
    assert "nested too deeply" in str(e) or "invalid JSON" in str(e), e
else:
    raise SystemExit("iea: no error")
try:
    load_scenario_file(deep)
except ScenarioError as e:
    assert "deep" in str(e), e
else:
    raise SystemExit("scenario: no error")
print("ok")
"""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
    p = tmp_path / "p.csv"
    p.write_text("name,scope,value,low,high,distribution\nmax_price_ratio,*,10,5,20,triangular\nelasticity_demand,*,-0.2\n")
    with pytest.raises(ParameterError, match="line 3.*expected 6 fields"):
        read_parameter_file(p)
    p.write_text("name,scope,value\nmax_price_ratio,*,1e999\n")
    with pytest.raises(ParameterError, match="not a number"):
        read_parameter_file(p)
    p.write_text("name,scope,value\nmax_price_ratio,*,12")  # cut before its newline
    with pytest.raises(ParameterError, match="truncated"):
        read_parameter_file(p)
