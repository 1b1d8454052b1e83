"""The run spec: what a job run's settings and tasks may say, and what its values resolve to.

Validation and normalisation of tasks (:func:`normalize_tasks`), job parameters
(:func:`resolve_job_parameters`), dynamic value references (:func:`reference_values`,
:func:`substitute`) and the ``run_if`` conditions of tasks (:func:`run_if_verdict`). Pure
functions: no state, no I/O.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from devstack.workspace.http import invalid
from devstack.workspace.libraries.backend import validate_libraries

if TYPE_CHECKING:
    from devstack.workspace.runs.state import RunRec

SUCCESS_RESULTS = frozenset({"SUCCESS", "SUCCESS_WITH_FAILURES", "EXCLUDED"})
FAILED_RESULTS = frozenset({"FAILED", "TIMEDOUT", "UPSTREAM_FAILED"})
CANCELED_RESULTS = frozenset({"CANCELED", "UPSTREAM_CANCELED"})
RUN_IF = (
    "ALL_SUCCESS",
    "AT_LEAST_ONE_SUCCESS",
    "NONE_FAILED",
    "ALL_DONE",
    "AT_LEAST_ONE_FAILED",
    "ALL_FAILED",
)
TASK_KINDS = ("notebook_task", "spark_python_task")
# The user every run and job is created by, and runs as.
CREATOR = "devstack@localhost"


def as_int(value: Any, field: str) -> int:
    """An integer field; numeric strings are accepted as Databricks does (the provider sends them)."""
    if isinstance(value, bool):
        raise invalid(f"Invalid value for field {field}: expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value for field {field}: expected an integer, got {value!r}") from None


def int_or_zero(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def run_if_verdict(run_if: str, upstream: list[str]) -> str:
    """RUN, or the result a task gets when its run_if condition rules it out."""
    ok = [r in SUCCESS_RESULTS for r in upstream]
    failed = [r in FAILED_RESULTS for r in upstream]
    canceled = [r in CANCELED_RESULTS for r in upstream]
    if not upstream or run_if == "ALL_DONE":
        return "RUN"
    if run_if == "ALL_SUCCESS":
        return (
            "RUN"
            if all(ok)
            else ("UPSTREAM_CANCELED" if any(canceled) and not any(failed) else "UPSTREAM_FAILED")
        )
    if run_if == "AT_LEAST_ONE_SUCCESS":
        return "RUN" if any(ok) else ("UPSTREAM_CANCELED" if all(canceled) else "UPSTREAM_FAILED")
    if run_if == "NONE_FAILED":
        return "RUN" if not any(failed) else "UPSTREAM_FAILED"
    if run_if == "AT_LEAST_ONE_FAILED":
        return "RUN" if any(failed) else "EXCLUDED"
    if run_if == "ALL_FAILED":
        return "RUN" if all(failed) else "EXCLUDED"
    return "UPSTREAM_FAILED"


def downstream_of(tasks: list[dict], keys: set[str]) -> set[str]:
    found = set(keys)
    changed = True
    while changed:
        changed = False
        for task in tasks:
            if task["task_key"] not in found and any(
                d["task_key"] in found for d in task.get("depends_on") or []
            ):
                found.add(task["task_key"])
                changed = True
    return found - keys


def resolve_job_parameters(settings: dict, overrides: dict) -> list[dict]:
    """The job's parameters with their defaults and the values of this run (run-now job_parameters)."""
    given = overrides.get("job_parameters") or {}
    out = []
    for param in settings.get("parameters") or []:
        name = param.get("name")
        entry = {"name": name, "default": to_str(param.get("default"))}
        entry["value"] = to_str(given[name]) if name in given else entry["default"]
        out.append(entry)
    known = {p["name"] for p in out}
    for name, value in given.items():
        if name not in known:
            out.append({"name": name, "value": to_str(value)})
    return out


_REF = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


def reference_values(parent: RunRec, task: RunRec) -> dict[str, str]:
    refs = {
        "job.id": str(parent.job_id),
        "job.run_id": str(parent.run_id),
        "job.name": parent.run_name,
        "job.start_time.iso_date": time.strftime("%Y-%m-%d", time.gmtime(parent.start_time / 1000)),
        "job.start_time.timestamp_ms": str(parent.start_time),
        "job.repair_count": str(len(parent.repairs)),
        "task.name": task.task_key or "",
        "task.run_id": str(task.run_id),
        "task.execution_count": str(task.attempt_number + 1),
        # the older {{run_id}}-style names
        "job_id": str(parent.job_id),
        "run_id": str(task.run_id),
        "parent_run_id": str(parent.run_id),
        "task_key": task.task_key or "",
    }
    for param in parent.job_parameters:
        refs[f"job.parameters.{param['name']}"] = to_str(param.get("value", param.get("default")))
    return refs


def substitute(value: str, refs: dict[str, str]) -> str:
    return _REF.sub(lambda m: refs.get(m.group(1), m.group(0)), value)


