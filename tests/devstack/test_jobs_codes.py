"""Codes and small shapes of the Jobs API as Databricks has them, through databricks-sdk and the
Airflow provider: unknown job and run ids, get-output of notebook and Python tasks, runs/list
limits and filters, the jobs/list name filter."""

from __future__ import annotations

import io
import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, ResourceDoesNotExist
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

from devstack.services import start_workspace
from tests.conftest import databricks_conn_uri
from tests.devstack.jobs_support import Api, import_notebooks, small_cluster

FOLDER = "/Shared/codes"
NEVER = 10**12  # an id this workspace never handed out


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = start_workspace("codes", tmp_path_factory.mktemp("ws-codes"), token="c")
    try:
        client = WorkspaceClient(host=service.url, token="c")
        import_notebooks(client, FOLDER)
        client.workspace.upload(
            f"{FOLDER}/hello.py",
            io.BytesIO(b"import sys\nprint('hello', *sys.argv[1:])\n"),
            format=ImportFormat.AUTO,
        )
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def client(service) -> WorkspaceClient:
    return WorkspaceClient(host=service.url, token="c")


@pytest.fixture(scope="module")
def api(service) -> Api:
    return Api(service.url, "c")


@pytest.fixture
def hook(service):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_DATABRICKS_DEFAULT", databricks_conn_uri(service))
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        yield DatabricksHook(retry_limit=1)


def notebook(key: str, name: str = "ok") -> jobs.SubmitTask:
    return jobs.SubmitTask(
        task_key=key,
        notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/{name}"),
        new_cluster=small_cluster(),
    )


@pytest.fixture(scope="module")
def deleted_run(client) -> int:
    run = client.jobs.submit(run_name="to-delete", tasks=[notebook("t")]).result()
    client.jobs.delete_run(run.run_id)
    return run.run_id


# --------------------------------------------------------------------------- unknown ids


def test_unknown_job_is_invalid_parameter_value_which_the_sdk_reads_as_does_not_exist(client, api):
    response = api.call("GET", "2.2/jobs/get", {"job_id": NEVER})
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": f"Job {NEVER} does not exist.",
    }
    with pytest.raises(ResourceDoesNotExist):  # the sdk's override for jobs/get
        client.jobs.get(NEVER)
    with pytest.raises(InvalidParameterValue, match=f"Job {NEVER} does not exist"):
        client.jobs.run_now(NEVER)
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        client.jobs.delete(NEVER)


def test_a_run_id_never_handed_out_is_invalid_parameter_value(client, api):
    response = api.call("GET", "2.2/jobs/runs/get", {"run_id": NEVER})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    with pytest.raises(ResourceDoesNotExist):  # the sdk's override for runs/get (and runs/get-output)
        client.jobs.get_run(NEVER)
    with pytest.raises(ResourceDoesNotExist, match=f"Run {NEVER} does not exist"):
        client.jobs.get_run_output(NEVER)
    with pytest.raises(InvalidParameterValue):
        client.jobs.cancel_run(NEVER)


def test_a_deleted_run_is_resource_does_not_exist(client, api, deleted_run):
    response = api.call("GET", "2.2/jobs/runs/get", {"run_id": deleted_run})
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(ResourceDoesNotExist):
        client.jobs.get_run(deleted_run)


def test_the_providers_durable_execution_resubmits_when_its_stored_run_is_gone(hook, deleted_run):
    from airflow.providers.databricks.exceptions import DatabricksApiError
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    with pytest.raises(DatabricksApiError) as missing:
        hook.get_run(deleted_run)
    assert missing.value.http_status_code == 404
    operator = DatabricksSubmitRunOperator(task_id="t", json={"run_name": "x"}, databricks_retry_limit=1)
    # "NOT_FOUND:" is neither active nor succeeded: the durable retry submits a fresh run.
    status = operator.get_job_status(deleted_run, {})
    assert status == "NOT_FOUND:"
    assert not operator.is_job_active(status) and not operator.is_job_succeeded(status)
    with pytest.raises(DatabricksApiError) as never:
        hook.get_run(NEVER)
    assert never.value.http_status_code == 400


# --------------------------------------------------------------------------- get-output


