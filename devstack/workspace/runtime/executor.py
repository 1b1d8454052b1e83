"""Running one task execution: notebooks cell by cell, Python files as ``__main__``."""

from __future__ import annotations

import ast
import builtins
import linecache
import os
import posixpath
import re
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.workspace.runtime import notebook as nb
from devstack.workspace.runtime.dbutils import (
    DBUtils,
    JobsUtils,
    NotebookContext,
    NotebookUtils,
    SecretsUtils,
    TaskValuesUtils,
    WidgetsUtils,
)
from devstack.workspace.runtime.execution import (
    Execution,
    ExecutionCanceled,
    NotebookExit,
    current,
    ensure_hooks,
    importing,
    redact,
)
from devstack.workspace.runtime.fs import FsUtils, StorageMap, to_local
from devstack.workspace.runtime.spark import LazyProxy, SparkManager, display, display_html
from devstack.workspace.runtime.wsclient import WorkspaceApiError, WorkspaceClient
from devstack.workspace.runtime.wsfiles import WorkspaceFiles

RESULT_CAP = 5 * 1024 * 1024  # dbutils.notebook.exit values are cut at 5 MB, as on Databricks
_RUNTIME_DIR = str(Path(__file__).resolve().parent)
_WORKSPACE_ROOTS = ("/Users/", "/Shared/", "/Repos/", "/Workspace/")


class TaskError(RuntimeError):
    """A task that cannot run as specified (bad kind, missing file, unsupported cell)."""


class CellError(RuntimeError):
    """A non-Python cell failed; the message already reads "<Error>: <what> (in <cell>)"."""


class NotebookRunError(RuntimeError):
    """``dbutils.notebook.run`` of a child notebook failed or timed out."""


@dataclass
class RuntimeConfig:
    cluster_id: str
    cluster_dir: Path
    data_dir: Path
    workspace_url: str
    token: str
    # Where dbfs:, /Volumes and abfss:// paths live; None: DBFS and volumes under data_dir.
    storage: StorageMap | None = None


