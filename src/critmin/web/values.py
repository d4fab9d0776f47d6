"""Plain values shared by the workspace, its reads and its jobs: JSON conversion, timestamps, and the blocs a run
may replace (one module, so that the three import it and not each other)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

#: Blocs whose membership a run may replace (``blocs`` of a run's parameters).
RUN_BLOCS = ("concern", "like_minded")


def iso_time(d: datetime | None) -> str | None:
    if d is None:
        return None
    if d.tzinfo is None:  # SQLite returns naive datetimes; they were stored in UTC
        d = d.replace(tzinfo=UTC)
    return d.isoformat()


def jsonable(obj: Any) -> Any:
    """Plain JSON values (NaN -> null, numpy -> Python, keys as text), as PostgreSQL's JSON type requires."""
    from critmin.output import json_safe

    return json.loads(json.dumps(json_safe(obj), ensure_ascii=False))
