"""Calendar helpers shared by the planning modules."""

from __future__ import annotations

import datetime
import re
from typing import Annotated

from pydantic import AfterValidator

#: A month ``YYYY-MM`` with a month 01-12: one pattern for the CLI, the web API, the study file and the library.
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


def check_month(value: str | None) -> str | None:
    """``YYYY-MM`` with a month 01-12, or None; ValueError otherwise (pydantic validators use it as it is)."""
    if value is None:
        return None
    if not re.fullmatch(MONTH_PATTERN, str(value)):
        raise ValueError(f"'{value}' is not a month YYYY-MM (01-12)")
    return str(value)


def current_month() -> str:
    """This month, ``YYYY-MM``: the default reference month of every planning entry point (none hard-codes one)."""
    d = datetime.date.today()
    return f"{d.year:04d}-{d.month:02d}"


def month_or_now(value: str | None) -> str:
    """``value`` when given, else :func:`current_month`."""
    return value or current_month()


#: A month ``YYYY-MM`` (01-12) as a pydantic field type: the options models of portfolio, stockpile and
#: delivery, the study file and the web API all use it, so a bad month gets one message everywhere.
Month = Annotated[str, AfterValidator(lambda v: check_month(v))]


def require_month(value: str | None, name: str = "as_of") -> str | None:
    """:func:`check_month` for library entry points: a :class:`critmin.errors.CritminError` naming the option,
    raised before any work starts."""
    from critmin.errors import CritminError

    try:
        return check_month(value)
    except ValueError as exc:
        raise CritminError(f"{name}: {exc}") from exc


def month_offset(as_of: str, when: object) -> int | None:
    """Whole months from ``as_of`` (YYYY-MM) to ``when`` (YYYY or YYYY-MM; a year alone counts as July).

    None when ``when`` is missing (blank, None or NaN).
    """
    if not isinstance(when, str) or not when or when == "nan":
        return None
    y, m = int(when[:4]), int(when[5:7]) if len(when) >= 7 else 7
    return (y - int(as_of[:4])) * 12 + (m - int(as_of[5:7]))


def sponsor_offset(as_of: str, when: object) -> int | None:
    """:func:`month_offset` of a sponsor's date, except that a year-only date in ``as_of``'s own year counts as not yet
    passed (0): a year alone reads as July, so a plant dated "2026" was five months behind in a December 2026 plan
    (review 33b G6; the deliveries since review 36)."""
    off = month_offset(as_of, when)
    if off is not None and isinstance(when, str) and len(when) == 4 and when == as_of[:4]:
        return 0
    return off


def add_months(as_of: str, months: float) -> str:
    """The month (YYYY-MM) ``months`` after ``as_of`` (YYYY-MM), rounded to the nearest whole month."""
    total = int(as_of[:4]) * 12 + int(as_of[5:7]) - 1 + int(round(months))
    return f"{total // 12:04d}-{total % 12 + 1:02d}"
