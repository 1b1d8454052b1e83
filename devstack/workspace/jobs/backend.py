"""Job definitions: their settings and the rules they must follow, and their permissions.

Jobs live in the workspace's SQLite file; a run-now snapshots the settings into the job run
(:mod:`devstack.workspace.runs`), so later resets do not change runs already triggered.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from devstack.workspace.http import invalid
from devstack.workspace.iam.backend import ADMIN_USER
from devstack.workspace.runs.spec import as_int, check_run_job_targets, normalize_tasks
from devstack.workspace.store import Store, dumps, loads

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    name TEXT,
    created_time INTEGER NOT NULL,
    settings TEXT NOT NULL,
    creator TEXT                      -- the creator's user name (a service principal's application id)
);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs(name);
CREATE TABLE IF NOT EXISTS job_permissions (job_id INTEGER PRIMARY KEY, acl TEXT NOT NULL);
"""

# Settings fields that are not part of a job's definition.
REQUEST_ONLY = ("access_control_list", "idempotency_token")
PRINCIPALS = ("user_name", "group_name", "service_principal_name")
PERMISSION_LEVELS = ("CAN_VIEW", "CAN_MANAGE_RUN", "IS_OWNER", "CAN_MANAGE")


class Ids(Protocol):
    """The workspace's id allocator (job ids are shared with runs/submit)."""

    def next_id(self, name: str) -> int: ...

    def raise_to(self, name: str, floor: int) -> None: ...


def check_settings(settings: dict[str, Any], field: str) -> dict[str, Any]:
    """Validate job settings (naming the field at fault) and fill Databricks' defaults."""
    if not isinstance(settings, dict):
        raise invalid(f"Invalid value for field {field}: expected an object")
    out = {k: v for k, v in settings.items() if k not in REQUEST_ONLY and v is not None}
    out.setdefault("name", "Untitled")
    if not isinstance(out["name"], str):
        raise invalid(f"Invalid value for field {field}.name: expected a string")
    for name, default in (("max_concurrent_runs", 1), ("timeout_seconds", 0)):
        out[name] = as_int(out.get(name, default), f"{field}.{name}")
        if out[name] < 0:
            raise invalid(f"Invalid value for field {field}.{name}: expected an integer >= 0")
    for name in ("tasks", "job_clusters", "parameters"):
        if name in out and not isinstance(out[name], list):
            raise invalid(f"Invalid value for field {field}.{name}: expected an array")
    for name in ("queue", "git_source", "email_notifications", "schedule", "tags"):
        if name in out and not isinstance(out[name], dict):
            raise invalid(f"Invalid value for field {field}.{name}: expected an object")
    for i, param in enumerate(out.get("parameters") or []):
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise invalid(
                f"Invalid value for field {field}.parameters[{i}]: expected {{'name': ..., 'default': ...}}"
            )
    if out.get("tasks"):
        normalize_tasks(out)
    out.setdefault("format", "MULTI_TASK")
    out.setdefault("email_notifications", {})
    return out


def check_acl(acl: Any, field: str = "access_control_list") -> list[dict[str, str]]:
    """Validate an access control list; one entry per principal, naming the field at fault."""
    if not isinstance(acl, list):
        raise invalid(f"Invalid value for field {field}: expected an array")
    out = []
    for i, entry in enumerate(acl):
        principal = [k for k in PRINCIPALS if isinstance(entry, dict) and entry.get(k)]
        if len(principal) != 1:
            raise invalid(
                f"Invalid value for field {field}[{i}]: give exactly one of {', '.join(PRINCIPALS)}"
            )
        level = entry.get("permission_level")
        if level not in PERMISSION_LEVELS:
            raise invalid(
                f"Invalid value for field {field}[{i}].permission_level: expected one of {', '.join(PERMISSION_LEVELS)}"
            )
        out.append({principal[0]: entry[principal[0]], "permission_level": level})
    return out


def principal_of(entry: dict[str, str]) -> tuple[str, str]:
    kind = next(k for k in PRINCIPALS if entry.get(k))
    return kind, entry[kind]


def _job(row: Any) -> dict[str, Any]:
    return {
        "job_id": row["job_id"],
        "created_time": row["created_time"],
        # Jobs of a store written before creators were recorded: the workspace's admin made them.
        "creator_user_name": row["creator"] or ADMIN_USER,
        "settings": loads(row["settings"]),
    }


def _merge_by_key(old: list[dict], new: list[dict], key: str) -> list[dict]:
    merged = {item.get(key): item for item in old}
    for item in new:
        merged[item.get(key)] = item
    return list(merged.values())


