"""The run spec: what a job run's settings and tasks may say, and what its values resolve to.

Validation and normalisation of tasks (:func:`normalize_tasks`), job parameters
(:func:`resolve_job_parameters`), dynamic value references (:func:`reference_values`,
:func:`substitute`) and the ``run_if`` conditions of tasks (:func:`run_if_verdict`). Pure
functions: no state, no I/O.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
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
# Task types a run can hold. Condition, run-job and for-each tasks need no compute of their own
# (a for-each task's nested task has it); the Jobs API reference's Task object lists them all.
TASK_KINDS = (
    "notebook_task",
    "spark_python_task",
    "python_wheel_task",
    "condition_task",
    "run_job_task",
    "for_each_task",
)
COMPUTELESS = frozenset({"condition_task", "run_job_task", "for_each_task"})
CONDITION_OPS = (
    "EQUAL_TO",
    "NOT_EQUAL",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL",
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL",
)
MAX_FOR_EACH_CONCURRENCY = 100


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


# Dynamic value references ("What is a dynamic value reference?", Databricks Jobs docs): a name in
# double braces, its segments separated by dots; a segment with other characters than letters,
# digits and underscores is quoted in backticks ({{job.parameters.`my-param`}}). Syntax errors and
# names outside the known namespaces are left as literal text; an unknown name inside a known
# namespace ({{job.naem}}) is refused when the job is created or the run submitted. That covers
# the user-provided identifiers too: {{tasks.<key>.*}} of a task the job does not have, and
# {{job.parameters.<name>}} of a parameter the job does not define (a runs/submit run defines
# none). The docs name the rule for the namespaces ("an invalid reference belonging to a known
# namespace" shows an error) without listing each identifier; parameters follow task keys here.
_SEGMENT = r"(?:\w+|`[^`]+`)"
_REF = re.compile(r"\{\{\s*(" + _SEGMENT + r"(?:\." + _SEGMENT + r")*)\s*\}\}")
_TIME_PARTS = (
    "iso_date",
    "iso_datetime",
    "timestamp_ms",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "is_weekday",
    "day_of_week",
)
_JOB_FIELDS = ("id", "name", "run_id", "repair_count")
_TASK_FIELDS = ("name", "run_id", "execution_count", "notebook_path")
_TASKS_FIELDS = ("run_id", "result_state", "error_code", "execution_count", "notebook_path")
NAMESPACES = ("job", "task", "tasks", "workspace", "input")
# The deprecated single names ({{run_id}} ...), still substituted.
LEGACY_NAMES = (
    "job_id",
    "run_id",
    "parent_run_id",
    "start_date",
    "start_time",
    "task_retry_count",
    "task_key",
)


def _segments(name: str) -> list[str]:
    return [s.strip("`") for s in re.findall(_SEGMENT, name)]


def time_values(ms: int) -> dict[str, str]:
    """The ``<argument>`` values of {{job.start_time.<argument>}} for a UTC time in milliseconds."""
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return {
        "iso_date": t.strftime("%Y-%m-%d"),
        "iso_datetime": t.strftime("%Y-%m-%dT%H:%M:%S"),
        "timestamp_ms": str(ms),
        "year": str(t.year),
        "month": str(t.month),
        "day": str(t.day),
        "hour": str(t.hour),
        "minute": str(t.minute),
        "second": str(t.second),
        "is_weekday": "true" if t.isoweekday() <= 5 else "false",
        "day_of_week": str(t.isoweekday()),  # 1 is Monday, 7 Sunday
    }


def _reference_error(name: str, where: str) -> Exception:
    return invalid(
        f"Invalid value for field {where}: {{{{{name}}}}} is not a valid dynamic value reference. "
        "See the supported references: job.*, task.*, tasks.<task_key>.*, workspace.*."
    )


def _check_reference(
    segs: list[str], name: str, where: str, task_keys: set[str], in_for_each: bool, params: set[str]
) -> None:
    head, rest = segs[0], segs[1:]
    ok = False
    if head == "job":
        if len(rest) == 2 and rest[0] == "parameters" and rest[1] not in params:
            raise invalid(
                f"Invalid value for field {where}: {{{{{name}}}}} is not a valid dynamic value reference: "
                f"the job defines no parameter {rest[1]!r}."
            )
        ok = (len(rest) == 1 and rest[0] in _JOB_FIELDS) or (
            len(rest) == 2 and rest[0] == "start_time" and rest[1] in _TIME_PARTS
        )
        ok = ok or rest == ["trigger", "type"] or rest == ["trigger", "file_arrival", "location"]
        ok = ok or (len(rest) == 3 and rest[:2] == ["trigger", "time"] and rest[2] in _TIME_PARTS)
        ok = ok or (len(rest) == 2 and rest[0] == "parameters")
    elif head == "task":
        ok = len(rest) == 1 and rest[0] in _TASK_FIELDS
    elif head == "tasks":
        ok = len(rest) >= 2 and rest[0] in task_keys
        ok = ok and (
            (len(rest) == 2 and rest[1] in _TASKS_FIELDS) or (len(rest) == 3 and rest[1] == "values")
        )
    elif head == "workspace":
        ok = len(rest) == 1 and rest[0] in ("id", "url")
    elif head == "input":
        ok = in_for_each
    else:
        return  # not a known namespace: literal text
    if not ok:
        raise _reference_error(name, where)


def _strings(value: Any, where: str):
    if isinstance(value, str):
        yield value, where
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def check_references(settings: dict, tasks: list[dict]) -> None:
    """Refuse, naming the field, a reference in a known namespace that does not exist."""
    keys = {t["task_key"] for t in tasks}
    keys |= {t["for_each_task"]["task"]["task_key"] for t in tasks if t.get("for_each_task")}
    params = {p["name"] for p in settings.get("parameters") or [] if isinstance(p, dict) and p.get("name")}
    places: list[tuple[Any, str, bool]] = [
        (p.get("default"), f"parameters[{i}].default", False)
        for i, p in enumerate(settings.get("parameters") or [])
    ]
    for i, task in enumerate(tasks):
        for name, body in task.items():
            if name == "for_each_task" and isinstance(body, dict):
                places.append(({k: v for k, v in body.items() if k != "task"}, f"tasks[{i}].{name}", False))
                places.append((body.get("task"), f"tasks[{i}].{name}.task", True))
            elif name.endswith("_task"):
                places.append((body, f"tasks[{i}].{name}", False))
    for value, where, in_for_each in places:
        for text, at in _strings(value, where):
            for match in _REF.finditer(text):
                _check_reference(_segments(match.group(1)), match.group(1), at, keys, in_for_each, params)


class References:
    """The values of the dynamic value references of one task run.

    :param values: the names resolved up front (``job.id``, ``tasks.prep.result_state``, ...).
    :param task_value: ``task_value(task_key, name)`` -> the JSON text a task set with
        ``dbutils.jobs.taskValues.set``, or None.
    """

    def __init__(self, values: dict[str, str], task_value: Any = None):
        self.values = values
        self.task_value = task_value

    def get(self, name: str) -> str | None:
        segs = _segments(name)
        key = ".".join(segs)
        if key in self.values:
            return self.values[key]
        if len(segs) >= 2 and segs[0] == "backfill":
            # {{backfill.*}} (e.g. {{backfill.iso_datetime}}) carries the time slice of a run a job
            # backfill started; the workspace starts no backfills. The docs (dynamic value
            # references, "Backfill jobs") say nothing of its value in other runs: like
            # {{job.trigger.file_arrival.location}} outside a file-arrival run, it is empty here
            # rather than left as text a task would take for a date.
            return ""
        if len(segs) == 4 and segs[0] == "tasks" and segs[2] == "values" and self.task_value is not None:
            raw = self.task_value(segs[1], segs[3])
            if raw is None:
                raise invalid(
                    f"Could not resolve {{{{{name}}}}}: task {segs[1]!r} set no task value {segs[3]!r} in this run."
                )
            value = json.loads(raw)
            if isinstance(value, str):
                return value
            return json.dumps(value) if isinstance(value, (list, dict)) else to_str(value)
        return None


def reference_values(
    parent: RunRec,
    task: RunRec,
    *,
    tasks: dict[str, RunRec] | None = None,
    workspace: tuple[str, str] = ("0", ""),
    task_value: Any = None,
) -> References:
    """The references a task run can use: its job run, itself, the run's other tasks, the workspace."""
    trigger_time = parent.start_time
    refs = {
        "job.id": str(parent.job_id),
        "job.run_id": str(parent.run_id),
        "job.name": parent.run_name,
        "job.repair_count": str(len(parent.repairs)),
        # The documented values: periodic, onetime, run_job_task, file_arrival, continuous, table
        # (dynamic value references page); runs here start on demand or from a run-job task.
        "job.trigger.type": parent.overrides.get("trigger_type") or "onetime",
        # The location a file arrival trigger watches, in a run that trigger started; the workspace
        # has no file arrival triggers. The docs give no value for other runs: empty, not the
        # reference's own text (a task reading it as a path gets nothing rather than "{{...}}").
        "job.trigger.file_arrival.location": "",
        "task.name": task.task_key or "",
        "task.run_id": str(task.run_id),
        "task.execution_count": str(task.attempt_number + 1),
        "task.notebook_path": (task.spec.get("notebook_task") or {}).get("notebook_path", ""),
        "workspace.id": workspace[0],
        "workspace.url": workspace[1],
        # the older {{run_id}}-style names
        "job_id": str(parent.job_id),
        "run_id": str(task.run_id),
        "parent_run_id": str(parent.run_id),
        "task_key": task.task_key or "",
        "task_retry_count": str(task.attempt_number),
        "start_date": time_values(parent.start_time)["iso_date"],
        "start_time": str(parent.start_time),
    }
    for part, value in time_values(parent.start_time).items():
        refs[f"job.start_time.{part}"] = value
    for part, value in time_values(trigger_time).items():
        refs[f"job.trigger.time.{part}"] = value
    for param in parent.job_parameters:
        refs[f"job.parameters.{param['name']}"] = to_str(param.get("value", param.get("default")))
    for key, rec in (tasks or {}).items():
        refs[f"tasks.{key}.run_id"] = str(rec.run_id)
        refs[f"tasks.{key}.result_state"] = (rec.result or "").lower() if rec.terminal else ""
        refs[f"tasks.{key}.error_code"] = _error_code(rec)
        refs[f"tasks.{key}.execution_count"] = str(rec.attempt_number + 1)
        refs[f"tasks.{key}.notebook_path"] = (rec.spec.get("notebook_task") or {}).get("notebook_path", "")
    return References(refs, task_value)


