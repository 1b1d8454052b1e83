"""Jobs API (2.0/2.1/2.2): create, reset, update, get, list, delete and run-now.

Job definitions live in the workspace's SQLite file; a run-now snapshots the settings into the
job run, so later resets do not change runs already triggered.
"""

from __future__ import annotations

import time
from typing import Any

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import Request, invalid, not_found, pagination
from devstack.workspace.runs import manager
from devstack.workspace.scheduler import CREATOR, as_int, normalize_tasks
from devstack.workspace.store import dumps, loads

VERSIONS = ("2.0", "2.1", "2.2")
# Settings fields that are not part of a job's definition.
REQUEST_ONLY = ("access_control_list", "idempotency_token")


def _check_settings(settings: dict[str, Any], field: str) -> dict[str, Any]:
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


def _merge_by_key(old: list[dict], new: list[dict], key: str) -> list[dict]:
    merged = {item.get(key): item for item in old}
    for item in new:
        merged[item.get(key)] = item
    return list(merged.values())


PRINCIPALS = ("user_name", "group_name", "service_principal_name")
PERMISSION_LEVELS = ("CAN_VIEW", "CAN_MANAGE_RUN", "IS_OWNER", "CAN_MANAGE")


def _check_acl(acl: Any, field: str = "access_control_list") -> list[dict[str, str]]:
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


class JobsService:
    """``ctx.services["jobs"]``: job definitions for the run manager and other modules."""

    def __init__(self, ctx: WorkspaceContext):
        self.ctx = ctx
        self.store = ctx.store

    def require(self, job_id: int) -> dict[str, Any]:
        row = self.store.one("SELECT job_id, created_time, settings FROM jobs WHERE job_id=?", (job_id,))
        if row is None:
            raise not_found(f"Job {job_id} does not exist.")
        return {
            "job_id": row["job_id"],
            "created_time": row["created_time"],
            "settings": loads(row["settings"]),
        }

    def max_concurrent_runs(self, job_id: int) -> int:
        row = self.store.one("SELECT settings FROM jobs WHERE job_id=?", (job_id,))
        if row is None:
            return 1
        return int(loads(row["settings"]).get("max_concurrent_runs", 1) or 1)

    def acl(self, job_id: int) -> list[dict[str, str]]:
        row = self.store.one("SELECT acl FROM job_permissions WHERE job_id=?", (job_id,))
        return loads(row["acl"]) if row else []

    def set_acl(self, job_id: int, acl: list[dict[str, str]], *, replace: bool) -> None:
        merged = {} if replace else {_principal(e): e for e in self.acl(job_id)}
        merged.update({_principal(e): e for e in acl})
        with self.store.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO job_permissions(job_id, acl) VALUES (?, ?)",
                (job_id, dumps(list(merged.values()))),
            )

    def save(self, job_id: int, settings: dict[str, Any], created: int | None = None) -> None:
        with self.store.tx() as conn:
            if created is None:
                conn.execute(
                    "UPDATE jobs SET name=?, settings=? WHERE job_id=?",
                    (settings["name"], dumps(settings), job_id),
                )
            else:
                conn.execute(
                    "INSERT INTO jobs(job_id, name, created_time, settings) VALUES (?,?,?,?)",
                    (job_id, settings["name"], created, dumps(settings)),
                )


def _principal(entry: dict[str, str]) -> tuple[str, str]:
    kind = next(k for k in PRINCIPALS if entry.get(k))
    return kind, entry[kind]


def render_permissions(job_id: int, acl: list[dict[str, str]]) -> dict[str, Any]:
    entries = [
        {"user_name": CREATOR, "all_permissions": [{"permission_level": "IS_OWNER", "inherited": False}]}
    ]
    for entry in acl:
        kind, name = _principal(entry)
        if (kind, name) == ("user_name", CREATOR):
            continue
        entries.append(
            {
                kind: name,
                "all_permissions": [{"permission_level": entry["permission_level"], "inherited": False}],
            }
        )
    return {"object_id": f"/jobs/{job_id}", "object_type": "job", "access_control_list": entries}


def render_job(job: dict[str, Any], expand_tasks: bool = True) -> dict[str, Any]:
    settings = dict(job["settings"])
    if not expand_tasks:
        settings.pop("tasks", None)
        settings.pop("job_clusters", None)
    return {
        "job_id": job["job_id"],
        "creator_user_name": CREATOR,
        "run_as_user_name": CREATOR,
        "created_time": job["created_time"],
        "settings": settings,
        "has_more": False,
    }


