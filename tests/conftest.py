from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from critmin.atlas import Atlas, bundled_atlas_path, load_atlas

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw"


@pytest.fixture(scope="session")
def atlas() -> Atlas:
    return load_atlas()


@pytest.fixture()
def atlas_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled atlas for corruption tests."""
    dst = tmp_path / "atlas"
    shutil.copytree(bundled_atlas_path(), dst)
    return dst


@pytest.fixture(scope="session")
def simulator(atlas: Atlas):
    """The disruption simulator on the bundled atlas with the bundled parameters."""
    from critmin.simulate.run import Simulator

    return Simulator.build(atlas)
