"""Calendar helpers shared by the planning modules."""

from __future__ import annotations


def month_offset(as_of: str, when: object) -> int | None:
    """Whole months from ``as_of`` (YYYY-MM) to ``when`` (YYYY or YYYY-MM; a year alone counts as July).

    None when ``when`` is missing (blank, None or NaN).
    """
    if not isinstance(when, str) or not when or when == "nan":
        return None
    y, m = int(when[:4]), int(when[5:7]) if len(when) >= 7 else 7
    return (y - int(as_of[:4])) * 12 + (m - int(as_of[5:7]))
