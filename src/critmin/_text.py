"""Text shared across packages: name normalisation for importers and lookups, USD for sentences."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

_WS = re.compile(r"\s+")


def normalise_name(text: object) -> str:
    """Normalise a name as written in a source: NBSP and other Unicode spaces to one space, trimmed.

    ``'United\\xa0States  (kyanite) '`` -> ``'United States (kyanite)'``.
    """
    if text is None:
        return ""
    s = unicodedata.normalize("NFC", str(text)).replace("\ufeff", "")
    return _WS.sub(" ", s.replace("\xa0", " ")).strip()


def alias_key(text: object) -> str:
    """Case-insensitive lookup key of a normalised name."""
    return normalise_name(text).casefold()


def slug(text: object) -> str:
    """Lower snake_case identifier: ``'Rare Earth Elements'`` -> ``'rare_earth_elements'``."""
    s = normalise_name(text).casefold()
    s = re.sub(r"[^0-9a-z]+", "_", s)
    return s.strip("_")


def usd_apart(a: float, b: float) -> tuple[str, str]:
    """Two USD figures for a comparison, with a decimal more where :func:`usd` would print them alike (review 36:
    "$1 M a year against $1 M needed" read as a tie; it was $933 k against $1.4 M)."""
    x, y = usd(a), usd(b)
    if x != y or not (np.isfinite(a) and np.isfinite(b)):
        return x, y

    def fine(v: float) -> str:
        w, sign = abs(v), "-" if v < 0 else ""
        for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if w >= scale:
                return f"{sign}${w / scale:,.2f} {unit}"
        return f"{sign}${w:,.2f}"

    return fine(a), fine(b)


def usd(v: float) -> str:
    """USD for a sentence: $1.2 B, $340 M, $12 k."""
    if v is None or not np.isfinite(v):
        return "n/a"
    a, sign = abs(v), "-" if v < 0 else ""
    if a >= 1e9:
        return f"{sign}${a / 1e9:,.1f} B"
    if a >= 1e6:
        return f"{sign}${a / 1e6:,.0f} M"
    if a >= 1e3:
        return f"{sign}${a / 1e3:,.0f} k"
    return f"{sign}${a:,.0f}"
