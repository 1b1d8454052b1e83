"""The provider's DatabricksHook calls (sync and async) that its operators rely on, against the emulator."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import databricks_conn_uri
from tests.devstack.jobs_support import SMALL_CLUSTER, Api, import_notebooks, notebook_task

FOLDER = "/Shared/provider-hook"


@pytest.fixture(scope="module")
def hook(workspace):
    from databricks.sdk import WorkspaceClient

    import_notebooks(WorkspaceClient(host=workspace.url, token=workspace.token), FOLDER)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_DATABRICKS_DEFAULT", databricks_conn_uri(workspace))
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        yield DatabricksHook(retry_limit=3, retry_delay=0.1)


def test_submit_state_page_url_and_output(hook, workspace):
    run_id = hook.submit_run(
        {
            "run_name": "hook",
            "new_cluster": SMALL_CLUSTER,
            "notebook_task": {"notebook_path": f"{FOLDER}/ok", "base_parameters": {"x": 1}},
        }
    )
    Api(workspace.url, workspace.token).wait(run_id)
    state = hook.get_run_state(run_id)
    assert state.is_terminal and state.is_successful
    assert hook.get_run_page_url(run_id).startswith(workspace.url)
    task_run = hook.get_run_tasks(run_id)[0]
    assert task_run["task_key"] == "hook"  # the legacy single-task shape keys its task by run_name
    assert hook.get_run_output(task_run["run_id"])["notebook_output"]["result"] == "ok 1"
    assert hook.get_job_id(run_id) > 0


def test_async_calls_send_get_parameters_as_a_json_body(hook, workspace):
    run_id = hook.submit_run({"run_name": "hook-async", "tasks": [notebook_task("t", f"{FOLDER}/empty")]})
    Api(workspace.url, workspace.token).wait(run_id)

    async def check():
        async with hook:
            state = await hook.a_get_run_state(run_id)
            run = await hook.a_get_run(run_id)
            return state, run

    state, run = asyncio.run(check())
    assert state.is_successful
    assert run["tasks"][0]["task_key"] == "t"


def test_find_job_by_name_and_repair_after_failure(hook, workspace):
    api = Api(workspace.url, workspace.token)
    job_id = hook.create_job({"name": "hook-repair", "tasks": [notebook_task("t", f"{FOLDER}/fail")]})
    assert hook.find_job_id_by_name("hook-repair") == job_id
    assert hook.find_job_id_by_name("no-such-job") is None
    run_id = hook.run_now({"job_id": job_id})
    assert api.wait(run_id)["state"]["result_state"] == "FAILED"
    assert hook.get_latest_repair_id(run_id) is None
    hook.reset_job(str(job_id), {"name": "hook-repair", "tasks": [notebook_task("t", f"{FOLDER}/empty")]})
    repair_id = hook.repair_run({"run_id": run_id, "rerun_all_failed_tasks": True})
    # a repair runs the job's current task definition: the fixed notebook now succeeds
    assert api.wait(run_id)["state"]["result_state"] == "SUCCESS"
    assert hook.get_latest_repair_id(run_id) == repair_id


def test_cluster_state_start_and_terminate(hook):
    cluster_id = "0000-000000-devstack"
    hook.terminate_cluster({"cluster_id": cluster_id})
    assert hook.get_cluster_state(cluster_id).state == "TERMINATED"
    hook.start_cluster({"cluster_id": cluster_id})
    assert hook.get_cluster_state(cluster_id).state in ("PENDING", "RUNNING")


def test_runs_get_pages_tasks_beyond_100_and_the_hook_merges_them(hook, workspace):
    api = Api(workspace.url, workspace.token)
    tasks = [notebook_task("root", f"{FOLDER}/fail")]
    tasks += [
        notebook_task(f"leaf{i}", f"{FOLDER}/empty", depends_on=[{"task_key": "root"}]) for i in range(104)
    ]
    run_id = api.submit(run_name="wide", tasks=tasks)
    api.wait(run_id)
    first_page = api.run(run_id)
    assert len(first_page["tasks"]) == 100
    assert first_page["next_page_token"]
    merged = hook.get_run(run_id)
    assert sorted(t["task_key"] for t in merged["tasks"]) == sorted(t["task_key"] for t in tasks)
    assert {t["state"]["result_state"] for t in merged["tasks"] if t["task_key"] != "root"} == {
        "UPSTREAM_FAILED"
    }
