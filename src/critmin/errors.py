"""Exceptions raised by critmin. Every data error names the file, the row and the field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is and what is wrong.

    ``line`` is the 1-based line number in the file (the header is line 1), or None when the problem concerns
    the file as a whole.
    """

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class CritminError(Exception):
    """Base class of critmin's own errors."""


class AtlasError(CritminError):
    """Invalid atlas data. ``problems`` lists every problem found (the message shows the first ones)."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(file="<atlas>", line=None, field=None, message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} problem(s) in atlas data:\n  {shown}{more}")

    @property
    def first(self) -> Problem:
        return self.problems[0]


class ImportDataError(AtlasError):
    """A raw source file cannot be imported (raised by the atlas builder)."""


class MethodError(CritminError):
    """Unknown method, perspective or invalid parameter."""


class OptionsError(CritminError, ValueError):
    """Options of a run out of their bounds (``critmin.inputs.make_options``): every bad option named, before any
    work starts."""