class Runtime:
    """What all executions of one driver share: the workspace client, Spark, DBFS."""

    def __init__(self, config: RuntimeConfig, spark: SparkManager):
        self.config = config
        self.client = WorkspaceClient(config.workspace_url, config.token)
        self.spark = spark
        self.storage = config.storage or StorageMap(config.data_dir)
        self.fs = FsUtils(self.storage)
        self.workspace_files = WorkspaceFiles(self.client, config.cluster_dir / "workspace")
        self.spark_proxy = LazyProxy(spark.session, "spark")
        self.sc_proxy = LazyProxy(lambda: spark.session().sparkContext, "sc")

    def run(self, execution: Execution) -> dict[str, Any]:
        """Run ``execution`` in the calling thread and return its result dict."""
        if execution.task.get("kind") in ("command", "command_context_destroy"):
            from devstack.workspace.runtime.commands import run_command  # Command Execution API 1.2

            return run_command(self, execution)
        ensure_hooks()
        execution.enter()
        state, value, error, trace = "SUCCESS", None, None, None
        try:
            try:
                execution.check_canceled()  # a cancel that arrived before this thread started
                self.spark.tag_thread()
                task = execution.task
                kind = task.get("kind")
                if kind == "notebook":
                    self._run_notebook_task(execution)
                elif kind == "spark_python":
                    self._run_python_file(execution)
                elif kind == "python_wheel":
                    self._run_wheel_entry_point(execution)
                else:
                    raise TaskError(
                        f"Unknown task kind {kind!r}: expected 'notebook', 'spark_python' or 'python_wheel'"
                    )
            except NotebookExit as exc:
                value = exc.value
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    state, error, trace = "FAILED", f"SystemExit: {exc.code}", _format_trace(exc)
            except ExecutionCanceled:
                state = "CANCELED"
            except BaseException as exc:  # noqa: BLE001 - every failure becomes a FAILED result
                state, error, trace = "FAILED", _one_line(exc), _format_trace(exc)
            execution.finish()
        except ExecutionCanceled:
            # A cancel that arrived while we were already wrapping up.
            state = "CANCELED"
        finally:
            execution.finish()  # idempotent: no async cancel may hit the code below
            execution.leave()
            for key in execution.linecache_keys:
                linecache.cache.pop(key, None)
        if execution.canceled and state != "SUCCESS":
            state, error = "CANCELED", error and f"Canceled: {error}"
        if state == "CANCELED" and error is None:
            error = f"Run canceled (execution {execution.exec_id})"
        truncated = False
        if value is not None and len(value) > RESULT_CAP:
            value, truncated = value[:RESULT_CAP], True
        return {
            "exec_id": execution.exec_id,
            "result_state": state,
            "notebook_result": value,
            "truncated": truncated,
            "error": redact(error) if error else None,
            "error_trace": redact(trace) if trace else None,
            "logs": execution.output.text(),
            "spark_started": self.spark.started,
        }

    # ------------------------------------------------------------------ notebooks

    def _run_notebook_task(self, execution: Execution) -> None:
        task = execution.task
        path = task.get("notebook_path")
        if not path:
            raise TaskError("notebook task has no notebook_path")
        source = (task.get("source") or "WORKSPACE").upper()
        ref = nb.NotebookRef(source, path if source == "GIT" else _workspace_path(path), task.get("git_root"))
        NotebookRun(self, execution, ref, task.get("base_parameters") or {}).run()

    # ------------------------------------------------------------------ python files

    def _run_python_file(self, execution: Execution) -> None:
        task = execution.task
        spec = task.get("python_file")
        if not spec:
            raise TaskError("spark_python task has no python_file")
        filename, code_text = self._read_python_file(spec, task)
        execution.argv = [filename, *[str(p) for p in task.get("parameters") or []]]
        if task.get("source", "").upper() == "GIT" and task.get("git_root"):
            _add_sys_path(task["git_root"])
        if os.path.isabs(filename) and os.path.exists(filename):
            _add_sys_path(os.path.dirname(filename))
        _cache_source(execution, filename, code_text)
        code = compile(code_text, filename, "exec")
        namespace = {"__name__": "__main__", "__file__": filename, "__builtins__": builtins}
        exec(code, namespace)

    def _run_wheel_entry_point(self, execution: Execution) -> None:
        """A python_wheel task: the package's entry point named ``entry_point`` (its entry points
        metadata, console_scripts first), else ``<package>.<entry_point>()``, with sys.argv set."""
        import importlib
        import importlib.metadata as metadata

        task = execution.task
        package, entry_point = task["package_name"], task["entry_point"]
        execution.argv = [package, *[str(p) for p in task.get("parameters") or []]]
        importlib.invalidate_caches()  # the task's libraries were installed just now

        def norm(name: str) -> str:
            return name.lower().replace("-", "_").replace(".", "_")

        func = None
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            dist = next(
                (d for d in metadata.distributions() if norm(d.metadata["Name"] or "") == norm(package)), None
            )
        if dist is not None:
            found = sorted(
                (ep for ep in dist.entry_points if ep.name == entry_point),
                key=lambda ep: ep.group != "console_scripts",
            )
            if found:
                func = found[0].load()
        if func is None:
            try:
                module = importlib.import_module(package.replace("-", "_"))
            except ModuleNotFoundError:
                raise TaskError(
                    f"Python wheel with name {package} could not be found. Please check the driver logs for "
                    "more details (is the wheel in the task's libraries?)"
                ) from None
            func = getattr(module, entry_point, None)
            if not callable(func):
                raise TaskError(
                    f"No entry point {entry_point!r} in package {package} (its metadata or module)"
                )
        result = func()
        if isinstance(result, int) and result != 0:  # a console script's return value is its exit code
            raise SystemExit(result)

    def _read_python_file(self, spec: str, task: dict) -> tuple[str, str]:
        if task.get("source", "").upper() == "GIT" and not spec.startswith(("/", "dbfs:", "file:")):
            root = task.get("git_root")
            if not root:
                raise TaskError(
                    f"python_file {spec}: source is GIT but the task has no git checkout (git_root)"
                )
            path = Path(root) / spec
            if not path.is_file():
                raise FileNotFoundError(f"python_file {spec} not found in git checkout {root}")
            return str(path), path.read_text(encoding="utf-8")
        if spec.startswith(("dbfs:", "file:", "/dbfs/", "/Volumes/")):
            path = to_local(spec, self.storage)
            if not path.is_file():
                raise FileNotFoundError(f"python_file {spec} does not exist (looked at {path})")
            return str(path), path.read_text(encoding="utf-8")
        if spec.startswith(_WORKSPACE_ROOTS) and not Path(spec).is_file():
            return self._export_workspace_file(spec)
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"python_file {spec} does not exist")
        return str(path), path.read_text(encoding="utf-8")

    def _export_workspace_file(self, spec: str) -> tuple[str, str]:
        import base64

        # Mirror the file's folder: its neighbours become importable and __file__ is a real path.
        path = _workspace_path(spec)
        if path.startswith("/Workspace/"):
            path = path[len("/Workspace") :]
        local_dir = self.workspace_files.mirror(posixpath.dirname(path) or "/")
        if local_dir is not None:
            local = local_dir / posixpath.basename(path)
            if local.is_file():
                return str(local), local.read_text(encoding="utf-8")
        try:
            answer = self.client.get("/api/2.0/workspace/export", path=_workspace_path(spec), format="SOURCE")
        except WorkspaceApiError as exc:
            if exc.status == 404:
                raise FileNotFoundError(f"python_file {spec} does not exist in the workspace") from None
            raise
        return f"<workspace {spec}>", base64.b64decode(answer.get("content") or "").decode("utf-8")