def test_a_notebook_tasks_output_has_no_logs_a_python_tasks_has(client):
    notebook_run = client.jobs.submit(run_name="nb", tasks=[notebook("nb")]).result()
    output = client.jobs.get_run_output(notebook_run.tasks[0].run_id)
    assert output.notebook_output.result == "ok "
    assert output.logs is None
    python_task = jobs.SubmitTask(
        task_key="py",
        spark_python_task=jobs.SparkPythonTask(
            python_file=f"/Workspace{FOLDER}/hello.py", parameters=["there"]
        ),
        new_cluster=small_cluster(),
    )
    python_run = client.jobs.submit(run_name="py", tasks=[python_task]).result()
    output = client.jobs.get_run_output(python_run.tasks[0].run_id)
    assert "hello there" in output.logs
    assert output.notebook_output is None


# --------------------------------------------------------------------------- runs/list


def test_runs_list_limits_pages_and_filters(client, api):
    started = int(time.time() * 1000)
    created = client.jobs.create(
        name="codes-list",
        tasks=[
            jobs.Task(
                task_key="t",
                notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/empty"),
                new_cluster=small_cluster(),
            )
        ],
        max_concurrent_runs=30,
    )
    ids = [client.jobs.run_now(created.job_id).run_id for _ in range(27)]
    for run_id in ids:
        client.jobs.wait_get_run_job_terminated_or_skipped(run_id)
    submitted = client.jobs.submit(run_name="codes-one-off", tasks=[notebook("t", "empty")]).result()

    def page(**query) -> dict:
        return api.ok("GET", "2.2/jobs/runs/list", {"job_id": created.job_id, **query})

    assert len(page()["runs"]) == 20  # the default
    assert len(page(limit=25)["runs"]) == 25
    assert len(page(limit=0)["runs"]) == 25  # 0 means the maximum
    for bad in (26, -1):
        response = api.call("GET", "2.2/jobs/runs/list", {"limit": bad})
        assert (response.status_code, response.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    # newest first; offset and page_token both page; the sdk follows next_page_token to the end
    assert [r["run_id"] for r in page(limit=5, offset=2)["runs"]] == ids[::-1][2:7]
    first = page(limit=10)
    second = page(limit=10, page_token=first["next_page_token"])
    assert [r["run_id"] for r in first["runs"] + second["runs"]] == ids[::-1][:20]
    assert [r.run_id for r in client.jobs.list_runs(job_id=created.job_id, limit=4)] == ids[::-1]
    # expand_tasks, run_type, active_only / completed_only, start_time_from / start_time_to
    assert "tasks" not in page(limit=1)["runs"][0]
    assert page(limit=1, expand_tasks=True)["runs"][0]["tasks"][0]["task_key"] == "t"
    one_off = [
        r.run_id for r in client.jobs.list_runs(run_type=jobs.RunType.SUBMIT_RUN, start_time_from=started)
    ]
    assert submitted.run_id in one_off and not set(ids) & set(one_off)
    response = api.call("GET", "2.2/jobs/runs/list", {"run_type": "NIGHTLY"})
    assert response.status_code == 400
    assert list(client.jobs.list_runs(job_id=created.job_id, active_only=True)) == []
    assert len(list(client.jobs.list_runs(job_id=created.job_id, completed_only=True))) == 27
    with pytest.raises(InvalidParameterValue, match="active_only"):
        list(client.jobs.list_runs(active_only=True, completed_only=True))
    runs = {r.run_id: r for r in client.jobs.list_runs(job_id=created.job_id)}
    middle = runs[ids[13]].start_time
    window = [
        r.run_id
        for r in client.jobs.list_runs(job_id=created.job_id, start_time_from=middle, start_time_to=middle)
    ]
    assert window == [r for r in ids if runs[r].start_time == middle][::-1]
    assert {r.run_id for r in client.jobs.list_runs(job_id=created.job_id, start_time_to=middle - 1)} == {
        r for r in ids if runs[r].start_time < middle
    }


# --------------------------------------------------------------------------- jobs/list


def test_jobs_list_name_filter_is_exact_and_case_insensitive(client):
    wanted = client.jobs.create(name="Nightly Scoring").job_id
    client.jobs.create(name="Nightly Scoring v2")
    client.jobs.create(name="nightly")
    for name in ("Nightly Scoring", "nightly scoring", "NIGHTLY SCORING"):
        assert [j.job_id for j in client.jobs.list(name=name)] == [wanted]
    assert list(client.jobs.list(name="Nightly Scor")) == []
