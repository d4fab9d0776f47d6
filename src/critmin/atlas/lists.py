"""Participants' critical-mineral lists (reference data with sources) and the listed parent of derived nodes.

``atlas/reference/critical_lists.csv``: the U.S. final 2025 List of Critical Minerals (the atlas's
``commodities.us_critical_2025``) and Japan's critical minerals (the 34 rare-metal stockpile minerals of
METI/JOGMEC plus uranium; ``data/raw/japan/critical_list.csv``; the platinum-group item expanded to its five
metals). A study may replace either list.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

#: Derived and element-level nodes and the listed commodity they are made from (chain structure, not a
#: figure): a list naming "rare earths" covers NdPr oxide, Dy, Tb, Gd and NdFeB magnets, and scandium and yttrium,
#: which are rare-earth elements (Japan's rare-metal list names the rare earths as one item).
LISTED_PARENT: dict[str, str] = {
    "ndpr": "rare_earths", "dysprosium": "rare_earths", "terbium": "rare_earths", "lanthanum_cerium": "rare_earths",
    "yttrium": "rare_earths", "gadolinium": "rare_earths", "scandium": "rare_earths", "ndfeb_magnets": "rare_earths", "synthetic_graphite": "graphite", "battery_anode": "graphite",
    "gaas_semiconductors": "gallium", "germanium_optics": "germanium", "ito_optical_coatings": "indium",
    "autocatalysts": "platinum",
}


def critical_lists_path() -> Path:
    """The bundled lists file."""
    return Path(str(resources.files("critmin.atlas").joinpath("reference/critical_lists.csv")))


def critical_lists(path: str | Path | None = None) -> dict[str, set[str]]:
    """Participant ISO3 -> the commodity ids on its critical-mineral list."""
    t = pd.read_csv(path or critical_lists_path(), dtype=str, keep_default_na=False)
    return {str(k): set(v["commodity_id"]) for k, v in t.groupby("participant_iso3")}


def on_list(commodity: str, listed: set[str]) -> bool:
    """Whether a node's commodity is on a list, itself or through its listed parent (:data:`LISTED_PARENT`)."""
    return commodity in listed or LISTED_PARENT.get(commodity, "") in listed


def us_listed_elements_in(commodity: str) -> list[str]:
    """Minerals of the U.S. 2025 list that the atlas counts inside an aggregate ``commodity`` because they have no node
    of their own (``curated/us_critical_minerals.csv``; for ``rare_earths``: samarium, lutetium, europium, erbium,
    holmium, thulium, ytterbium)."""
    t = pd.read_csv(Path(str(resources.files("critmin.atlas").joinpath("curated/us_critical_minerals.csv"))), dtype=str,
                    keep_default_na=False)
    return sorted(t.loc[(t["commodity_id"] == commodity) & (t["list_2025"].str.lower() == "yes"), "mineral"].str.lower())
