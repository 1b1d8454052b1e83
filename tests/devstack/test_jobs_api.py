"""Jobs API shapes the provider relies on: list by name and pages, expand_tasks, update merges, errors."""

from __future__ import annotations

import uuid

import pytest
from databricks.sdk.service.jobs import Job

from tests.devstack.jobs_support import Api, notebook_task


@pytest.fixture(scope="module")
def api(workspace) -> Api:
    return Api(workspace.url, workspace.token)


def _create(api: Api, name: str, **settings) -> int:
    body = {
        "name": name,
        "tasks": [notebook_task("a", "/Shared/x"), notebook_task("b", "/Shared/x")],
        **settings,
    }
    return api.ok("POST", "2.2/jobs/create", body)["job_id"]


def test_list_by_name_pages_with_tokens_and_hides_tasks_unless_expanded(api):
    name = f"paged-{uuid.uuid4().hex[:6]}"
    ids = [_create(api, name) for _ in range(3)]
    seen, token = [], ""
    while True:
        # the provider's list_jobs sends exactly these, as query parameters
        page = api.ok(
            "GET", "2.2/jobs/list", {"limit": 2, "expand_tasks": False, "name": name, "page_token": token}
        )
        seen += page["jobs"]
        token = page.get("next_page_token", "")
        if not token:
            assert page["has_more"] is False
            break
    assert [j["job_id"] for j in seen] == ids
    assert all("tasks" not in j["settings"] for j in seen)
    expanded = api.ok("GET", "2.2/jobs/list", {"name": name, "expand_tasks": True})["jobs"]
    assert [t["task_key"] for t in expanded[0]["settings"]["tasks"]] == ["a", "b"]
    Job.from_dict(expanded[0])


def test_update_merges_tasks_by_key_and_removes_fields(api):
    job_id = _create(api, "merge", tags={"team": "ml"})
    changed = notebook_task("b", "/Shared/y")
    api.ok(
        "POST",
        "2.2/jobs/update",
        {"job_id": job_id, "new_settings": {"tasks": [changed]}, "fields_to_remove": ["tags"]},
    )
    settings = api.ok("GET", "2.2/jobs/get", {"job_id": job_id})["settings"]
    assert {t["task_key"]: t["notebook_task"]["notebook_path"] for t in settings["tasks"]} == {
        "a": "/Shared/x",
        "b": "/Shared/y",
    }
    assert "tags" not in settings


def test_bad_job_settings_name_the_field(api):
    bad_task = {"task_key": "t", "notebook_task": {"notebook_path": "/x"}, "job_cluster_key": "missing"}
    response = api.call("POST", "2.2/jobs/create", {"name": "bad", "tasks": [bad_task]})
    assert response.status_code == 400
    assert "job_cluster_key" in response.json()["message"]
    response = api.call("POST", "2.2/jobs/create", {"name": "bad", "max_concurrent_runs": "many"})
    assert response.status_code == 400
    assert "max_concurrent_runs" in response.json()["message"]
    cycle = [
        notebook_task("a", "/x", depends_on=[{"task_key": "b"}]),
        notebook_task("b", "/x", depends_on=[{"task_key": "a"}]),
    ]
    response = api.call("POST", "2.2/jobs/create", {"name": "cycle", "tasks": cycle})
    assert response.status_code == 400
    assert "cycle" in response.json()["message"]
    response = api.call("POST", "2.2/jobs/reset", {"job_id": 99999999, "new_settings": {"name": "x"}})
    assert response.status_code == 400
    assert response.json()["message"] == "Job 99999999 does not exist."


def test_numeric_strings_are_accepted_like_databricks(api):
    # the provider's normalise_json_content turns every number into a string
    job_id = api.ok(
        "POST",
        "2.2/jobs/create",
        {
            "name": "strings",
            "max_concurrent_runs": "2",
            "timeout_seconds": "60",
            "tasks": [notebook_task("a", "/x", max_retries="1")],
        },
    )["job_id"]
    settings = api.ok("GET", "2.2/jobs/get", {"job_id": str(job_id)})["settings"]
    assert settings["max_concurrent_runs"] == 2
    assert settings["tasks"][0]["max_retries"] == 1


def test_job_permissions_from_create_and_the_sdk(workspace, api):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import JobAccessControlRequest, JobPermissionLevel

    acl = [{"group_name": "data-scientists", "permission_level": "CAN_MANAGE_RUN"}]
    job_id = _create(api, "acl", access_control_list=acl)
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    levels = {
        (a.group_name or a.user_name): a.all_permissions[0].permission_level
        for a in client.jobs.get_permissions(str(job_id)).access_control_list
    }
    assert levels["data-scientists"] == JobPermissionLevel.CAN_MANAGE_RUN
    client.jobs.update_permissions(
        str(job_id),
        access_control_list=[
            JobAccessControlRequest(user_name="ops@example.com", permission_level=JobPermissionLevel.CAN_VIEW)
        ],
    )
    names = {
        a.group_name or a.user_name for a in client.jobs.get_permissions(str(job_id)).access_control_list
    }
    assert {"data-scientists", "ops@example.com"} <= names
    bad = api.call(
        "PATCH",
        f"2.0/permissions/jobs/{job_id}",
        {"access_control_list": [{"user_name": "x", "permission_level": "ROOT"}]},
    )
    assert bad.status_code == 400
    assert "permission_level" in bad.json()["message"]


def test_concurrent_updates_of_one_job_keep_each_other(tmp_path):
    # jobs/update reads the settings, merges, writes them back: two at once must not lose one.
    import threading
    import time

    from devstack.workspace.jobs.backend import JobsBackend
    from devstack.workspace.store import Store

    class Ids:
        def next_id(self, name: str) -> int:
            return 1

        def raise_to(self, name: str, floor: int) -> None:
            pass

    def task(key: str) -> dict:
        return {"task_key": key, "notebook_task": {"notebook_path": "/x"}, "existing_cluster_id": "c"}

    backend = JobsBackend(Store(tmp_path / "jobs.db"), Ids())
    job_id = backend.create({"name": "merged", "tasks": [task("a")]})
    checked = backend._checked

    def slow_check(settings, field):
        time.sleep(0.2)  # the window between reading and writing the settings
        return checked(settings, field)

    backend._checked = slow_check
    threads = [
        threading.Thread(target=backend.update, args=(job_id, {"tasks": [task(key)]}, [])) for key in "bc"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = sorted(t["task_key"] for t in backend.require(job_id)["settings"]["tasks"])
    assert keys == ["a", "b", "c"]