class NotebookRun:
    """One notebook invocation (the task's notebook, or a ``dbutils.notebook.run`` child):
    its own namespace and widgets; ``%run`` notebooks join them."""

    def __init__(self, runtime: Runtime, execution: Execution, ref: nb.NotebookRef, params: dict[str, Any]):
        self.runtime = runtime
        self.execution = execution
        self.ref = ref
        self.widgets = WidgetsUtils(params)
        task = execution.task
        self.dbutils = DBUtils(
            fs=runtime.fs,
            secrets=SecretsUtils(runtime.client),
            widgets=self.widgets,
            notebook=NotebookUtils(self._run_child, self._context(task)),
            jobs=JobsUtils(TaskValuesUtils(runtime.client, task.get("job_run_id"), task.get("task_key"))),
        )
        self.namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "dbutils": self.dbutils,
            "spark": runtime.spark_proxy,
            "sc": runtime.sc_proxy,
            "display": display,
            "displayHTML": display_html,
            "getArgument": self.widgets.getArgument,
        }

    def _context(self, task: dict[str, Any]) -> NotebookContext:
        config = self.runtime.config
        info = {key: task.get(key) for key in ("job_id", "run_id", "job_run_id", "task_key")}
        info["cluster_id"] = config.cluster_id
        info["notebook_path"] = self.ref.path
        # apiToken is the run's own short-lived token where the workspace issued one.
        token = (task.get("env") or {}).get("DATABRICKS_TOKEN") or config.token
        return NotebookContext(info, config.workspace_url, token)

    def run(self) -> None:
        if self.ref.source == "GIT" and self.ref.git_root:
            # As on Databricks Repos: the repo root and the notebook's folder are importable.
            _add_sys_path(self.ref.git_root)
            _add_sys_path(str(Path(self.ref.git_root) / os.path.dirname(self.ref.path)))
        elif self.ref.source == "WORKSPACE":
            # Workspace files next to the notebook are importable, as on Databricks.
            local = self.runtime.workspace_files.mirror(posixpath.dirname(self.ref.path) or "/")
            if local is not None:
                _add_sys_path(str(local))
        self._run_cells(nb.load(self.ref, self.runtime.client), [self.ref.path])

    def _run_cells(self, notebook: nb.Notebook, stack: list[str]) -> None:
        ref = notebook.ref
        for cell in notebook.cells:
            self.execution.check_canceled()
            self._bind_spark()
            where = f"{ref.path}, cell {cell.index}"
            if cell.kind == "python":
                self._exec_python(cell.text, f"<notebook {where}>")
            elif cell.kind in nb.SKIPPED:
                if cell.kind not in ("md", "md-sandbox"):
                    first = cell.text.splitlines()[0] if cell.text else ""
                    print(f"[devstack] skipped %{cell.kind} cell ({where}): {first}")
            elif cell.kind == "run":
                self._inline(ref, cell.text, stack, where)
            elif cell.kind == "sql":
                try:
                    self._exec_sql(cell.text)
                except Exception as exc:
                    # SQL has no Python frames: say which cell failed.
                    where_sql = f"%sql cell {cell.index} of notebook {ref.path}"
                    raise CellError(f"{_one_line(exc)} (in {where_sql})") from exc
            elif cell.kind == "fs":
                self._exec_fs(cell.text, where)
            elif cell.kind in ("scala", "r"):
                raise TaskError(
                    f"Cell {cell.index} of notebook {ref.path} is a %{cell.kind} cell; the devstack runs "
                    f"Python and SQL cells only. Port that cell to Python."
                )
            else:
                raise TaskError(f"Cell {cell.index} of notebook {ref.path}: unknown magic %{cell.kind}")

    def _bind_spark(self) -> None:
        """Once Spark runs, cells get the real session (not the lazy proxy) as ``spark`` and ``sc``."""
        spark = self.runtime.spark
        if not spark.started:
            return
        spark.tag_thread()  # user code may have started Spark itself in the last cell
        if self.namespace.get("spark") is self.runtime.spark_proxy:
            session = spark.session()
            self.namespace["spark"] = session
            if self.namespace.get("sc") is self.runtime.sc_proxy:
                self.namespace["sc"] = session.sparkContext

    def _exec_python(self, text: str, filename: str) -> None:
        _cache_source(self.execution, filename, text)
        tree = ast.parse(text, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            # Like a notebook UI: the value of a cell's last expression is displayed.
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is not None:
            value = eval(compile(last, filename, "eval"), self.namespace)
            if value is not None:
                display(value)

    def _inline(self, ref: nb.NotebookRef, text: str, stack: list[str], where: str) -> None:
        target, args = _parse_run(text, where)
        child = ref.resolve(target)
        if child.path in stack:
            cycle = " -> ".join([*stack, child.path])
            raise TaskError(f"%run cycle in {where}: {cycle}")
        self.widgets._passed.update(args)
        self._run_cells(nb.load(child, self.runtime.client), [*stack, child.path])

    def _exec_sql(self, text: str) -> None:
        # ${name} is replaced by the widget's value, as in Databricks SQL cells.
        text = re.sub(r"\$\{(\w+)\}", lambda m: self.widgets.get(m.group(1)), text)
        statements = [s.strip() for s in text.split(";") if s.strip()]
        result = None
        spark = self.runtime.spark.session()
        for statement in statements:
            result = spark.sql(statement)
        if result is not None:
            display(result)

    def _exec_fs(self, text: str, where: str) -> None:
        command, *args = text.split()
        method = getattr(self.runtime.fs, command, None)
        if method is None or command.startswith("_"):
            raise TaskError(f"%fs {command} in {where} is not supported; use ls, head, cp, mv, rm, mkdirs")
        result = method(*args)
        if isinstance(result, list):
            for info in result:
                print(f"{info.path}\t{info.size}")
        elif isinstance(result, str):
            print(result)

    def _run_child(self, path: str, timeout_seconds: int, arguments: dict[str, str]) -> str | None:
        """``dbutils.notebook.run``: a fresh namespace in another thread of this execution."""
        child_ref = self.ref.resolve(path)
        child = NotebookRun(self.runtime, self.execution, child_ref, arguments)
        outcome: dict[str, Any] = {}

        def target() -> None:
            self.execution.enter()
            try:
                self.runtime.spark.tag_thread()
                child.run()
            except NotebookExit as exc:
                outcome["value"] = exc.value
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                outcome["error"] = exc
            finally:
                self.execution.leave()

        thread = threading.Thread(target=target, name=f"notebook.run {path}", daemon=True)
        thread.start()
        thread.join(timeout_seconds if timeout_seconds > 0 else None)
        if thread.is_alive():
            _interrupt_thread(thread)
            thread.join(5)
            raise NotebookRunError(f"Notebook {child_ref.path} timed out after {timeout_seconds} seconds")
        error = outcome.get("error")
        if isinstance(error, ExecutionCanceled):
            raise error
        if error is not None:
            raise NotebookRunError(f"Notebook {child_ref.path} failed: {_one_line(error)}") from error
        return outcome.get("value")


# ---------------------------------------------------------------------- helpers


def _interrupt_thread(thread: threading.Thread, patience: float = 5.0) -> None:
    """Raise ExecutionCanceled in ``thread``, never while it is inside an import (see
    :meth:`Execution.interrupt`)."""
    import ctypes
    import time

    deadline = time.monotonic() + patience
    while thread.ident is not None and time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        if frame is None:
            return
        if not importing(frame):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(ExecutionCanceled)
            )
            return
        thread.join(0.02)


