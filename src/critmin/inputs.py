"""One set of rules for text and integers coming from users, wherever they enter (API bodies, CSV and Excel
imports, study files): what both databases, the JSON encoder and the workbook writers can store and read back.

* text: valid Unicode scalar values (no lone UTF-16 surrogate), and no control character other than tab,
  line feed and carriage return (a NUL or U+0001 broke the Excel export for every organisation; issue 14);
* integers: within ±(2^53 - 1), the range JSON numbers hold exactly (2^63 overflowed int64 columns and the
  exporters; issue 14).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, model_validator

#: Largest integer accepted anywhere (JavaScript's Number.MAX_SAFE_INTEGER; fits int64 with room).
INT_LIMIT = 2**53 - 1

_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def text_problem(s: str) -> str | None:
    """Why a text cannot be stored, or None."""
    m = _BAD.search(s)
    if m is None:
        return None
    ch = m.group(0)
    if "\ud800" <= ch <= "\udfff":
        return f"contains a lone UTF-16 surrogate (U+{ord(ch):04X}), which is not text"
    return f"contains the control character U+{ord(ch):04X}"


def printable(s: str) -> str:
    """``s`` with every character :func:`text_problem` refuses written as a ``\\uXXXX`` escape: user text
    quoted in an error message (a message that held a lone surrogate could not itself be sent)."""
    return _BAD.sub(lambda m: f"\\u{ord(m.group(0)):04x}", s)


#: A regular expression (JSON Schema ``pattern`` and pydantic) for text without the control characters
#: :func:`text_problem` refuses (lone surrogates cannot pass a JSON string's decoding into pydantic anyway).
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"


def int_problem(n: int) -> str | None:
    """Why an integer cannot be stored, or None."""
    if abs(n) > INT_LIMIT:
        return f"{n} is outside the range of integers accepted (±{INT_LIMIT:,})"
    return None


def value_problem(v: Any) -> str | None:
    """:func:`text_problem` or :func:`int_problem` for one scalar value (None for other types)."""
    if isinstance(v, str):
        return text_problem(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return int_problem(v)
    return None


def check_fields(values: Any) -> Any:
    """A pydantic ``model_validator(mode="before")`` body: every scalar field of a row obeys the rules above
    (ValueError naming the field otherwise)."""
    if isinstance(values, dict):
        for k, v in values.items():
            why = value_problem(v)
            if why:
                raise ValueError(f"field '{k}': {why}")
    return values


def check_values(model: Any) -> Any:
    """A pydantic ``model_validator(mode="after")`` body: the same rules on the parsed fields (an integer read
    from CSV text is only an integer after parsing)."""
    for k, v in model.__dict__.items():
        why = value_problem(v)
        if why:
            raise ValueError(f"field '{k}': {why}")
    return model


class CheckedRow(BaseModel):
    """Base of every model that reads user rows (register, buyers): the rules above on the raw and the parsed
    fields, so that an import refuses what the API refuses."""

    @model_validator(mode="before")
    @classmethod
    def _raw_fields(cls, values: Any) -> Any:
        return check_fields(values)

    @model_validator(mode="after")
    def _parsed_fields(self) -> Any:
        return check_values(self)



#: Monte Carlo draws and the random seed, bounded alike for every entry point (library, CLI, study file, web).
#: The web server adds its own, lower, resource quota on draws (``critmin.web.jobs.MAX_DRAWS``).
MAX_DRAWS = 1_000_000
SEED_LIMIT = 2**32 - 1


def option_problems(exc: Any) -> list[str]:
    """A pydantic ValidationError of an options model as ``option: message`` lines (the CLI, the library and the
    study file show the same wording; the web API returns the same messages field by field)."""
    out = []
    for e in exc.errors(include_url=False):
        name = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] not in ("value_error", "missing") and isinstance(e.get("input"), str | int | float):
            msg += f" (got {e['input']!r})"
        out.append(f"{name}: {msg}" if name else msg)  # a model-level check names its fields itself
    return out


def make_options(model: type[BaseModel], **fields: Any) -> Any:
    """``model(**fields)``, or :class:`critmin.errors.OptionsError` naming every bad option."""
    from pydantic import ValidationError

    from critmin.errors import OptionsError

    try:
        return model(**fields)
    except ValidationError as exc:
        raise OptionsError("; ".join(option_problems(exc))) from None
