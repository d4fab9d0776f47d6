"""Every public `critmin.*` name works twice, in both import orders (issue 13: `critmin.assess` worked once)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("first", ["import critmin", "import critmin.simulate", "import critmin.assess"])
def test_public_names_work_twice_in_any_import_order(first: str):
    code = f"""
{first}
import critmin
atlas = critmin.load_atlas()
for _ in range(2):
    r = critmin.assess(atlas, "BLOC", "critmin")
    assert len(r) > 50, len(r)
assert callable(critmin.assess) and critmin.Study is not None and critmin.__version__
"""
    p = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
