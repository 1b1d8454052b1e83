"""Start and stop the devstack's long-running processes (workspaces, MLflow, Airflow).

Every process gets its own process group, so stopping it also stops whatever it spawned
(notebook drivers, Spark JVMs, server workers) and nothing is left behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class ProcessStartError(RuntimeError):
    """A devstack process exited or never became ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """A child process in its own group, with its output teed to a log file."""

    name: str
    popen: subprocess.Popen | None
    log_path: Path
    pid_override: int | None = None
    _lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen is not None else int(self.pid_override)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode if self.popen is not None else None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return group_alive(self.pid)

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                with self._cond:
                    self._lines.append(line)
                    del self._lines[:-200]
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        """Block until a line of output matches ``pattern``; fail clearly if it never does."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        if self.popen is None or self.popen.stdout is None:
            return self._wait_for_line_in_log(regex, pattern, deadline, timeout)
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self._lines)
                if not self.alive() and seen == len(self._lines):
                    raise ProcessStartError(
                        f"{self.name} exited with code {self.returncode} before printing "
                        f"{pattern!r}; see {self.log_path}:\n{self.tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProcessStartError(
                        f"{self.name} did not print {pattern!r} within {timeout:.0f}s; "
                        f"see {self.log_path}:\n{self.tail()}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def _wait_for_line_in_log(
        self, regex: re.Pattern, pattern: str, deadline: float, timeout: float
    ) -> re.Match:
        """Detached processes write straight to their log file: poll it."""
        while True:
            try:
                text = self.log_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            match = regex.search(text)
            if match:
                return match
            if not self.alive():
                raise ProcessStartError(
                    f"{self.name} exited before printing {pattern!r}; see {self.log_path}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"{self.name} did not print {pattern!r} within {timeout:.0f}s; see {self.log_path}:\n{self.tail()}"
                )
            time.sleep(0.2)

    def tail(self, lines: int = 30) -> str:
        try:
            return "".join(self.log_path.read_text(encoding="utf-8").splitlines(True)[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is still there."""
        stop_group(self.pid, timeout)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, timeout: float = 15.0) -> None:
    """Stop the process group ``pgid``: SIGTERM, wait up to ``timeout``, then SIGKILL."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        # Reap our own child if it is the leader, so the group can disappear.
        try:
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_process(
    name: str,
    cmd: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    detached: bool = False,
) -> ManagedProcess:
    """Start ``cmd`` in a new process group, its stdout+stderr teed into ``log_path``.

    ``detached`` processes write to the log file directly, so they outlive this process
    (``python -m devstack up`` returns while the stack keeps running).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if detached:
        # A fresh log: the readiness check reads it, and must not see an older run's lines.
        with open(log_path, "w", encoding="utf-8") as log:
            popen = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        return ManagedProcess(name=name, popen=popen, log_path=log_path)
    popen = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    proc = ManagedProcess(name=name, popen=popen, log_path=log_path)
    threading.Thread(target=proc._pump, name=f"pump-{name}", daemon=True).start()
    return proc


def wait_for_http(url: str, timeout: float, proc: ManagedProcess | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status below 500)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ProcessStartError(
                f"{proc.name} exited with code {proc.returncode}; see {proc.log_path}:\n{proc.tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last_error = exc
        except OSError as exc:
            last_error = exc
        time.sleep(0.2)
    tail = f"\n{proc.tail()}" if proc is not None else ""
    raise ProcessStartError(f"{url} did not answer within {timeout:.0f}s ({last_error}){tail}")
