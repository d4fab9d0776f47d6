"""Text normalisation shared by importers and lookups."""

from __future__ import annotations

import re
import unicodedata

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