class JobsBackend:
    """Job definitions and their permissions.

    :param store: the workspace's SQLite store (tables ``jobs`` and ``job_permissions``).
    :param ids: the workspace's id allocator (the runs journal).
    """

    def __init__(self, store: Store, ids: Ids):
        self.store = store
        self.ids = ids
        # jobs/reset, update and delete read a job and then write it: one at a time, so that two
        # concurrent updates (the server is threaded) do not write over each other.
        self._changing = threading.Lock()
        store.ensure_schema(SCHEMA)
        if "creator" not in {r["name"] for r in store.all("PRAGMA table_info(jobs)")}:
            store.execute("ALTER TABLE jobs ADD COLUMN creator TEXT")  # a store written before creators
        ids.raise_to("job", store.one("SELECT MAX(job_id) AS m FROM jobs")["m"] or 0)

    # ------------------------------------------------------------------ reading

    def require(self, job_id: int) -> dict[str, Any]:
        """The job (job_id, created_time, creator_user_name, settings), or the Jobs API's error for an
        unknown job.

        That is 400 INVALID_PARAMETER_VALUE "Job <id> does not exist.": databricks-sdk's error
        overrides (errors/overrides.py, "Jobs InvalidParameterValue=>ResourceDoesNotExist") map
        exactly this answer of jobs/get to ResourceDoesNotExist.
        """
        row = self.store.one(
            "SELECT job_id, created_time, creator, settings FROM jobs WHERE job_id=?", (job_id,)
        )
        if row is None:
            raise invalid(f"Job {job_id} does not exist.")
        return _job(row)

    def exists(self, job_id: int) -> bool:
        return self.store.one("SELECT 1 AS x FROM jobs WHERE job_id=?", (job_id,)) is not None

    def settings_of(self, job_id: int) -> dict[str, Any] | None:
        """The job's current settings, or None when it does not exist; with the job's creator
        (``creator_user_name``), whom the job's runs show as theirs."""
        row = self.store.one("SELECT creator, settings FROM jobs WHERE job_id=?", (job_id,))
        if row is None:
            return None
        return {**loads(row["settings"]), "creator_user_name": row["creator"] or ADMIN_USER}

    def list(self, name: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Up to ``limit`` jobs from ``offset`` in job id order, of one name if given ("a filter on
        the list based on the exact (case insensitive) job name", jobs/list)."""
        sql = "SELECT job_id, created_time, creator, settings FROM jobs"
        params: tuple = ()
        if name:
            sql += " WHERE name = ? COLLATE NOCASE"
            params = (name,)
        rows = self.store.all(sql + " ORDER BY job_id LIMIT ? OFFSET ?", (*params, limit, offset))
        return [_job(r) for r in rows]

    # ------------------------------------------------------------------ changing

    def create(self, body: dict[str, Any], creator: str = ADMIN_USER) -> int:
        """A new job from a jobs/create body (its settings, and an optional access_control_list),
        created by ``creator`` (a user name or a service principal's application id)."""
        acl = check_acl(body["access_control_list"]) if body.get("access_control_list") else None
        settings = self._checked(dict(body), "settings")
        job_id = self.ids.next_id("job")
        self._save(job_id, settings, created=int(time.time() * 1000), creator=creator)
        if acl:
            self.set_acl(job_id, acl, replace=True)
        return job_id

    def reset(self, job_id: int, new_settings: dict[str, Any]) -> None:
        with self._changing:
            self.require(job_id)
            self._save(job_id, self._checked(new_settings, "new_settings"))

    def update(self, job_id: int, new_settings: dict[str, Any], fields_to_remove: list) -> None:
        """jobs/update: tasks and job_clusters merge by key, other fields replace, then removals."""
        with self._changing:
            self._update(job_id, new_settings, fields_to_remove)

    def _update(self, job_id: int, new_settings: dict[str, Any], fields_to_remove: list) -> None:
        settings = dict(self.require(job_id)["settings"])
        for name, value in new_settings.items():
            if name == "tasks" and isinstance(value, list):
                settings[name] = _merge_by_key(settings.get("tasks") or [], value, "task_key")
            elif name == "job_clusters" and isinstance(value, list):
                settings[name] = _merge_by_key(settings.get("job_clusters") or [], value, "job_cluster_key")
            else:
                settings[name] = value
        for path in fields_to_remove:
            head, _, rest = str(path).partition("/")
            if not rest:
                settings.pop(head, None)
            elif head in ("tasks", "job_clusters"):
                key = "task_key" if head == "tasks" else "job_cluster_key"
                settings[head] = [item for item in settings.get(head) or [] if item.get(key) != rest]
        self._save(job_id, self._checked(settings, "new_settings"))

    def _checked(self, settings: dict[str, Any], field: str) -> dict[str, Any]:
        """:func:`check_settings`, and the jobs its Run Job tasks run exist."""
        out = check_settings(settings, field)
        check_run_job_targets(out.get("tasks") or [], self.exists)
        return out

    def delete(self, job_id: int) -> None:
        with self._changing:
            self.require(job_id)
            with self.store.tx() as conn:
                conn.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))

    def _save(
        self, job_id: int, settings: dict[str, Any], created: int | None = None, creator: str | None = None
    ) -> None:
        with self.store.tx() as conn:
            if created is None:
                conn.execute(
                    "UPDATE jobs SET name=?, settings=? WHERE job_id=?",
                    (settings["name"], dumps(settings), job_id),
                )
            else:
                conn.execute(
                    "INSERT INTO jobs(job_id, name, created_time, settings, creator) VALUES (?,?,?,?,?)",
                    (job_id, settings["name"], created, dumps(settings), creator),
                )

    # ------------------------------------------------------------------ permissions

    def acl(self, job_id: int) -> list[dict[str, str]]:
        row = self.store.one("SELECT acl FROM job_permissions WHERE job_id=?", (job_id,))
        return loads(row["acl"]) if row else []

    def set_acl(self, job_id: int, acl: list[dict[str, str]], *, replace: bool) -> None:
        merged = {} if replace else {principal_of(e): e for e in self.acl(job_id)}
        merged.update({principal_of(e): e for e in acl})
        with self.store.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO job_permissions(job_id, acl) VALUES (?, ?)",
                (job_id, dumps(list(merged.values()))),
            )