def input_references(item: Any) -> References:
    """{{input}} (and {{input.<field>}} of an object) of one for-each iteration: text as it is,
    other JSON values as JSON."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    refs = {"input": text(item)}
    if isinstance(item, dict):
        refs.update({f"input.{k}": text(v) for k, v in item.items()})
    return References(refs)


def _error_code(rec: RunRec) -> str:
    """The {{tasks.<key>.error_code}} of a finished task run: empty when it succeeded."""
    if not rec.terminal or rec.result in SUCCESS_RESULTS:
        return ""
    if rec.life == "INTERNAL_ERROR":
        return "INTERNAL_ERROR"
    return {"TIMEDOUT": "RUN_EXECUTION_ERROR", "CANCELED": "USER_CANCELED"}.get(
        rec.result or "", "RUN_EXECUTION_ERROR"
    )


def substitute(value: str, refs: References | dict[str, str]) -> str:
    """``value`` with its references replaced; a name that resolves to nothing stays as it was."""
    if isinstance(refs, dict):
        refs = References(refs)

    def one(m: re.Match) -> str:
        found = refs.get(m.group(1))
        return m.group(0) if found is None else found

    return _REF.sub(one, value)


def substitute_all(value: Any, refs: References | dict[str, str]) -> Any:
    """A JSON value with the references in all its strings replaced."""
    if isinstance(value, str):
        return substitute(value, refs)
    if isinstance(value, dict):
        return {k: substitute_all(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_all(v, refs) for v in value]
    return value


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
        _check_task(task, where, settings, cluster_keys)
        if task.get("for_each_task"):
            nested_key = task["for_each_task"]["task"]["task_key"]
            if nested_key in keys:
                raise invalid(
                    f"Invalid value for field {where}.for_each_task.task.task_key: duplicate task_key {nested_key!r}"
                )
            keys.add(nested_key)
        deps = task.get("depends_on") or []
        if not isinstance(deps, list) or not all(isinstance(d, dict) and d.get("task_key") for d in deps):
            raise invalid(f"Invalid value for field {where}.depends_on: expected [{{'task_key': ...}}]")
        out.append(task)
    by_key = {t["task_key"]: t for t in out}
    for i, task in enumerate(out):
        for dep in task.get("depends_on") or []:
            if dep["task_key"] not in by_key:
                raise invalid(
                    f"Invalid value for field tasks[{i}].depends_on: unknown task_key {dep['task_key']!r}"
                )
            outcome = dep.get("outcome")
            if outcome is not None and (
                outcome not in ("true", "false") or "condition_task" not in by_key[dep["task_key"]]
            ):
                raise invalid(
                    f"Invalid value for field tasks[{i}].depends_on: outcome {outcome!r} needs a condition "
                    f"task upstream and is 'true' or 'false' ({dep['task_key']!r})"
                )
    check_references(settings, out)
    _check_acyclic(out)
    return out


def check_run_job_targets(tasks: list[dict], job_exists: Callable[[int], bool]) -> None:
    """Refuse a Run Job task (a for-each task's nested one too) whose job does not exist, naming the field.

    Databricks refuses it when the job is defined: jobs/create answers "Job 0 does not exist." for a
    run_job_task with job_id 0 (databricks/cli issue #812, a bundle deploy through Terraform); the
    Run Job task docs pick the job from the workspace's jobs. runs/submit takes the same task
    objects and is checked alike. A job deleted after the check still fails the task at run time.
    """
    for i, task in enumerate(tasks):
        where, inner = f"tasks[{i}]", task
        if task.get("for_each_task"):
            where, inner = f"{where}.for_each_task.task", task["for_each_task"]["task"]
        body = inner.get("run_job_task")
        if body is not None and not job_exists(body["job_id"]):
            raise invalid(
                f"Invalid value for field {where}.run_job_task.job_id: Job {body['job_id']} does not exist."
            )


def _kind(task: dict, where: str) -> str:
    kinds = [k for k in task if k.endswith("_task") and k != "run_job_task_output" and task[k] is not None]
    if not kinds:
        raise invalid(f"Missing required field: {where} needs a task type ({', '.join(TASK_KINDS)})")
    if kinds[0] not in TASK_KINDS:
        raise invalid(
            f"Invalid value for field {where}.{kinds[0]}: the devstack workspace runs {', '.join(TASK_KINDS)} only."
        )
    if len(kinds) > 1:
        raise invalid(f"Invalid value for field {where}: a task has one task type, got {', '.join(kinds)}")
    if not isinstance(task[kinds[0]], dict):
        raise invalid(f"Invalid value for field {where}.{kinds[0]}: expected an object")
    return kinds[0]


def task_kind(task: dict) -> str:
    """The task type of a validated task (``notebook_task``, ``condition_task``, ...)."""
    return next(k for k in TASK_KINDS if task.get(k) is not None)


def _required_str(body: dict, field: str, where: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise invalid(f"Missing required field: {where}.{field}")
    return value


def _check_task(task: dict, where: str, settings: dict, cluster_keys: set, *, nested: bool = False) -> None:
    kind = _kind(task, where)
    body = task[kind]
    at = f"{where}.{kind}"
    if kind == "notebook_task":
        _required_str(body, "notebook_path", at)
        bp = body.get("base_parameters")
        if bp is not None and not isinstance(bp, dict):
            raise invalid(f"Invalid value for field {at}.base_parameters: expected an object")
    elif kind == "spark_python_task":
        _required_str(body, "python_file", at)
    elif kind == "python_wheel_task":
        # PythonWheelTask: package_name and entry_point; parameters or named_parameters, not both.
        _required_str(body, "package_name", at)
        _required_str(body, "entry_point", at)
        if body.get("parameters") is not None and not isinstance(body["parameters"], list):
            raise invalid(f"Invalid value for field {at}.parameters: expected an array of strings")
        if body.get("named_parameters") is not None and not isinstance(body["named_parameters"], dict):
            raise invalid(f"Invalid value for field {at}.named_parameters: expected an object")
        if body.get("parameters") and body.get("named_parameters"):
            raise invalid(f"Invalid value for field {at}: give parameters or named_parameters, not both")
    elif kind == "condition_task":
        if body.get("op") not in CONDITION_OPS:
            raise invalid(f"Invalid value for field {at}.op: expected one of {', '.join(CONDITION_OPS)}")
        for side in ("left", "right"):
            if not isinstance(body.get(side), str):
                raise invalid(f"Missing required field: {at}.{side}")
    elif kind == "run_job_task":
        if body.get("job_id") is None:
            raise invalid(f"Missing required field: {at}.job_id")
        body["job_id"] = as_int(body["job_id"], f"{at}.job_id")
        for name in ("job_parameters", "notebook_params", "python_named_params"):
            if body.get(name) is not None and not isinstance(body[name], dict):
                raise invalid(f"Invalid value for field {at}.{name}: expected an object")
        if body.get("python_params") is not None and not isinstance(body["python_params"], list):
            raise invalid(f"Invalid value for field {at}.python_params: expected an array")
    elif kind == "for_each_task":
        if nested:
            raise invalid(f"Invalid value for field {at}: a for-each task cannot run another for-each task")
        inputs = body.get("inputs")
        if isinstance(inputs, list):  # the API takes a JSON string; an array literal is the same thing
            body["inputs"] = inputs = json.dumps(inputs)
        if not isinstance(inputs, str) or not inputs:
            raise invalid(f"Missing required field: {at}.inputs")
        if not _REF.search(inputs):
            try:
                parsed = json.loads(inputs)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list):
                raise invalid(
                    f"Invalid value for field {at}.inputs: expected a JSON array or a reference to one"
                )
        if body.get("concurrency") is not None:
            body["concurrency"] = as_int(body["concurrency"], f"{at}.concurrency")
            if not 1 <= body["concurrency"] <= MAX_FOR_EACH_CONCURRENCY:
                raise invalid(
                    f"Invalid value for field {at}.concurrency: between 1 and {MAX_FOR_EACH_CONCURRENCY}"
                )
        inner = body.get("task")
        if not isinstance(inner, dict):
            raise invalid(f"Missing required field: {at}.task")
        if not isinstance(inner.get("task_key"), str) or not inner.get("task_key"):
            raise invalid(f"Missing required field: {at}.task.task_key")
        if inner.get("depends_on"):
            raise invalid(
                f"Invalid value for field {at}.task.depends_on: the nested task has no dependencies"
            )
        _check_task(inner, f"{at}.task", settings, cluster_keys, nested=True)
    if body.get("source") not in (None, "WORKSPACE", "GIT"):
        raise invalid(f"Invalid value for field {at}.source: expected WORKSPACE or GIT")
    clusters = [k for k in ("new_cluster", "existing_cluster_id", "job_cluster_key") if task.get(k)]
    serverless = not clusters and (task.get("environment_key") or settings.get("environments"))
    if kind in COMPUTELESS:
        if clusters:
            raise invalid(
                f"Invalid value for field {where}: a {kind} runs without compute; remove {clusters[0]}"
            )
    elif len(clusters) != 1 and not serverless:  # serverless tasks get a fresh driver of their own
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
