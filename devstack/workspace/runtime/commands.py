"""Command execution (API 1.2) inside a driver: one namespace per execution context.

A context is what a notebook attached to the cluster has: its own globals (``spark``, ``sc``,
``dbutils``, ``display``), kept between the commands run in it. A command answers as Databricks'
Command Execution API does: ``resultType`` ``text`` (the output, then the last expression's
value), ``table`` (SQL), or ``error`` (``summary`` one line, ``cause`` the traceback).
"""

from __future__ import annotations

import ast
import html
import textwrap
import threading
from typing import Any

from devstack.workspace.runtime import notebook as nb
from devstack.workspace.runtime.execution import (
    Execution,
    ExecutionCanceled,
    NotebookExit,
    ensure_hooks,
    redact,
)

# Rows a SQL command returns at most (Databricks cuts results too, and says truncated).
MAX_TABLE_ROWS = 1000


class CommandContexts:
    """The execution contexts of one driver, by context id."""

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self._contexts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, context_id: str, execution: Execution):
        from devstack.workspace.runtime.executor import NotebookRun

        with self._lock:
            run = self._contexts.get(context_id)
            if run is None:
                ref = nb.NotebookRef("WORKSPACE", f"/Users/commands/{context_id}")
                run = self._contexts[context_id] = NotebookRun(self.runtime, execution, ref, {})
        run.execution = execution  # dbutils.notebook.run children belong to the running command
        return run

    def destroy(self, context_id: str) -> None:
        with self._lock:
            self._contexts.pop(context_id, None)


def contexts_of(runtime: Any) -> CommandContexts:
    contexts = getattr(runtime, "command_contexts", None)
    if contexts is None:
        contexts = runtime.command_contexts = CommandContexts(runtime)
    return contexts


def run_command(runtime: Any, execution: Execution) -> dict[str, Any]:
    """Run one command (task kind ``command``) or drop a context (``command_context_destroy``)."""
    task = execution.task
    base = {
        "exec_id": execution.exec_id,
        "result_state": "SUCCESS",
        "notebook_result": None,
        "truncated": False,
        "error": None,
        "error_trace": None,
        "logs": "",
    }
    if task.get("kind") == "command_context_destroy":
        contexts_of(runtime).destroy(task["context_id"])
        return {**base, "spark_started": runtime.spark.started}
    ensure_hooks()
    execution.enter()
    results: dict[str, Any]
    try:
        try:
            execution.check_canceled()
            runtime.spark.tag_thread()
            run = contexts_of(runtime).get(task["context_id"], execution)
            language = (task.get("language") or "python").lower()
            if language == "sql":
                results = _sql(runtime, task.get("command") or "")
            else:
                shown: dict[str, Any] = {}
                run.namespace["display"] = _display_into(shown)
                value = _python(run, task.get("command") or "", execution)
                if "frame" in shown:  # display(df): the frame as a table, as in a notebook
                    results = _table(shown["frame"])
                else:
                    results = {"resultType": "text", "data": execution.output.text() + (value or "")}
        except NotebookExit as exc:
            results = {"resultType": "text", "data": exc.value}
        except ExecutionCanceled:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure is an error result
            results = _error(exc)
        execution.finish()
    except ExecutionCanceled:
        execution.finish()
        return {
            **base,
            "result_state": "CANCELED",
            "error": "Command was canceled",
            "spark_started": runtime.spark.started,
        }
    finally:
        execution.finish()
        execution.leave()
    if results.get("resultType") == "text":
        results["data"] = redact(str(results["data"])).rstrip("\n")
    return {**base, "command_results": results, "spark_started": runtime.spark.started}


def _python(run: Any, command: str, execution: Execution) -> str | None:
    """Run Python as a notebook cell does; returns the repr of the last expression's value."""
    from devstack.workspace.runtime.spark import display

    text = textwrap.dedent(command)  # as IPython does: a common leading indent is not an error
    filename = f"<command-{execution.exec_id}>"
    import linecache

    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    execution.linecache_keys.append(filename)
    run._bind_spark()
    tree = ast.parse(text, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), run.namespace)
    if last is None:
        return None
    value = eval(compile(last, filename, "eval"), run.namespace)
    if value is None:
        return None
    module = type(value).__module__ or ""
    if module.startswith(("pyspark", "pandas")):
        display(value)
        return None
    return repr(value)


def _sql(runtime: Any, command: str) -> dict[str, Any]:
    statements = sql_statements(command)
    spark = runtime.spark.session()
    frame = None
    for statement in statements:
        frame = spark.sql(statement)
    if frame is None:
        return {"resultType": "text", "data": ""}
    return _table(frame)


def sql_statements(command: str) -> list[str]:
    """The statements of a SQL command, split at the semicolons that end them: not those in a
    quoted literal or identifier ('a;b', "a;b", `a;b`) or in a comment, which is dropped.
    sqlparse (which mlflow installs) does the lexing; Spark's parser takes no trailing ``;``."""
    import sqlparse

    split = sqlparse.split(sqlparse.format(command, strip_comments=True))
    return [s for s in (part.strip().rstrip(";").strip() for part in split) if s]


def _display_into(shown: dict[str, Any]):
    """``display`` of a command: a Spark or pandas DataFrame becomes the command's table result."""
    from devstack.workspace.runtime.spark import display

    def display_frame(obj: Any = None, *args: Any, **kwargs: Any) -> None:
        module = type(obj).__module__ or ""
        if module.startswith(("pyspark", "pandas")) and hasattr(obj, "columns"):
            shown["frame"] = obj
        else:
            display(obj, *args, **kwargs)

    return display_frame


# pandas dtypes by the Spark SQL type names a table result's schema uses.
_PANDAS_TYPES = {
    "int64": "bigint",
    "int32": "int",
    "float64": "double",
    "float32": "float",
    "bool": "boolean",
}


def _table(frame: Any) -> dict[str, Any]:
    if (type(frame).__module__ or "").startswith("pandas"):
        rows = frame.head(MAX_TABLE_ROWS + 1).values.tolist()
        schema = [(str(c), _PANDAS_TYPES.get(str(t), "string")) for c, t in frame.dtypes.items()]
    else:
        rows = [list(r) for r in frame.limit(MAX_TABLE_ROWS + 1).collect()]
        schema = [(f.name, f.dataType.simpleString()) for f in frame.schema]
    return {
        "resultType": "table",
        "data": [[_plain(v) for v in row] for row in rows[:MAX_TABLE_ROWS]],
        "schema": [{"name": name, "type": kind, "metadata": "{}"} for name, kind in schema],
        "truncated": len(rows) > MAX_TABLE_ROWS,
        "isJsonSchema": True,
    }


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _error(exc: BaseException) -> dict[str, Any]:
    from devstack.workspace.runtime.executor import _format_trace

    name = type(exc).__name__
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    summary = (
        f"<span class='ansi-red-fg'>{html.escape(name)}</span>: {html.escape(message)}" if message else name
    )
    return {"resultType": "error", "summary": redact(summary), "cause": redact(_format_trace(exc))}