def normalize_tasks(settings: dict) -> list[dict]:
    """The run's tasks in the multi-task format; a legacy single-task body becomes one task.

    Raises INVALID_PARAMETER_VALUE naming the field for anything the workspace cannot run.
    """
    tasks = settings.get("tasks")
    if tasks is None:
        legacy = {
            k: settings[k]
            for k in (
                *TASK_KINDS,
                "new_cluster",
                "existing_cluster_id",
                "libraries",
                "timeout_seconds",
                "max_retries",
                "min_retry_interval_millis",
                "retry_on_timeout",
                "job_cluster_key",
            )
            if k in settings
        }
        if not any(k in legacy for k in TASK_KINDS):
            raise invalid("Missing required field: tasks (or a top-level notebook_task / spark_python_task)")
        legacy.pop("timeout_seconds", None)  # a top-level timeout is the run's, not the task's
        legacy["task_key"] = str(settings.get("run_name") or "task")[:100]
        tasks = [legacy]
    if not isinstance(tasks, list) or not tasks:
        raise invalid("Invalid value for field tasks: expected a non-empty array of tasks")
    keys: set[str] = set()
    cluster_keys = {
        c.get("job_cluster_key") for c in settings.get("job_clusters") or [] if isinstance(c, dict)
    }
    out = []
    for i, task in enumerate(tasks):
        where = f"tasks[{i}]"
        if not isinstance(task, dict):
            raise invalid(f"Invalid value for field {where}: expected an object")
        key = task.get("task_key")
        if not isinstance(key, str) or not key:
            raise invalid(f"Missing required field: {where}.task_key")
        if key in keys:
            raise invalid(f"Invalid value for field {where}.task_key: duplicate task_key {key!r}")
        keys.add(key)
        kinds = [k for k in task if k.endswith("_task") and task[k] is not None]
        if not kinds:
            raise invalid(f"Missing required field: {where} needs a notebook_task or spark_python_task")
        if kinds[0] not in TASK_KINDS:
            raise invalid(
                f"Invalid value for field {where}.{kinds[0]}: the devstack workspace runs notebook_task and "
                "spark_python_task only."
            )
        body = task[kinds[0]]
        if not isinstance(body, dict):
            raise invalid(f"Invalid value for field {where}.{kinds[0]}: expected an object")
        if kinds[0] == "notebook_task":
            if not isinstance(body.get("notebook_path"), str) or not body.get("notebook_path"):
                raise invalid(f"Missing required field: {where}.notebook_task.notebook_path")
            bp = body.get("base_parameters")
            if bp is not None and not isinstance(bp, dict):
                raise invalid(
                    f"Invalid value for field {where}.notebook_task.base_parameters: expected an object"
                )
        else:
            if not isinstance(body.get("python_file"), str) or not body.get("python_file"):
                raise invalid(f"Missing required field: {where}.spark_python_task.python_file")
        if body.get("source") not in (None, "WORKSPACE", "GIT"):
            raise invalid(f"Invalid value for field {where}.{kinds[0]}.source: expected WORKSPACE or GIT")
        clusters = [k for k in ("new_cluster", "existing_cluster_id", "job_cluster_key") if task.get(k)]
        serverless = not clusters and (task.get("environment_key") or settings.get("environments"))
        if len(clusters) != 1 and not serverless:  # serverless tasks get a fresh driver of their own
            raise invalid(
                f"Invalid value for field {where}: give exactly one of new_cluster, existing_cluster_id or "
                f"job_cluster_key (got {clusters or 'none'}), or an environment_key for serverless compute."
            )
        if task.get("job_cluster_key") and task["job_cluster_key"] not in cluster_keys:
            raise invalid(
                f"Invalid value for field {where}.job_cluster_key: {task['job_cluster_key']!r} is not in job_clusters"
            )
        run_if = task.get("run_if")
        if run_if is not None and run_if not in RUN_IF:
            raise invalid(f"Invalid value for field {where}.run_if: expected one of {', '.join(RUN_IF)}")
        if task.get("libraries") is not None:
            validate_libraries(task["libraries"], f"{where}.libraries")
        for name in ("timeout_seconds", "max_retries", "min_retry_interval_millis"):
            if task.get(name) is not None:
                task[name] = as_int(task[name], f"{where}.{name}")
        deps = task.get("depends_on") or []
        if not isinstance(deps, list) or not all(isinstance(d, dict) and d.get("task_key") for d in deps):
            raise invalid(f"Invalid value for field {where}.depends_on: expected [{{'task_key': ...}}]")
        out.append(task)
    for i, task in enumerate(out):
        for dep in task.get("depends_on") or []:
            if dep["task_key"] not in keys:
                raise invalid(
                    f"Invalid value for field tasks[{i}].depends_on: unknown task_key {dep['task_key']!r}"
                )
    _check_acyclic(out)
    return out


def _check_acyclic(tasks: list[dict]) -> None:
    deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on") or []] for t in tasks}
    state: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise invalid(f"Invalid value for field tasks: dependency cycle {' -> '.join([*path, key])}")
        state[key] = 1
        for dep in deps[key]:
            visit(dep, [*path, key])
        state[key] = 2

    for key in deps:
        visit(key, [])
