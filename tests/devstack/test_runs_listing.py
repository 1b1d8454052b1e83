"""runs/list filters and pages, cancel-all, and delete of runs."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient

from tests.devstack.jobs_support import Api, import_notebooks, notebook_task

FOLDER = "/Shared/runs-listing"


@pytest.fixture(scope="module")
def api(workspace) -> Api:
    import_notebooks(WorkspaceClient(host=workspace.url, token=workspace.token), FOLDER)
    return Api(workspace.url, workspace.token)


@pytest.fixture(scope="module")
def job_with_runs(api):
    """A job with two finished runs and one long run that the tests cancel."""
    job_id = api.ok(
        "POST",
        "2.2/jobs/create",
        {
            "name": "listing",
            "max_concurrent_runs": 5,
            "parameters": [{"name": "seconds", "default": "0"}],
            "tasks": [notebook_task("sleep", f"{FOLDER}/sleep", {"seconds": "{{job.parameters.seconds}}"})],
        },
    )["job_id"]
    done = [api.ok("POST", "2.2/jobs/run-now", {"job_id": job_id})["run_id"] for _ in range(2)]
    for run_id in done:
        assert api.wait(run_id)["state"]["result_state"] == "SUCCESS"
    active = api.ok("POST", "2.2/jobs/run-now", {"job_id": job_id, "job_parameters": {"seconds": "120"}})[
        "run_id"
    ]
    return job_id, done, active


def test_list_filters_by_job_and_state(api, job_with_runs):
    job_id, done, active = job_with_runs
    listed = api.ok("GET", "2.2/jobs/runs/list", {"job_id": job_id})["runs"]
    assert [r["run_id"] for r in listed] == [active, *reversed(done)]  # newest first
    assert all("tasks" not in r for r in listed)
    only_active = api.ok("GET", "2.2/jobs/runs/list", {"job_id": job_id, "active_only": True})["runs"]
    assert [r["run_id"] for r in only_active] == [active]
    completed = api.ok("GET", "2.2/jobs/runs/list", {"job_id": job_id, "completed_only": True})["runs"]
    assert sorted(r["run_id"] for r in completed) == sorted(done)
    submit_runs = api.ok("GET", "2.2/jobs/runs/list", {"run_type": "SUBMIT_RUN", "limit": 25})["runs"]
    assert all(r["run_type"] == "SUBMIT_RUN" for r in submit_runs)
    expanded = api.ok("GET", "2.2/jobs/runs/list", {"job_id": job_id, "expand_tasks": True})["runs"]
    assert all(r["tasks"][0]["task_key"] == "sleep" for r in expanded)


def test_list_pages_with_tokens(api, job_with_runs):
    job_id, done, active = job_with_runs
    seen, token = [], None
    while True:
        body = {"job_id": job_id, "limit": 1, **({"page_token": token} if token else {})}
        page = api.ok("GET", "2.2/jobs/runs/list", body)
        seen += [r["run_id"] for r in page["runs"]]
        if not page["has_more"]:
            break
        token = page["next_page_token"]
    assert seen == [active, *reversed(done)]


def test_job_parameter_references_resolve_into_notebook_widgets(api, job_with_runs):
    # the notebook does float(widget): an unresolved "{{job.parameters.seconds}}" would fail it
    _, done, active = job_with_runs
    finished = api.run(done[1])
    assert finished["state"]["result_state"] == "SUCCESS"
    assert {p["name"]: p["value"] for p in finished["job_parameters"]} == {"seconds": "0"}
    running = api.wait(active, until=lambda r: r["state"]["life_cycle_state"] == "RUNNING")
    assert {p["name"]: p["value"] for p in running["job_parameters"]} == {"seconds": "120"}


def test_delete_refuses_active_runs_and_removes_finished_ones(api, job_with_runs):
    _, done, active = job_with_runs
    refused = api.call("POST", "2.2/jobs/runs/delete", {"run_id": active})
    assert refused.status_code == 400
    assert "cancel" in refused.json()["message"]
    api.ok("POST", "2.2/jobs/runs/delete", {"run_id": done[0]})
    assert api.call("GET", "2.2/jobs/runs/get", {"run_id": done[0]}).status_code == 404


def test_cancel_all_cancels_the_jobs_active_runs(api, job_with_runs):
    job_id, _, active = job_with_runs
    api.ok("POST", "2.2/jobs/runs/cancel-all", {"job_id": job_id})
    run = api.wait(active, timeout=30)
    assert run["state"]["result_state"] == "CANCELED"
    assert api.ok("GET", "2.2/jobs/runs/list", {"job_id": job_id, "active_only": True})["runs"] == []


def test_responses_parse_with_the_sdk_dataclasses(api, job_with_runs):
    from databricks.sdk.service.jobs import ListRunsResponse, RunLifeCycleState, RunOutput

    job_id, done, _ = job_with_runs
    listed = ListRunsResponse.from_dict(
        api.ok("GET", "2.2/jobs/runs/list", {"job_id": job_id, "expand_tasks": True})
    )
    assert all(run.state.life_cycle_state in set(RunLifeCycleState) for run in listed.runs)
    finished = api.run(done[1])
    output = RunOutput.from_dict(
        api.ok("GET", "2.2/jobs/runs/get-output", {"run_id": finished["tasks"][0]["run_id"]})
    )
    assert output.metadata.run_id == finished["tasks"][0]["run_id"]
    assert output.metadata.state.result_state.value == "SUCCESS"
