"""Shared helpers of critmin's linear and mixed-integer programmes (portfolio, stockpile, transport, matching)."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

#: One process-wide file descriptor (stdout) is redirected while HiGHS prints its start-up banner: the redirect
#: is held under this lock, so concurrent solver construction (the web's job threads) never leaves stdout closed.
_STDOUT_LOCK = threading.Lock()


def quiet_highs() -> Any:
    """A ``highspy.Highs`` whose start-up banner (printed by the C++ library on stdout when the object is built)
    is discarded, so that JSON and CSV written to stdout stay clean; solver logging is off (``output_flag``).

    The banner is written by the library before any option can be set, so stdout's file descriptor is pointed at
    the null device for the construction only, under a lock (thread-safe within the process)."""
    import highspy

    with _STDOUT_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
    h.setOptionValue("output_flag", False)
    return h
