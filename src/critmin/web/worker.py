"""Runs executed outside the server process (issue 14, finding 7).

A run is pure Python and NumPy for seconds to minutes. Executed on a thread of the server, it holds the
GIL for long stretches and every request waits behind it (a 20-minute plan once made a one-row read take
231 s). ``critmin serve`` therefore hands each run to a worker process (``--jobs process``, the default) or
to a Dask cluster (``--jobs dask --dask ADDRESS``); the server only validates, queues and answers reads.

A worker is told *how to build* the workspace's definitions (:class:`WorkerSetup`: the database URL and the
atlas, blocs and parameter files the server was started with), never sent them: it builds its own
simulator once and keeps it for every run it executes. Everything else a run needs travels with the run
(:func:`portable`): its validated parameters, the records it reads (read once, when the run was
submitted) and its scenarios. Parameter overrides, bloc membership and an uploaded study are rebuilt in
the worker from the run's parameters or the uploaded bytes, with the same code the server used to check
them. The worker reports progress, and learns of a cancellation, through the run's row in the database,
so any server process on the database can cancel it. The worker's entry points (``worker_start``,
``worker_warm``, ``worker_execute``) live beside the job runner in :mod:`critmin.web.jobs`, which imports
this module (never the reverse).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

#: Seconds between two checks, in a worker process, that the server that started it is still alive (a
#: worker whose server was killed exits instead of running on unobserved).
PARENT_CHECK_S = 1.0


@dataclass(frozen=True)
class WorkerSetup:
    """How a worker builds the definitions the server uses: the database URL (a file or server both can
    reach, never an in-memory SQLite database) and the ``--atlas``, ``--blocs`` and ``--params`` files of
    ``critmin serve`` (None: the bundled ones)."""

    database_url: str
    atlas: str | None = None
    blocs: str | None = None
    params: str | None = None

    def check(self) -> None:
        """A worker cannot reach an in-memory SQLite database: refuse it at once."""
        if self.database_url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in self.database_url:
            raise ValueError("runs in worker processes need a database they can open too (a SQLite file or PostgreSQL), not an in-memory one")

    def simulator(self) -> Any:
        """The simulator this setup names (the bundled atlas and parameters unless files were given)."""
        from pathlib import Path

        from critmin.atlas import load_atlas
        from critmin.simulate.parameters import Parameters
        from critmin.simulate.run import Simulator

        atlas = load_atlas(Path(self.atlas) if self.atlas else None, blocs=Path(self.blocs) if self.blocs else None)
        return Simulator.build(atlas, Parameters.load(Path(self.params) if self.params else None, {}))


def watch_parent(server_pid: int) -> None:
    """In a worker process: exit as soon as the server that started it (``server_pid``, passed by the server:
    a worker whose server died while it was still starting already has another parent) is gone, e.g.
    killed, instead of running on unobserved (checked every ``PARENT_CHECK_S``)."""
    if os.getppid() != server_pid:
        os._exit(0)
    threading.Thread(target=_exit_with_parent, args=(server_pid,), daemon=True, name="critmin-parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(0)


def portable(inputs: dict[str, Any]) -> dict[str, Any]:
    """What of a run's inputs travels to a worker: the records (frames) and scenarios as read at submission,
    and an uploaded study's bytes. Parameter overrides and bloc membership are rebuilt from the run's
    parameters, a study from its bytes (``JobRunner.execute(..., rebuild=True)``)."""
    return {k: v for k, v in inputs.items() if k not in ("atlas", "parameters", "study")}