def _parse_run(text: str, where: str) -> tuple[str, dict[str, str]]:
    import shlex

    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise TaskError(f"Cannot parse %run in {where}: {exc}") from None
    if not parts:
        raise TaskError(f"%run in {where} names no notebook")
    args = {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if not sep or not name.startswith("$"):
            raise TaskError(f"%run in {where}: argument {part!r} must look like $name=value")
        args[name[1:]] = value
    return parts[0], args


def _workspace_path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _add_sys_path(path: str) -> None:
    # Appended, not prepended: a checkout's secrets.py or logging.py must not shadow the
    # standard library for every execution sharing this driver.
    if path and path not in sys.path:
        sys.path.append(path)


def _cache_source(execution: Execution, filename: str, text: str) -> None:
    # Tracebacks print the cell's code lines even though it never was a file.
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    execution.linecache_keys.append(filename)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, CellError):
        return str(exc)
    message = str(exc).strip()
    first = message.splitlines()[0] if message else ""
    if len(first) > 1000:
        first = first[:1000] + "..."
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def _format_trace(exc: BaseException) -> str:
    te = traceback.TracebackException.from_exception(exc)
    _drop_runtime_frames(te, set())
    return "".join(te.format())


def _drop_runtime_frames(te: traceback.TracebackException, seen: set[int]) -> None:
    # The user needs their cells and libraries, not the driver's own frames.
    if id(te) in seen:
        return
    seen.add(id(te))
    kept = [f for f in te.stack if not f.filename.startswith(_RUNTIME_DIR)]
    # Our own clear errors (notebook not found, bad cell) need no frames; anything else raised
    # inside the runtime is a bug and keeps its full trace.
    if kept or (te.exc_type is not None and te.exc_type.__module__.startswith("devstack.")):
        te.stack = traceback.StackSummary.from_list(kept)
    for other in (te.__cause__, te.__context__):
        if other is not None:
            _drop_runtime_frames(other, seen)


__all__ = ["Runtime", "RuntimeConfig", "current"]
