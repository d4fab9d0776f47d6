"""A workspace server as a separate process: start ``critmin serve`` on a free loopback port, wait until
``/api/health`` answers, stop or kill it; and ``critmin user add`` as a subprocess. Used by the end-to-end,
durability and load tests (real server processes, never an in-process app) and handy for scripts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def critmin_command(*args: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m critmin ARGS`` with this interpreter; output captured as text. A failing command is
    returned with its exit status (no exception); one running past ``timeout`` seconds raises
    ``subprocess.TimeoutExpired``."""
    return subprocess.run([sys.executable, "-m", "critmin", *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def add_user(database: str, email: str, org: str, role: str, password: str, cwd: Path | None = None) -> None:
    """``critmin user add`` (creates the organisation when new); raises with the command's message on failure."""
    r = critmin_command("user", "add", email, "--org", org, "--role", role, "--password-stdin", "--database", database,
                        stdin=password + "\n", cwd=cwd)
    if r.returncode != 0:
        raise RuntimeError(f"critmin user add {email} failed ({r.returncode}): {r.stderr.strip()}")


class ServerProcess:
    """``critmin serve --port P --database URL`` in a child process; its output goes to ``log`` (default: a
    temporary file), which a failed start quotes. ``start()`` waits for ``/api/health``; ``stop()``
    terminates, ``kill()`` sends SIGKILL. A context manager: started on entry, stopped on exit."""

    def __init__(self, database: str, cwd: Path | None = None, log: Path | None = None, extra_args: tuple[str, ...] = ()):
        self._own_log = log is None  # a temporary log is removed when the server is stopped
        if log is None:
            fd, name = tempfile.mkstemp(prefix="critmin-serve-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.database, self.cwd, self.log, self.extra_args = database, cwd, log, extra_args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> ServerProcess:
        """Start the server and return once ``/api/health`` answers 200; raises with the server's output when
        it exits or does not answer within ``timeout`` seconds."""
        cmd = [sys.executable, "-m", "critmin", "serve", "--port", str(self.port), "--database", self.database, *self.extra_args]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}){self._output()}")
            try:
                with urllib.request.urlopen(self.base + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the server did not answer /api/health in {timeout:.0f} s{self._output()}")
            time.sleep(0.2)

    def _output(self) -> str:
        return f":\n{self.log.read_text(errors='replace')}" if self.log.is_file() else ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it has not exited after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the process dies at once, whatever it was writing."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        if self._own_log:
            self.log.unlink(missing_ok=True)
