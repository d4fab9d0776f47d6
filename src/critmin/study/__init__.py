"""Studies: the group's inputs in one file (spec) and the object that runs the cycle from them (core)."""

from critmin.stockpile.policy import StockpilePolicy
from critmin.study.core import Study
from critmin.study.spec import StudyError, StudySpec, load_spec

__all__ = ["StockpilePolicy", "Study", "StudyError", "StudySpec", "load_spec"]
