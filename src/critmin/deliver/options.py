"""The options of a delivery or matching run, as one pydantic model (issue 13): the CLI, the study file, the web
API and :meth:`critmin.Study.deliver` / :meth:`critmin.Study.match` build a :class:`DeliveryOptions`, so the
horizon and the month have one set of bounds and one wording."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from critmin._dates import Month

#: Longest delivery horizon (months): one bound for the library, the CLI, the study file and the web API.
MAX_MONTHS = 120


class DeliveryOptions(BaseModel):
    """Horizon and reference month of a delivery plan (matching uses the month only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    months: int = Field(6, ge=1, le=MAX_MONTHS, description=f"Delivery horizon, months (1-{MAX_MONTHS})")
    as_of: Month | None = Field(None, description="Reference month YYYY-MM (default: this month)")