def register(router, ctx: WorkspaceContext) -> None:
    jobs = JobsService(ctx)
    ctx.services["jobs"] = jobs
    mgr = manager(ctx)

    ctx.store.ensure_schema(
        "CREATE TABLE IF NOT EXISTS job_permissions (job_id INTEGER PRIMARY KEY, acl TEXT NOT NULL);"
    )

    def create(request: Request):
        acl = (
            _check_acl(request.body["access_control_list"])
            if request.body.get("access_control_list")
            else None
        )
        settings = _check_settings(dict(request.body), "settings")
        job_id = mgr.next_id("job")
        jobs.save(job_id, settings, created=int(time.time() * 1000))
        if acl:
            jobs.set_acl(job_id, acl, replace=True)
        return {"job_id": job_id}

    def permissions(request: Request):
        job_id = request.path_params["job_id"]
        if not job_id.isdigit():
            raise invalid(f"Invalid value for job_id in the path: {job_id!r} is not a job id")
        job_id = int(job_id)
        jobs.require(job_id)
        if request.method in ("PATCH", "PUT"):
            acl = _check_acl(request.body.get("access_control_list", []))
            jobs.set_acl(job_id, acl, replace=request.method == "PUT")
        return render_permissions(job_id, jobs.acl(job_id))

    def reset(request: Request):
        job_id = request.require("job_id", int)
        new = request.require("new_settings", dict)
        job = jobs.require(job_id)
        jobs.save(job["job_id"], _check_settings(new, "new_settings"))
        return {}

    def update(request: Request):
        job_id = request.require("job_id", int)
        new = request.get("new_settings", dict, {})
        remove = request.get("fields_to_remove", list, [])
        settings = dict(jobs.require(job_id)["settings"])
        for name, value in new.items():
            if name == "tasks" and isinstance(value, list):
                settings[name] = _merge_by_key(settings.get("tasks") or [], value, "task_key")
            elif name == "job_clusters" and isinstance(value, list):
                settings[name] = _merge_by_key(settings.get("job_clusters") or [], value, "job_cluster_key")
            else:
                settings[name] = value
        for path in remove:
            head, _, rest = str(path).partition("/")
            if not rest:
                settings.pop(head, None)
            elif head in ("tasks", "job_clusters"):
                key = "task_key" if head == "tasks" else "job_cluster_key"
                settings[head] = [item for item in settings.get(head) or [] if item.get(key) != rest]
        jobs.save(job_id, _check_settings(settings, "new_settings"))
        return {}

    def get(request: Request):
        return render_job(jobs.require(request.require("job_id", int)))

    def list_jobs(request: Request):
        name = request.get("name", str)
        expand = request.get("expand_tasks", bool, False)
        limit, offset = pagination(request, default_limit=20, max_limit=100)
        sql = "SELECT job_id, created_time, settings FROM jobs"
        params: tuple = ()
        if name:
            sql += " WHERE name = ?"
            params = (name,)
        rows = ctx.store.all(sql + " ORDER BY job_id LIMIT ? OFFSET ?", (*params, limit + 1, offset))
        page = [
            render_job(
                {"job_id": r["job_id"], "created_time": r["created_time"], "settings": loads(r["settings"])},
                expand,
            )
            for r in rows[:limit]
        ]
        out: dict[str, Any] = {"jobs": page, "has_more": len(rows) > limit}
        if out["has_more"]:
            out["next_page_token"] = str(offset + limit)
        if offset:
            out["prev_page_token"] = str(max(0, offset - limit))
        return out

    def delete(request: Request):
        job_id = request.require("job_id", int)
        jobs.require(job_id)
        with ctx.store.tx() as conn:
            conn.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))
        return {}

    def run_now(request: Request):
        job_id = request.require("job_id", int)
        notebook_params = request.get("notebook_params", dict)
        python_params = request.get("python_params", list)
        job_parameters = request.get("job_parameters", dict)
        token = request.get("idempotency_token", str)
        queue = request.get("queue", dict)
        job = jobs.require(job_id)
        settings = dict(job["settings"])
        if not settings.get("tasks"):
            raise invalid(
                f"Job {job_id} has no tasks: add tasks with jobs/reset or jobs/update before run-now."
            )
        if queue is not None:
            settings["queue"] = queue
        settings["run_name"] = settings.get("name")
        overrides = {
            "notebook_params": notebook_params or {},
            "python_params": python_params or [],
            "job_parameters": job_parameters or {},
        }
        for name in ("jar_params", "spark_submit_params", "python_named_params", "sql_params"):
            if request.get(name) is not None:
                overrides[name] = request.get(name)
        rec = mgr.create_run(
            job_id=job_id,
            run_type="JOB_RUN",
            settings=settings,
            overrides=overrides,
            idempotency_token=token,
            max_concurrent_runs=int(settings.get("max_concurrent_runs", 1)),
        )
        return {"run_id": rec.run_id, "number_in_job": rec.run_id}

    router.add("POST", VERSIONS, "jobs/create", create)
    router.add("POST", VERSIONS, "jobs/reset", reset)
    router.add("POST", VERSIONS, "jobs/update", update)
    router.add("GET", VERSIONS, "jobs/get", get)
    router.add("GET", VERSIONS, "jobs/list", list_jobs)
    router.add("POST", VERSIONS, "jobs/delete", delete)
    router.add("POST", VERSIONS, "jobs/run-now", run_now)
    for method in ("GET", "PATCH", "PUT"):
        router.add(method, "2.0", "permissions/jobs/{job_id}", permissions)
