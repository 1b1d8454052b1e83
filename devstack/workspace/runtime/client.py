"""The control plane's handle on one emulated cluster: a driver process and its task executions.

The driver talks JSON lines over a dedicated pipe pair, never over stdout/stderr: the Spark JVM
and notebook code write there freely, and that output goes to ``cluster_dir/driver.log``.

A task (control plane -> driver): ``exec_id``, ``kind`` ("notebook" | "spark_python"),
``source`` ("WORKSPACE" | "GIT"), ``notebook_path``, ``git_root``, ``python_file``,
``parameters``, ``base_parameters``, ``job_id``, ``run_id``, ``job_run_id``, ``task_key``, ``env``.

A result (passed to ``on_done``): ``exec_id``, ``result_state`` ("SUCCESS" | "FAILED" |
"CANCELED"), ``notebook_result`` (the dbutils.notebook.exit value, cut at 5 MB), ``truncated``,
``error`` (one line), ``error_trace``, ``logs`` (the execution's output, secrets redacted, last
1 MB) and ``spark_started``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.workspace.runtime.fs import StorageMap

# The project root, so `python -m devstack.workspace.runtime.driver` imports from any cwd.
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


class DriverStartError(RuntimeError):
    """The driver process exited or did not report ready in time."""


def _result(exec_id: str, state: str, error: str | None, spark_started: bool) -> dict[str, Any]:
    return {
        "exec_id": exec_id,
        "result_state": state,
        "notebook_result": None,
        "truncated": False,
        "error": error,
        "error_trace": None,
        "logs": "",
        "spark_started": spark_started,
    }


class DriverProcess:
    """One cluster driver: ``start()`` it, ``execute()`` tasks on it, ``kill()`` it.

    :param cluster_id: the cluster this driver stands for (shown in logs and the Spark app name).
    :param cluster_dir: working dir of the driver: ``driver.log``, Spark warehouse/derby/tmp.
    :param data_dir: the workspace data dir; ``dbfs:/`` and ``/Volumes`` map below it.
    :param workspace_url: base URL of the emulated workspace (notebook export, secrets, task values).
    :param token: bearer token for those calls.
    :param env: extra environment of the driver (MLFLOW_TRACKING_URI, spark_env_vars, ...).
    :param spark_conf: Spark properties applied when Spark starts.
    :param storage: where ``/Volumes`` (the shared metastore) and ``abfss://`` paths live; by
        default volumes sit under ``data_dir`` and no storage account is known.
    :param python: the interpreter of the cluster's Python environment
        (:class:`~devstack.workspace.runtime.environment.PythonEnvironment`); by default the
        workspace's own.
    """

    def __init__(
        self,
        cluster_id: str,
        *,
        cluster_dir: Path,
        data_dir: Path,
        workspace_url: str,
        token: str,
        env: dict[str, str] | None = None,
        spark_conf: dict[str, str] | None = None,
        storage: StorageMap | None = None,
        python: str | Path | None = None,
    ):
        self.cluster_id = cluster_id
        # Absolute: the driver runs with cluster_dir as its working directory.
        self.cluster_dir = Path(cluster_dir).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.workspace_url = workspace_url.rstrip("/")
        self.token = token
        self.env = dict(env or {})
        self.spark_conf = dict(spark_conf or {})
        self.storage = storage
        self.python = str(python or sys.executable)
        self.log_path = self.cluster_dir / "driver.log"
        self._popen: subprocess.Popen | None = None
        self._ctrl: Any = None  # write end of the control pipe (file object)
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[str, Callable[[dict], None]] = {}
        self._ready = threading.Event()
        self._spark_started = False
        self._killing = False
        self._exit_handled = False

    # ------------------------------------------------------------------ properties

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"driver of cluster {self.cluster_id} is not started; call start() first")
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def spark_started(self) -> bool:
        return self._spark_started

    @property
    def running(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60) -> None:
        """Spawn the driver and return once it reports ready (Python is up; Spark is not)."""
        if self._popen is not None:
            raise RuntimeError(f"driver of cluster {self.cluster_id} was already started")
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ctrl_r, ctrl_w = os.pipe()
        event_r, event_w = os.pipe()
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        # The token goes through the environment (not argv, which `ps` shows); the driver
        # removes it from its environment before any notebook code runs.
        env["DEVSTACK_DRIVER_TOKEN"] = self.token
        env["DEVSTACK_DRIVER_SPARK_CONF"] = json.dumps(self.spark_conf)
        if self.storage is not None:
            env["DEVSTACK_DRIVER_STORAGE"] = self.storage.to_json()
        cmd = [
            self.python,
            "-m",
            "devstack.workspace.runtime.driver",
            "--cluster-id", self.cluster_id,
            "--cluster-dir", str(self.cluster_dir),
            "--data-dir", str(self.data_dir),
            "--workspace-url", self.workspace_url,
            "--ctrl-fd", str(ctrl_r),
            "--event-fd", str(event_w),
        ]  # fmt: skip
        log = open(self.log_path, "ab")
        try:
            self._popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(ctrl_r, event_w),
                env=env,
                cwd=self.cluster_dir,
                start_new_session=True,
            )
        finally:
            log.close()
            os.close(ctrl_r)
            os.close(event_w)
        self._ctrl = os.fdopen(ctrl_w, "w", encoding="utf-8", buffering=1)
        events = os.fdopen(event_r, "r", encoding="utf-8")
        threading.Thread(
            target=self._read_events, args=(events,), name=f"driver-{self.cluster_id}", daemon=True
        ).start()
        threading.Thread(target=self._watch_exit, name=f"driver-wait-{self.cluster_id}", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if not self.alive:
                raise DriverStartError(
                    f"driver of cluster {self.cluster_id} exited with code {self._popen.returncode} "
                    f"before it was ready; see {self.log_path}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise DriverStartError(
                    f"driver of cluster {self.cluster_id} was not ready within {timeout:.0f}s; "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )

    def execute(self, task: dict, on_done: Callable[[dict], None]) -> None:
        """Send ``task`` to the driver; ``on_done(result)`` is called exactly once, from another thread."""
        exec_id = task["exec_id"]
        with self._lock:
            if exec_id in self._pending:
                raise ValueError(f"execution {exec_id} is already running on cluster {self.cluster_id}")
            self._pending[exec_id] = on_done
        if not self.alive:
            self._complete(_result(exec_id, "FAILED", self._death_message(), self._spark_started))
            return
        try:
            self._send({"op": "execute", "task": task})
        except (OSError, ValueError):
            self._complete(_result(exec_id, "FAILED", self._death_message(), self._spark_started))

    def cancel(self, exec_id: str, grace: float = 5.0) -> None:
        """Interrupt one execution; if it is still running after ``grace`` seconds, kill the driver.

        Returns at once: the outcome arrives through that execution's ``on_done`` (CANCELED).
        """
        with self._lock:
            if exec_id not in self._pending:
                return
        try:
            self._send({"op": "cancel", "exec_id": exec_id})
        except (OSError, ValueError):
            pass

        def escalate() -> None:
            with self._lock:
                still_running = exec_id in self._pending
            if still_running and self.alive:
                self._log_note(f"execution {exec_id} ignored cancel for {grace:.1f}s: killing the driver")
                self.kill()

        timer = threading.Timer(grace, escalate)
        timer.daemon = True
        timer.start()

    def kill(self) -> None:
        """Stop the driver's whole process group (Spark JVM and children included).

        In-flight executions complete with result_state CANCELED.
        """
        if self._popen is None:
            return
        self._killing = True
        pgid = self._popen.pid
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._popen.poll()  # reap the leader, else the group never disappears
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                continue
            break
        try:
            self._popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._on_exit()

    # ------------------------------------------------------------------ internals

    def _send(self, message: dict) -> None:
        line = json.dumps(message) + "\n"
        with self._write_lock:
            self._ctrl.write(line)
            self._ctrl.flush()

    def _read_events(self, events) -> None:
        try:
            for line in events:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                kind = message.get("type")
                if kind == "ready":
                    self._ready.set()
                elif kind == "spark":
                    self._spark_started = bool(message.get("started"))
                elif kind == "done":
                    result = message["result"]
                    if result.get("spark_started"):
                        self._spark_started = True
                    self._complete(result)
        finally:
            events.close()
            # EOF: the driver is gone (or closed the pipe). Wait briefly for the exit status.
            if self._popen is not None:
                try:
                    self._popen.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            self._on_exit()

    def _watch_exit(self) -> None:
        # A grandchild may still hold the event pipe open after the driver died; do not let
        # that keep on_done from firing.
        assert self._popen is not None
        self._popen.wait()
        time.sleep(0.5)  # let the reader deliver results the driver wrote before dying
        self._on_exit()

    def _on_exit(self) -> None:
        if self.alive:
            return
        with self._lock:
            pending = list(self._pending)
            first = not self._exit_handled
            self._exit_handled = True
        if first and self._ctrl is not None:
            try:
                self._ctrl.close()
            except OSError:
                pass
        state = "CANCELED" if self._killing else "FAILED"
        for exec_id in pending:
            self._complete(_result(exec_id, state, self._death_message(), self._spark_started))

    def _death_message(self) -> str:
        code = self._popen.returncode if self._popen is not None else None
        if self._killing:
            return f"Cluster {self.cluster_id} was terminated while the task was running"
        return f"Cluster {self.cluster_id}: the driver process died (exit code {code}); see {self.log_path}"

    def _complete(self, result: dict) -> None:
        with self._lock:
            callback = self._pending.pop(result["exec_id"], None)
        if callback is None:
            return  # already completed: on_done fires exactly once
        threading.Thread(
            target=callback, args=(result,), name=f"on-done-{result['exec_id']}", daemon=True
        ).start()

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "".join(
                self.log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-lines:]
            )
        except OSError:
            return ""

    def _log_note(self, text: str) -> None:
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"[control plane] {text}\n")
        except OSError:
            pass

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen else None
        return f"DriverProcess(cluster_id={self.cluster_id!r}, pid={pid}, alive={self.alive})"
