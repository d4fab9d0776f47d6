"""critmin: critical-minerals supply security for the US-Japan framework and like-minded partners.

Flow: atlas (data) -> assess -> simulate -> optimise -> plan/report. Start with::

    import critmin
    atlas = critmin.load_atlas()
    ranking = critmin.assess(atlas, perspective="BLOC", method="critmin")
    plan = critmin.Study.from_file("study.yaml").plan()     # or critmin.Study() for the bundled data
"""

# Bound here, once: a lazy module __getattr__ was shadowed by the critmin.assess subpackage after the first
# import (issue 13).
from critmin.assess import assess
from critmin.atlas import Atlas, load_atlas
from critmin.errors import AtlasError, CritminError, MethodError
from critmin.study import Study
from critmin.version import __version__

__all__ = ["Atlas", "AtlasError", "CritminError", "MethodError", "Study", "__version__", "assess", "load_atlas"]
