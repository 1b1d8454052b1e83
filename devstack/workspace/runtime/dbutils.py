"""``dbutils`` as notebooks see it: widgets, notebook, secrets, fs, jobs.taskValues."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.workspace.runtime.execution import NotebookExit, add_secret
from devstack.workspace.runtime.fs import FsUtils
from devstack.workspace.runtime.wsclient import WorkspaceApiError, WorkspaceClient


class InputWidgetNotDefined(ValueError):
    """``dbutils.widgets.get`` of a widget that was neither declared nor passed."""


class WidgetsUtils:
    """``dbutils.widgets``: values passed to the run (base_parameters) win over declared defaults."""

    def __init__(self, passed: dict[str, str] | None = None):
        self._passed = {str(k): str(v) for k, v in (passed or {}).items()}
        self._defaults: dict[str, str] = {}

    def _declare(self, name: str, default: str) -> None:
        self._defaults[str(name)] = "" if default is None else str(default)

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:  # noqa: N803
        self._declare(name, defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        choices = [str(c) for c in choices]
        if str(defaultValue) not in choices:
            raise ValueError(
                f"Default value {defaultValue!r} of dropdown widget {name!r} is not one of its choices {choices}"
            )
        self._declare(name, defaultValue)

    def combobox(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        self._declare(name, defaultValue)

    def multiselect(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        choices = [str(c) for c in choices]
        for value in str(defaultValue).split(","):
            if value and value not in choices:
                raise ValueError(
                    f"Default value {value!r} of multiselect widget {name!r} is not one of its choices {choices}"
                )
        self._declare(name, defaultValue)

    def get(self, name: str) -> str:
        if name in self._passed:
            return self._passed[name]
        if name in self._defaults:
            return self._defaults[name]
        raise InputWidgetNotDefined(
            f"InputWidgetNotDefined: No input widget named {name} is defined. Declare it with "
            f"dbutils.widgets.text({name!r}, <default>) or pass it in the task's base_parameters."
        )

    def getArgument(self, name: str, defaultValue: str | None = None) -> str | None:  # noqa: N802, N803
        if name in self._passed:
            return self._passed[name]
        if name in self._defaults:
            return self._defaults[name]
        return defaultValue

    def getAll(self) -> dict[str, str]:  # noqa: N802
        return {**self._defaults, **self._passed}

    def remove(self, name: str) -> None:
        if name not in self._defaults:
            raise InputWidgetNotDefined(f"InputWidgetNotDefined: No input widget named {name} is defined")
        del self._defaults[name]

    def removeAll(self) -> None:  # noqa: N802
        self._defaults.clear()

    def help(self) -> None:
        print(
            "dbutils.widgets: text, dropdown, combobox, multiselect, get, getArgument, getAll, remove, removeAll"
        )


class _Option:
    """A Scala Option, as the notebook context returns values."""

    def __init__(self, value: Any):
        self._value = value

    def isDefined(self) -> bool:  # noqa: N802
        return self._value is not None

    def get(self) -> Any:
        if self._value is None:
            raise ValueError("None.get: this value is not set in the current notebook context")
        return self._value

    def getOrElse(self, default: Any) -> Any:  # noqa: N802
        return default if self._value is None else self._value


class NotebookContext:
    """``dbutils.notebook.entry_point.getDbutils().notebook().getContext()``: where and as what
    this notebook runs (path, job and run ids), as notebooks read it for lineage tags."""

    def __init__(self, info: dict[str, Any], api_url: str, api_token: str):
        self._info = info
        self._api_url = api_url
        self._api_token = api_token

    def notebookPath(self) -> _Option:  # noqa: N802
        return _Option(self._info.get("notebook_path"))

    def currentRunId(self) -> _Option:  # noqa: N802
        return _Option(self._info.get("run_id"))

    def jobId(self) -> _Option:  # noqa: N802
        return _Option(self._info.get("job_id"))

    def clusterId(self) -> _Option:  # noqa: N802
        return _Option(self._info.get("cluster_id"))

    def apiUrl(self) -> _Option:  # noqa: N802
        return _Option(self._api_url)

    def apiToken(self) -> _Option:  # noqa: N802
        add_secret(self._api_token)
        return _Option(self._api_token)

    def tags(self) -> dict[str, str]:
        keys = {
            "job_id": "jobId",
            "run_id": "runId",
            "job_run_id": "multitaskParentRunId",
            "task_key": "taskKey",
        }
        tags = {"clusterId": str(self._info.get("cluster_id"))}
        tags.update(
            {tag: str(self._info[key]) for key, tag in keys.items() if self._info.get(key) is not None}
        )
        return tags

    def toJson(self) -> str:  # noqa: N802
        return json.dumps(
            {
                "extraContext": {"notebook_path": self._info.get("notebook_path"), "api_url": self._api_url},
                "tags": self.tags(),
                "currentRunId": {"id": self._info.get("run_id")} if self._info.get("run_id") else None,
            }
        )


class _EntryPoint:
    def __init__(self, context: NotebookContext):
        self._context = context

    def getDbutils(self) -> _EntryPoint:  # noqa: N802
        return self

    def notebook(self) -> _EntryPoint:
        return self

    def getContext(self) -> NotebookContext:  # noqa: N802
        return self._context


class NotebookUtils:
    """``dbutils.notebook``: exit(value) and run(path, timeout_seconds, arguments)."""

    def __init__(
        self,
        run_child: Callable[[str, int, dict[str, str]], str | None],
        context: NotebookContext | None = None,
    ):
        self._run_child = run_child
        self.entry_point = _EntryPoint(context) if context is not None else None

    def exit(self, value: Any = "") -> None:
        raise NotebookExit("" if value is None else str(value))

    def run(self, path: str, timeout_seconds: int = 0, arguments: dict[str, Any] | None = None) -> str | None:
        return self._run_child(
            path, int(timeout_seconds or 0), {str(k): str(v) for k, v in (arguments or {}).items()}
        )

    def help(self) -> None:
        print("dbutils.notebook: exit(value), run(path, timeout_seconds, arguments)")


@dataclass(frozen=True)
class SecretMetadata:
    key: str


@dataclass(frozen=True)
class SecretScope:
    name: str


class SecretsUtils:
    """``dbutils.secrets``; every value fetched is redacted from captured output."""

    def __init__(self, client: WorkspaceClient):
        self._client = client

    def getBytes(self, scope: str, key: str) -> bytes:  # noqa: N802
        try:
            answer = self._client.get("/api/2.0/secrets/get", scope=scope, key=key)
        except WorkspaceApiError as exc:
            if exc.status == 404 or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ValueError(
                    f"Secret does not exist with scope: {scope} and key: {key}. Create it with "
                    f"`databricks secrets put-secret {scope} {key}`."
                ) from None
            raise
        raw = base64.b64decode(answer.get("value") or "")
        try:
            add_secret(raw.decode("utf-8"))
        except UnicodeDecodeError:
            pass
        return raw

    def get(self, scope: str, key: str) -> str:
        return self.getBytes(scope, key).decode("utf-8")

    def list(self, scope: str) -> list[SecretMetadata]:
        try:
            answer = self._client.get("/api/2.0/secrets/list", scope=scope)
        except WorkspaceApiError as exc:
            if exc.status == 404 or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ValueError(f"Secret scope {scope} does not exist") from None
            raise
        return [SecretMetadata(s["key"]) for s in answer.get("secrets", [])]

    def listScopes(self) -> list[SecretScope]:  # noqa: N802
        answer = self._client.get("/api/2.0/secrets/scopes/list")
        return [SecretScope(s["name"]) for s in answer.get("scopes", [])]

    def help(self) -> None:
        print("dbutils.secrets: get(scope, key), getBytes(scope, key), list(scope), listScopes()")


class TaskValuesUtils:
    """``dbutils.jobs.taskValues``: values shared between the tasks of one job run."""

    def __init__(self, client: WorkspaceClient, job_run_id: int | None, task_key: str | None):
        self._client = client
        self._job_run_id = job_run_id
        self._task_key = task_key

    def set(self, key: str, value: Any) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"Task value {key!r} must be JSON-serializable (str, number, bool, list, dict, None): {exc}"
            ) from None
        if self._job_run_id is None:
            return  # outside a job run Databricks ignores set()
        self._client.post(
            "/api/2.0/devstack/task-values/set",
            {"job_run_id": self._job_run_id, "task_key": self._task_key, "key": key, "value": value},
        )

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:  # noqa: N803
        if self._job_run_id is None:
            return debugValue
        try:
            answer = self._client.get(
                "/api/2.0/devstack/task-values/get", job_run_id=self._job_run_id, task_key=taskKey, key=key
            )
        except WorkspaceApiError as exc:
            if exc.status != 404:
                raise
            if default is not None:
                return default
            raise ValueError(
                f"No task value {key!r} was set by task {taskKey!r} in job run {self._job_run_id}; "
                f"check the task key and that the task ran before this one, or pass default="
            ) from None
        return answer.get("value")

    def help(self) -> None:
        print("dbutils.jobs.taskValues: set(key, value), get(taskKey, key, default, debugValue)")


class JobsUtils:
    def __init__(self, task_values: TaskValuesUtils):
        self.taskValues = task_values


class LibraryUtils:
    def restartPython(self) -> None:  # noqa: N802
        print("dbutils.library.restartPython(): no-op on the devstack (libraries import at once)")


class DBUtils:
    def __init__(
        self,
        *,
        fs: FsUtils,
        secrets: SecretsUtils,
        widgets: WidgetsUtils,
        notebook: NotebookUtils,
        jobs: JobsUtils,
    ):
        self.fs = fs
        self.secrets = secrets
        self.widgets = widgets
        self.notebook = notebook
        self.jobs = jobs
        self.library = LibraryUtils()

    def help(self) -> None:
        print("dbutils: fs, secrets, widgets, notebook, jobs, library")
