"""databricks-sdk's WorkspaceClient against the emulated workspace: jobs and runs end to end."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound
from databricks.sdk.service import jobs

from tests.devstack.jobs_support import import_notebooks, small_cluster

FOLDER = "/Shared/sdk-jobs"


@pytest.fixture(scope="module")
def client(workspace) -> WorkspaceClient:
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    import_notebooks(client, FOLDER)
    return client


def _task(key: str, notebook: str, params: dict | None = None) -> jobs.SubmitTask:
    return jobs.SubmitTask(
        task_key=key,
        notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/{notebook}", base_parameters=params or {}),
        new_cluster=small_cluster(),
    )


def test_submit_result_and_output(client):
    run = client.jobs.submit(run_name="sdk-submit", tasks=[_task("greet", "ok", {"x": "sdk"})]).result()
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.run_type == jobs.RunType.SUBMIT_RUN
    assert run.run_page_url.endswith(f"/jobs/runs/{run.run_id}")
    output = client.jobs.get_run_output(run.tasks[0].run_id)
    assert output.notebook_output.result == "ok sdk"


def test_job_lifecycle_create_run_now_reset_update_delete(client):
    created = client.jobs.create(
        name="sdk-lifecycle",
        tasks=[
            jobs.Task(
                task_key="greet",
                notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/ok", base_parameters={"x": "base"}),
                new_cluster=small_cluster(),
            )
        ],
    )
    job = client.jobs.get(created.job_id)
    assert job.settings.name == "sdk-lifecycle"
    assert job.settings.max_concurrent_runs == 1

    run = client.jobs.run_now(created.job_id, notebook_params={"x": "override"}).result()
    assert run.run_type == jobs.RunType.JOB_RUN
    assert run.job_id == created.job_id
    assert client.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result == "ok override"

    client.jobs.update(created.job_id, new_settings=jobs.JobSettings(max_concurrent_runs=3))
    assert client.jobs.get(created.job_id).settings.max_concurrent_runs == 3
    assert client.jobs.get(created.job_id).settings.tasks[0].task_key == "greet"

    client.jobs.reset(created.job_id, new_settings=jobs.JobSettings(name="sdk-lifecycle-renamed"))
    reset = client.jobs.get(created.job_id)
    assert reset.settings.name == "sdk-lifecycle-renamed"
    assert not reset.settings.tasks

    listed = [r.run_id for r in client.jobs.list_runs(job_id=created.job_id)]
    assert listed == [run.run_id]

    client.jobs.delete(created.job_id)
    with pytest.raises(NotFound):
        client.jobs.get(created.job_id)


def test_list_jobs_by_name_and_across_pages(client):
    ids = [client.jobs.create(name=f"sdk-page-{i}").job_id for i in range(5)]
    named = list(client.jobs.list(name="sdk-page-3"))
    assert [j.job_id for j in named] == [ids[3]]
    # the sdk follows next_page_token: a page size of 2 still yields every job
    seen = {j.job_id for j in client.jobs.list(limit=2)}
    assert set(ids) <= seen


def test_job_parameters_reach_the_notebook(client):
    created = client.jobs.create(
        name="sdk-job-params",
        parameters=[jobs.JobParameterDefinition(name="x", default="default")],
        tasks=[
            jobs.Task(
                task_key="greet",
                notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/ok"),
                new_cluster=small_cluster(),
            )
        ],
    )
    run = client.jobs.run_now(created.job_id, job_parameters={"x": "from-run-now"}).result()
    assert client.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result == "ok from-run-now"
    assert {p.name: p.value for p in run.job_parameters} == {"x": "from-run-now"}


def test_cancel_through_the_sdk(client):
    waiter = client.jobs.submit(run_name="sdk-cancel", tasks=[_task("sleep", "sleep", {"seconds": "120"})])
    client.jobs.cancel_run(waiter.run_id).result()
    run = client.jobs.get_run(waiter.run_id)
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert run.state.result_state == jobs.RunResultState.CANCELED


def test_unknown_ids_raise_not_found(client):
    with pytest.raises(NotFound):
        client.jobs.get_run(987654321)
    with pytest.raises(NotFound):
        client.jobs.get(987654321)
    with pytest.raises(InvalidParameterValue):  # no override for run-now: the API's 400 as it is
        client.jobs.run_now(987654321)
