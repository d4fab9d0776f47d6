"""critmin: critical-minerals supply security for the US-Japan framework and like-minded partners.

Flow: atlas (data) -> assess -> simulate -> optimise -> plan/report. Start with::

    import critmin
    atlas = critmin.load_atlas()
    ranking = critmin.assess(atlas, perspective="BLOC", method="critmin")
"""

from critmin.atlas import Atlas, load_atlas
from critmin.errors import AtlasError, CritminError, MethodError

__version__ = "0.1.0"

__all__ = ["Atlas", "AtlasError", "CritminError", "MethodError", "__version__", "assess", "load_atlas"]


def __getattr__(name: str) -> object:
    if name == "assess":
        from critmin.assess import assess

        return assess
    raise AttributeError(name)
