"""The cluster driver process: ``python -m devstack.workspace.runtime.driver ...``.

Reads JSON lines ({"op": "execute", "task": {...}} / {"op": "cancel", "exec_id": ...}) from the
control fd and writes events ({"type": "ready" | "spark" | "done", ...}) to the event fd. Each
execution runs in its own thread. Imports stay light: Spark and pandas load only when used.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading


class EventWriter:
    """Whole JSON lines to the event fd, from any thread."""

    def __init__(self, fd: int):
        self._file = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def send(self, message: dict) -> None:
        line = json.dumps(message, default=str) + "\n"
        with self._lock:
            try:
                self._file.write(line)
                self._file.flush()
            except (OSError, ValueError):
                pass  # the control plane is gone; the control-fd EOF ends us


def _parse_args(argv: list[str]) -> dict[str, str]:
    # A tiny parser: argparse costs import time on every cluster start.
    args = {}
    it = iter(argv)
    for flag in it:
        if not flag.startswith("--"):
            raise SystemExit(f"driver: unexpected argument {flag!r}")
        try:
            args[flag[2:].replace("-", "_")] = next(it)
        except StopIteration:
            raise SystemExit(f"driver: {flag} needs a value") from None
    for required in ("cluster_id", "cluster_dir", "data_dir", "workspace_url", "ctrl_fd", "event_fd"):
        if required not in args:
            raise SystemExit(f"driver: missing --{required.replace('_', '-')}")
    return args


def _warm_up() -> None:
    # Import what the first execution needs right after "ready", so it is fast too.
    import base64  # noqa: F401
    import ctypes  # noqa: F401
    import shlex  # noqa: F401
    import traceback  # noqa: F401
    import urllib.request  # noqa: F401


def main(argv: list[str]) -> None:
    from pathlib import Path

    args = _parse_args(argv)
    token = os.environ.pop("DEVSTACK_DRIVER_TOKEN", "")
    spark_conf = json.loads(os.environ.pop("DEVSTACK_DRIVER_SPARK_CONF", "") or "{}")
    storage_json = os.environ.pop("DEVSTACK_DRIVER_STORAGE", "")
    ctrl_fd, event_fd = int(args["ctrl_fd"]), int(args["event_fd"])
    # Children (the Spark JVM, %sh-like subprocesses) must not hold our pipes open.
    os.set_inheritable(ctrl_fd, False)
    os.set_inheritable(event_fd, False)
    events = EventWriter(event_fd)
    # `kill -USR1 <driver pid>` dumps every thread's stack into driver.log (a hung notebook).
    import faulthandler

    faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)

    from devstack.workspace.runtime import fuse
    from devstack.workspace.runtime.execution import Execution, install_hooks
    from devstack.workspace.runtime.executor import Runtime, RuntimeConfig
    from devstack.workspace.runtime.fs import StorageMap
    from devstack.workspace.runtime.spark import SparkManager, map_spark_paths

    # dbfs:, /Volumes (the shared metastore) and abfss:// (the workspace's storage accounts).
    storage = StorageMap.from_json(storage_json) if storage_json else StorageMap(Path(args["data_dir"]))
    config = RuntimeConfig(
        cluster_id=args["cluster_id"],
        cluster_dir=Path(args["cluster_dir"]),
        data_dir=Path(args["data_dir"]),
        workspace_url=args["workspace_url"],
        token=token,
        storage=storage,
    )
    spark = SparkManager(
        config.cluster_id,
        config.cluster_dir,
        config.data_dir,
        spark_conf,
        lambda: events.send({"type": "spark", "started": True}),
        storage,
    )
    spark.prepare_environment()
    # pyspark warns about the pandas version on every start; it is noise in every task's logs.
    import warnings

    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    map_spark_paths(storage)
    fuse.install(storage)  # open()/os/pandas on /Volumes and /dbfs, as Databricks' FUSE mounts
    install_hooks()
    runtime = Runtime(config, spark)
    executions: dict[str, Execution] = {}
    lock = threading.Lock()

    def run(execution: Execution) -> None:
        try:
            result = runtime.run(execution)
        except BaseException as exc:  # noqa: BLE001 - never lose a result
            result = {
                "exec_id": execution.exec_id,
                "result_state": "CANCELED" if execution.canceled else "FAILED",
                "notebook_result": None,
                "truncated": False,
                "error": f"driver error: {type(exc).__name__}: {exc}",
                "error_trace": None,
                "logs": "",
                "spark_started": spark.started,
            }
        with lock:
            executions.pop(execution.exec_id, None)
        events.send({"type": "done", "result": result})

    def cancel(exec_id: str) -> None:
        with lock:
            execution = executions.get(exec_id)
        if execution is None:
            return
        print(f"[driver] canceling execution {exec_id}", file=sys.__stderr__, flush=True)
        execution.interrupt()
        spark.cancel(exec_id)

    print(f"[driver] cluster {config.cluster_id} ready (pid {os.getpid()})", file=sys.__stderr__, flush=True)
    events.send({"type": "ready", "pid": os.getpid()})
    # Before the first execute is read: an execution thread racing a background import of the
    # same module is where a cancel could hurt most.
    _warm_up()

    with os.fdopen(ctrl_fd, "r", encoding="utf-8") as ctrl:
        for line in ctrl:
            try:
                message = json.loads(line)
            except ValueError:
                print(f"[driver] ignoring bad control line: {line[:200]!r}", file=sys.__stderr__, flush=True)
                continue
            op = message.get("op")
            if op == "execute":
                task = message["task"]
                execution = Execution(task)
                with lock:
                    executions[execution.exec_id] = execution
                threading.Thread(
                    target=run, args=(execution,), name=f"exec-{execution.exec_id}", daemon=True
                ).start()
            elif op == "cancel":
                threading.Thread(target=cancel, args=(message["exec_id"],), daemon=True).start()
            elif op == "shutdown":
                break
    # The control plane is gone (or asked us to stop): take the whole group down with us, so
    # no Spark JVM or notebook child outlives its cluster.
    print("[driver] control channel closed; exiting", file=sys.__stderr__, flush=True)
    sys.__stderr__.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
