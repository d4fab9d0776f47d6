"""The bundled atlas: loads, every row has a source, rebuild is byte-identical, bad input is refused."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from critmin.atlas import bundled_atlas_path, load_atlas
from critmin.atlas.audit import rows_without_source
from critmin.atlas.build import build_atlas
from critmin.errors import AtlasError

from .conftest import RAW


def test_bundled_atlas_loads(atlas) -> None:  # type: ignore[no-untyped-def]
    s = atlas.summary()
    assert s["commodities"] > 60
    assert s["production"] > 1000
    assert atlas.participants == {"USA", "JPN"}
    assert atlas.concern == {"CHN", "RUS", "PRK", "IRN"}
    assert "AUS" in atlas.like_minded
    assert atlas.data_version.startswith("mcs2025.iea2025.wgi2024.")
    assert sum(rows_without_source(atlas).values()) == 0


def test_critical_list_2025(atlas) -> None:  # type: ignore[no-untyped-def]
    c = atlas.commodities.set_index("commodity_id")
    for cid in ("copper", "silver", "uranium", "metallurgical_coal", "gallium", "rare_earths"):
        assert c.at[cid, "us_critical_2025"], cid
    assert not c.at["copper", "us_critical_2022"]
    assert not c.at["gold", "us_critical_2025"]


def test_rebuild_gives_same_bytes(tmp_path: Path) -> None:
    out = tmp_path / "atlas"
    build_atlas(RAW, out)
    bundled = bundled_atlas_path()
    names = sorted(p.name for p in bundled.iterdir())
    assert names == sorted(p.name for p in out.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(bundled, out, names, shallow=False)
    assert mismatch == [] and errors == []


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _problem(atlas_dir: Path):  # type: ignore[no-untyped-def]
    with pytest.raises(AtlasError) as exc:
        load_atlas(atlas_dir)
    return exc.value.first


def test_missing_column(atlas_copy: Path) -> None:
    _edit(atlas_copy / "governance.csv", "iso3,year,indicator,estimate,source_id", "iso,year,indicator,estimate,source_id")
    p = _problem(atlas_copy)
    assert (p.file, p.line, p.field) == ("governance.csv", 1, "iso3")


def test_unknown_country(atlas_copy: Path) -> None:
    _edit(atlas_copy / "blocs.csv", "concern,CHN,", "concern,XXX,")
    p = _problem(atlas_copy)
    assert p.file == "blocs.csv" and p.field == "iso3" and "XXX" in p.message and p.line is not None


def test_negative_tonnage(atlas_copy: Path) -> None:
    path = atlas_copy / "production.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    vi = header.index("value")
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) == len(header) and cells[vi] not in ("", "0"):
            cells[vi] = "-" + cells[vi]
            lines[n - 1] = ",".join(cells)
            break
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = _problem(atlas_copy)
    assert (p.file, p.line, p.field) == ("production.csv", n, "value")
    assert "negative" in p.message


def test_share_over_100(atlas_copy: Path) -> None:
    path = atlas_copy / "stage_shares.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    si = header.index("share_pct")
    cells = lines[1].split(",")
    cells[si] = "130"
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = _problem(atlas_copy)
    assert (p.file, p.line, p.field) == ("stage_shares.csv", 2, "share_pct")


def test_shares_of_group_over_100(atlas_copy: Path) -> None:
    path = atlas_copy / "import_sources.csv"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    header = lines[0].split(",")
    si = header.index("share_pct")
    # raise the U.S. rare-earth shares of one table so that they add up to more than 100 %
    for i, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        if len(cells) == len(header) and cells[1] == "rare_earths" and cells[0] == "USA" and cells[si] == "71":
            cells[si] = "99"
            lines[i] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = _problem(atlas_copy)
    assert p.file == "import_sources.csv" and p.field == "share_pct" and "add up" in p.message


def test_unit_mismatch(atlas_copy: Path) -> None:
    path = atlas_copy / "production.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("gallium,refine,") and ",kilograms," in line:
            lines[i] = line.replace(",kilograms,", ",metric tons,")
            break
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = _problem(atlas_copy)
    assert p.file == "production.csv" and p.field == "unit" and "mismatch" in p.message


def test_truncated_file(atlas_copy: Path) -> None:
    path = atlas_copy / "production.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    p = _problem(atlas_copy)
    assert p.file == "production.csv"
    assert "truncated" in p.message


def test_loading_is_all_or_nothing(atlas_copy: Path) -> None:
    _edit(atlas_copy / "governance.csv", ",va,", ",vx,")  # one bad row in the last table loaded
    with pytest.raises(AtlasError):
        load_atlas(atlas_copy)


def test_bloc_override(tmp_path: Path) -> None:
    f = tmp_path / "blocs.csv"
    f.write_text("bloc_id,iso3\n# add Australia as a participant\nparticipants,USA\nparticipants,JPN\nparticipants,AUS\nconcern,CHN\n", encoding="utf-8")
    a = load_atlas(blocs=f)
    assert a.participants == {"USA", "JPN", "AUS"}
    assert a.concern == {"CHN"}
    bad = tmp_path / "bad.csv"
    bad.write_text("bloc_id,iso3\nconcern,ZZZ\n", encoding="utf-8")
    with pytest.raises(AtlasError, match="unknown country 'ZZZ'"):
        load_atlas(blocs=bad)


def test_chain_nodes_follow_links(atlas) -> None:  # type: ignore[no-untyped-def]
    nodes = atlas.chain_nodes("rare_earths")
    assert nodes[:3] == [("rare_earths", "mine"), ("rare_earths", "refine"), ("rare_earths", "metal")]
    assert ("ndfeb_magnets", "magnet") in nodes
    assert ("battery_cells", "cell") in atlas.chain_nodes("lithium")
