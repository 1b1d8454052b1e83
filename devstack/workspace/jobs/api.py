"""Jobs API (2.0/2.1/2.2): create, reset, update, get, list, delete, run-now, and job permissions."""

from __future__ import annotations

import uuid
from typing import Any

from devstack.workspace.http import Request, invalid, pagination
from devstack.workspace.iam.backend import user_name_of
from devstack.workspace.jobs.backend import JobsBackend, check_acl, principal_of
from devstack.workspace.runs.state import RunsBackend


def _owner_entry(creator: str) -> tuple[str, str]:
    """The ACL principal of a job's creator, its owner: a service principal is named by its
    application id (a UUID), a user by its user name."""
    try:
        uuid.UUID(creator)
    except ValueError:
        return ("user_name", creator)
    return ("service_principal_name", creator)


def render_permissions(job_id: int, creator: str, acl: list[dict[str, str]]) -> dict[str, Any]:
    kind, owner = _owner_entry(creator)
    entries = [{kind: owner, "all_permissions": [{"permission_level": "IS_OWNER", "inherited": False}]}]
    for entry in acl:
        kind, name = principal_of(entry)
        if (kind, name) == _owner_entry(creator):
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
    # Without settings.run_as a job runs as its creator (Jobs API: run_as_user_name).
    run_as = settings.get("run_as") or {}
    return {
        "job_id": job["job_id"],
        "creator_user_name": job["creator_user_name"],
        "run_as_user_name": (
            run_as.get("user_name") or run_as.get("service_principal_name") or job["creator_user_name"]
        ),
        "created_time": job["created_time"],
        "settings": settings,
        "has_more": False,
    }


class JobsApi:
    """The jobs endpoints; run-now hands the job's settings to the runs backend."""

    def __init__(self, jobs: JobsBackend, runs: RunsBackend):
        self.jobs = jobs
        self.runs = runs

    def create(self, request: Request):
        self.runs.launcher.clusters.check_job_compute(dict(request.body))  # as jobs/create checks them
        return {"job_id": self.jobs.create(dict(request.body), user_name_of(request.principal))}

    def permissions(self, request: Request):
        job_id = request.path_params["job_id"]
        if not job_id.isdigit():
            raise invalid(f"Invalid value for job_id in the path: {job_id!r} is not a job id")
        job_id = int(job_id)
        creator = self.jobs.require(job_id)["creator_user_name"]
        if request.method in ("PATCH", "PUT"):
            acl = check_acl(request.body.get("access_control_list", []))
            self.jobs.set_acl(job_id, acl, replace=request.method == "PUT")
        return render_permissions(job_id, creator, self.jobs.acl(job_id))

    def reset(self, request: Request):
        job_id = request.require("job_id", int)
        new = request.require("new_settings", dict)
        self.runs.launcher.clusters.check_job_compute(new)  # cluster specs, as jobs/reset checks them
        self.jobs.reset(job_id, new)
        return {}

    def update(self, request: Request):
        job_id = request.require("job_id", int)
        new = request.get("new_settings", dict, {})
        remove = request.get("fields_to_remove", list, [])
        self.runs.launcher.clusters.check_job_compute(new)  # the cluster specs it brings, as jobs/update does
        self.jobs.update(job_id, new, remove)
        return {}

    def get(self, request: Request):
        return render_job(self.jobs.require(request.require("job_id", int)))

    def list(self, request: Request):
        name = request.get("name", str)
        expand = request.get("expand_tasks", bool, False)
        limit, offset = pagination(request, default_limit=20, max_limit=100)
        found = self.jobs.list(name, limit + 1, offset)
        out: dict[str, Any] = {
            "jobs": [render_job(job, expand) for job in found[:limit]],
            "has_more": len(found) > limit,
        }
        if out["has_more"]:
            out["next_page_token"] = str(offset + limit)
        if offset:
            out["prev_page_token"] = str(max(0, offset - limit))
        return out

    def delete(self, request: Request):
        self.jobs.delete(request.require("job_id", int))
        return {}

    def run_now(self, request: Request):
        job_id = request.require("job_id", int)
        notebook_params = request.get("notebook_params", dict)
        python_params = request.get("python_params", list)
        job_parameters = request.get("job_parameters", dict)
        token = request.get("idempotency_token", str)
        queue = request.get("queue", dict)
        job = self.jobs.require(job_id)
        settings = dict(job["settings"])
        if not settings.get("tasks"):
            raise invalid(
                f"Job {job_id} has no tasks: add tasks with jobs/reset or jobs/update before run-now."
            )
        if queue is not None:
            settings["queue"] = queue
        settings["run_name"] = settings.get("name")
        settings["creator_user_name"] = job["creator_user_name"]  # a job's runs show its creator
        overrides = {
            "notebook_params": notebook_params or {},
            "python_params": python_params or [],
            "job_parameters": job_parameters or {},
        }
        for name in ("jar_params", "spark_submit_params", "python_named_params", "sql_params"):
            if request.get(name) is not None:
                overrides[name] = request.get(name)
        rec = self.runs.create_run(
            job_id=job_id,
            run_type="JOB_RUN",
            settings=settings,
            overrides=overrides,
            idempotency_token=token,
            max_concurrent_runs=int(settings.get("max_concurrent_runs", 1)),
        )
        self.runs.persist()  # the run id answered survives a kill of the process
        return {"run_id": rec.run_id, "number_in_job": rec.run_id}
