"""--max-parallel-runs bounds task executions; the rest wait QUEUED (queueing on) or PENDING."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient

from devstack.services import start_workspace
from tests.devstack.jobs_support import ALL_PURPOSE, Api, import_notebooks, notebook_task

FOLDER = "/Shared/queueing"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    service = start_workspace(
        "queueing",
        tmp_path_factory.mktemp("ws-queueing"),
        token="q",
        extra_args=["--max-parallel-runs", "1", "--cluster-start-seconds", "1"],
    )
    try:
        import_notebooks(WorkspaceClient(host=service.url, token="q"), FOLDER)
        yield Api(service.url, "q")
    finally:
        service.stop()


def test_runs_beyond_the_limit_queue_and_all_complete(api):
    cluster_id = api.ok("GET", "2.1/clusters/list", ALL_PURPOSE)["clusters"][0]["cluster_id"]
    task = notebook_task("sleep", f"{FOLDER}/sleep", {"seconds": "1"}, existing_cluster_id=cluster_id)
    ids = [api.submit(run_name=f"q{i}", queue={"enabled": True}, tasks=[task]) for i in range(3)]
    states = [api.run(i)["state"]["life_cycle_state"] for i in ids]
    assert states[1:] == ["QUEUED", "QUEUED"]
    assert api.stats()["queue_length"] == 2
    assert api.run(ids[2])["status"]["queue_details"]["code"] == "ACTIVE_RUN_JOB_TASKS_LIMIT_REACHED"

    runs = [api.wait(i) for i in ids]
    # one execution at a time: each task run began executing after the previous one ended
    spans = sorted((t["end_time"] - t["execution_duration"], t["end_time"]) for r in runs for t in r["tasks"])
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False)), spans
    assert [api.run(i)["state"]["result_state"] for i in ids] == ["SUCCESS"] * 3


def test_without_queueing_waiting_runs_are_pending(api):
    cluster_id = api.ok("GET", "2.1/clusters/list", ALL_PURPOSE)["clusters"][0]["cluster_id"]
    task = notebook_task("sleep", f"{FOLDER}/sleep", {"seconds": "1"}, existing_cluster_id=cluster_id)
    ids = [api.submit(run_name=f"p{i}", tasks=[task]) for i in range(2)]
    assert api.run(ids[1])["state"]["life_cycle_state"] == "PENDING"
    for run_id in ids:
        assert api.wait(run_id)["state"]["result_state"] == "SUCCESS"


def test_cluster_start_seconds_shows_as_pending_setup(api):
    run_id = api.submit(run_name="slow-cluster", tasks=[notebook_task("t", f"{FOLDER}/empty")])
    pending = api.run(run_id)
    assert pending["state"]["life_cycle_state"] == "PENDING"
    run = api.wait(run_id)
    assert run["state"]["result_state"] == "SUCCESS"
    assert run["tasks"][0]["setup_duration"] >= 1000
    assert run["devstack"]["cluster_starts"] == 1
