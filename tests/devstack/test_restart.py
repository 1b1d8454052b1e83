"""A workspace restart keeps jobs, runs and task values; runs in flight end INTERNAL_ERROR."""

from __future__ import annotations

import time

from databricks.sdk import WorkspaceClient

from devstack.services import start_workspace
from tests.devstack.jobs_support import Api, import_notebooks, notebook_task, pid_alive

FOLDER = "/Shared/restart"


def test_restart_mid_run_reports_internal_error_and_keeps_jobs(tmp_path):
    data_dir = tmp_path / "ws"
    service = start_workspace("restart", data_dir, token="r")
    try:
        import_notebooks(WorkspaceClient(host=service.url, token="r"), FOLDER)
        api = Api(service.url, "r")
        job_id = api.ok(
            "POST",
            "2.2/jobs/create",
            {
                "name": "survives-restart",
                "tasks": [notebook_task("sleep", f"{FOLDER}/sleep", {"seconds": "120"})],
            },
        )["job_id"]
        run_id = api.ok("POST", "2.2/jobs/run-now", {"job_id": job_id})["run_id"]
        running = api.wait(run_id, until=lambda r: r["state"]["life_cycle_state"] == "RUNNING")
        driver_pid = int(running["tasks"][0]["cluster_instance"]["spark_context_id"])
        api.ok(
            "POST",
            "2.0/devstack/task-values/set",
            {"job_run_id": run_id, "task_key": "sleep", "key": "k", "value": {"a": 1}},
        )
    finally:
        service.stop()
    deadline = time.monotonic() + 10
    while pid_alive(driver_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(driver_pid), "the driver outlived its workspace"

    service = start_workspace("restart", data_dir, token="r")
    try:
        api = Api(service.url, "r")
        run = api.run(run_id)
        assert run["state"]["life_cycle_state"] == "INTERNAL_ERROR"
        assert run["state"]["result_state"] == "FAILED"
        assert "restarted" in run["state"]["state_message"]
        assert run["tasks"][0]["state"]["life_cycle_state"] == "INTERNAL_ERROR"
        assert api.ok("GET", "2.2/jobs/get", {"job_id": job_id})["settings"]["name"] == "survives-restart"
        value = api.ok(
            "GET", "2.0/devstack/task-values/get", {"job_run_id": run_id, "task_key": "sleep", "key": "k"}
        )
        assert value == {"value": {"a": 1}}
        # the restarted workspace keeps working and never reuses a run id
        api.ok(
            "POST",
            "2.2/jobs/update",
            {
                "job_id": job_id,
                "new_settings": {"tasks": [notebook_task("sleep", f"{FOLDER}/sleep", {"seconds": "0"})]},
            },
        )
        again = api.ok("POST", "2.2/jobs/run-now", {"job_id": job_id})["run_id"]
        assert again > max(t["run_id"] for t in run["tasks"])
        assert api.wait(again)["state"]["result_state"] == "SUCCESS"
    finally:
        service.stop()
