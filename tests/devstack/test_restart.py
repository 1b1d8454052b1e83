"""A workspace restart loses nothing: jobs, runs and task values stay, queued runs stay queued and
run afterwards, a task whose driver was lost ends DRIVER_ERROR and its retries still apply."""

from __future__ import annotations

import base64
import time

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from devstack.services import start_workspace
from tests.devstack.jobs_support import HEADER, Api, notebook_task, pid_alive

FOLDER = "/Shared/restart"
# The first attempt leaves a marker and sleeps (it is still executing when the workspace stops);
# the retry finds the marker and ends at once.
ONCE_SLOW = (
    "import os, time\n"
    'dbutils.widgets.text("marker", "")\n'
    'marker = dbutils.widgets.get("marker")\n'
    "if not os.path.exists(marker):\n"
    '    open(marker, "w").close()\n'
    "    time.sleep(120)\n"
    'dbutils.notebook.exit("retried")\n'
)
LOST_DRIVER = "The Spark driver has stopped unexpectedly"


def import_notebook(client: WorkspaceClient, path: str, body: str) -> None:
    client.workspace.mkdirs(path.rsplit("/", 1)[0])
    client.workspace.import_(
        path,
        content=base64.b64encode((HEADER + body).encode()).decode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
        overwrite=True,
    )


def test_a_stop_ends_the_executing_task_with_a_lost_driver_retries_it_and_keeps_the_queue(tmp_path):
    data_dir = tmp_path / "ws"
    service = start_workspace("restart", data_dir, token="r")
    port = service.port
    try:
        import_notebook(WorkspaceClient(host=service.url, token="r"), f"{FOLDER}/once_slow", ONCE_SLOW)
        api = Api(service.url, "r")
        task = notebook_task(
            "work",
            f"{FOLDER}/once_slow",
            {"marker": str(tmp_path / "marker")},
            max_retries=1,
            min_retry_interval_millis=0,
        )
        job_id = api.ok(
            "POST",
            "2.2/jobs/create",
            {
                "name": "survives-restart",
                "tasks": [task],
                "max_concurrent_runs": 1,
                "queue": {"enabled": True},
            },
        )["job_id"]
        run_id = api.ok("POST", "2.2/jobs/run-now", {"job_id": job_id})["run_id"]
        queued_id = api.ok("POST", "2.2/jobs/run-now", {"job_id": job_id})["run_id"]
        running = api.wait(run_id, until=lambda r: r["state"]["life_cycle_state"] == "RUNNING")
        assert api.run(queued_id)["state"]["life_cycle_state"] == "QUEUED"
        deadline = time.monotonic() + 30
        while not (tmp_path / "marker").exists():  # the first attempt is in its sleep
            assert time.monotonic() < deadline, "the first attempt never started its notebook"
            time.sleep(0.1)
        driver_pid = int(running["tasks"][0]["cluster_instance"]["spark_context_id"])
        api.ok(
            "POST",
            "2.0/devstack/task-values/set",
            {"job_run_id": run_id, "task_key": "work", "key": "k", "value": {"a": 1}},
        )
    finally:
        service.stop()  # SIGTERM
    deadline = time.monotonic() + 10
    while pid_alive(driver_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(driver_pid), "the driver outlived its workspace"

    service = start_workspace("restart", data_dir, token="r", port=port)
    try:
        api = Api(service.url, "r")
        run = api.wait(run_id)
        lost, retry = run["tasks"]
        assert lost["state"]["life_cycle_state"] == "INTERNAL_ERROR"
        assert lost["state"]["result_state"] == "FAILED"
        assert lost["state"]["state_message"].startswith(LOST_DRIVER)
        assert lost["status"]["termination_details"]["code"] == "DRIVER_ERROR"
        assert (retry["attempt_number"], retry["state"]["result_state"]) == (1, "SUCCESS")
        assert run["state"]["result_state"] == "SUCCESS"
        # The run queued behind max_concurrent_runs stayed queued and ran after the first one.
        queued = api.wait(queued_id)
        assert queued["state"]["result_state"] == "SUCCESS"
        assert queued["tasks"][0]["start_time"] <= run["end_time"] <= queued["tasks"][-1]["end_time"]
        assert api.ok("GET", "2.2/jobs/get", {"job_id": job_id})["settings"]["name"] == "survives-restart"
        value = api.ok(
            "GET", "2.0/devstack/task-values/get", {"job_run_id": run_id, "task_key": "work", "key": "k"}
        )
        assert value == {"value": {"a": 1}}
        # the restarted workspace never reuses a run id
        again = api.ok("POST", "2.2/jobs/run-now", {"job_id": job_id})["run_id"]
        assert again > max(t["run_id"] for t in queued["tasks"])
        assert api.wait(again)["state"]["result_state"] == "SUCCESS"
    finally:
        service.stop()
