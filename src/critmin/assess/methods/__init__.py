"""Criticality methods, one plug-in module each (importing this package registers them)."""

from critmin.assess.methods import critmin_score, eu_crm, geopolrisk, usgs2021
from critmin.assess.methods.base import (
    METHODS,
    AssessmentContext,
    Method,
    MethodScore,
    Parameter,
    get_method,
    register,
)

__all__ = [
    "METHODS",
    "AssessmentContext",
    "Method",
    "MethodScore",
    "Parameter",
    "critmin_score",
    "eu_crm",
    "geopolrisk",
    "get_method",
    "register",
    "usgs2021",
]
