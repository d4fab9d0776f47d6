"""Text the PDF reports can draw: matplotlib's bundled DejaVu fonts lack Japanese and Chinese glyphs, and a
project or buyer named in Japanese (a METI or JOGMEC user's own register) made the PDF writer warn for every
missing glyph (an error under the test suite's warnings policy, tofu boxes in production). The PDF replaces each
character its fonts cannot draw by :data:`MISSING_GLYPH` and says so on its first page; the HTML and the
workbook carry the text as written. Shipping a CJK font (about 16 MB) would break the lean-repository rule.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

#: Drawn in place of a character the PDF fonts lack.
MISSING_GLYPH = "?"
#: The note a PDF carries when it replaced characters.
MISSING_NOTE = ("Some names use characters the PDF's fonts cannot draw (e.g. Japanese); they are shown as '?' here. "
                "The HTML report and the workbook carry them as written.")


@lru_cache(maxsize=1)
def pdf_charset() -> frozenset[int]:
    """Code points every font of the PDF reports can draw (DejaVu Sans and DejaVu Sans Mono, bundled with matplotlib)."""
    from matplotlib import font_manager, ft2font

    out: set[int] | None = None
    for family in ("DejaVu Sans", "DejaVu Sans Mono"):
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=True)
        chars = set(ft2font.FT2Font(path).get_charmap())
        out = chars if out is None else out & chars
    return frozenset(out or ())


def pdf_text(obj: Any) -> tuple[Any, int]:
    """``obj`` (a record of dicts, lists and scalars) with every string's undrawable characters replaced, and how
    many characters were replaced. Line breaks and tabs are kept."""
    charset = pdf_charset()
    count = 0

    def fix(v: Any) -> Any:
        nonlocal count
        if isinstance(v, str):
            if all(ord(c) in charset or c in "\n\t" for c in v):
                return v
            out = []
            for c in v:
                if ord(c) in charset or c in "\n\t":
                    out.append(c)
                else:
                    out.append(MISSING_GLYPH)
                    count += 1
            return "".join(out)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(fix(x) for x in v)
        return v

    return fix(obj), count
