"""Assessment: concentration, reliance and criticality methods on the atlas."""

from critmin.assess.assessment import OUTPUT_COLUMNS, assess, chain
from critmin.assess.concentration import group_share, hhi, hhi_wgi, shares, top_n_share, wgi_scaled
from critmin.assess.methods import METHODS, AssessmentContext, get_method
from critmin.assess.reliance import bloc_reliance, net_import_reliance

__all__ = [
    "METHODS",
    "OUTPUT_COLUMNS",
    "AssessmentContext",
    "assess",
    "bloc_reliance",
    "chain",
    "get_method",
    "group_share",
    "hhi",
    "hhi_wgi",
    "net_import_reliance",
    "shares",
    "top_n_share",
    "wgi_scaled",
]
