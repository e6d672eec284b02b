"""Child processes of a local cluster: start, read the ready line, stop cleanly.

Each vecshard server prints one JSON line `{"event": "ready", ...}` once it
serves; waiting for that line (not sleeping) is how we know it is up and which
ports it bound.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChildProcess:
    """A server process whose stderr goes to a log file and whose stdout is
    watched for the ready line."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] | None = None
        self._ready_event = threading.Event()
        self._tail: deque[str] = deque(maxlen=40)
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.ready = None
        self._ready_event.clear()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})},
            start_new_session=True,  # Ctrl-C in the terminal reaches only the parent
        )
        self._reader = threading.Thread(
            target=self._read_stdout, args=(self.proc.stdout,), daemon=True
        )
        self._reader.start()

    def _read_stdout(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        with stream:  # closed at EOF, i.e. when the child exits
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                self._tail.append(line)
                if line.startswith("{") and '"event": "ready"' in line:
                    self.ready = json.loads(line)
                    self._keep_address(self.ready)
                    self._ready_event.set()

    def _keep_address(self, ready: dict[str, Any]) -> None:
        """A server told to listen on port 0 picked its own: later starts
        ask for that one, so a restart comes back on the same address (as
        one behind a Kubernetes Service does). Picking a free port here and
        passing it on instead raced with every other process on the machine
        for it between the check and the child's bind (a test once failed
        on "Address already in use")."""
        if "--listen" not in self.argv or not ready.get("grpc"):
            return
        at = self.argv.index("--listen") + 1
        if at < len(self.argv) and self.argv[at].endswith(":0"):
            self.argv[at] = str(ready["grpc"])

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self._ready_event.wait(0.05):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}")
        assert self.ready is not None
        return self.ready

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup runs in the child."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM, wait for a graceful exit, SIGKILL if it does not come.
        The default outlasts a server's own bound on its stop (grace 20 s +
        core.runtime.STOP_MARGIN_SECONDS), so a hung stop logs its stacks."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        self._join_reader()
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
