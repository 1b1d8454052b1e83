"""Bad input gets Databricks' error codes and HTTP statuses, with messages that name the problem."""

from __future__ import annotations

import pytest
import requests

from devstack.services import start_workspace
from tests.devstack.jobs_support import Api, import_notebooks, notebook_task

FOLDER = "/Shared/api-errors"


@pytest.fixture(scope="module")
def api(workspace) -> Api:
    from databricks.sdk import WorkspaceClient

    import_notebooks(WorkspaceClient(host=workspace.url, token=workspace.token), FOLDER)
    return Api(workspace.url, workspace.token)


def test_unknown_endpoint_is_endpoint_not_found(api):
    response = api.call("GET", "2.2/jobs/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_malformed_json_is_malformed_request(api):
    response = api.session.post(
        f"{api.url}/api/2.2/jobs/runs/submit", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "MALFORMED_REQUEST"


def test_errors_of_the_http_layer_keep_databricks_shape(api):
    """Wrong method, a form without boundary, an oversized header, a garbled request line: all JSON."""
    import json
    import socket
    from urllib.parse import urlsplit

    wrong_method = api.call("DELETE", "2.2/jobs/runs/get", {"run_id": 1})
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error_code"] == "BAD_REQUEST"
    no_boundary = api.session.post(
        f"{api.url}/api/2.0/dbfs/put", data=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    assert no_boundary.json()["error_code"] == "MALFORMED_REQUEST"
    too_long = api.call("GET", "2.2/jobs/list", headers={"X-Padding": "x" * 70_000})
    assert too_long.status_code == 431
    assert too_long.headers["Content-Type"] == "application/json"
    assert set(too_long.json()) == {"error_code", "message"}
    url = urlsplit(api.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"NOT-HTTP\r\n\r\n")
        answer = sock.makefile("rb").read()
    # Without a version in the request line the answer is HTTP/0.9 style: the body alone.
    assert json.loads(answer)["error_code"] == "MALFORMED_REQUEST"


def test_missing_field_names_the_field(api):
    response = api.call("GET", "2.2/jobs/runs/get", {})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "run_id" in response.json()["message"]


def test_wrong_typed_field_names_the_field(api):
    response = api.call("POST", "2.2/jobs/runs/submit", {"run_name": "x", "tasks": "not-a-list"})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "tasks" in response.json()["message"]
    response = api.call("GET", "2.2/jobs/runs/get", {"run_id": "abc"})
    assert response.status_code == 400
    assert "run_id" in response.json()["message"]


def test_task_without_cluster_names_the_task(api):
    task = {"task_key": "t", "notebook_task": {"notebook_path": f"{FOLDER}/ok"}}
    response = api.call("POST", "2.2/jobs/runs/submit", {"tasks": [task]})
    assert response.status_code == 400
    assert "tasks[0]" in response.json()["message"]


def test_unknown_job_and_run_are_invalid_parameter_value(api):
    # As the Jobs API answers them (databricks-sdk's error overrides map these to ResourceDoesNotExist
    # for jobs/get and runs/get); a deleted run is 404 RESOURCE_DOES_NOT_EXIST (test_jobs_codes.py).
    for method, path, body in (
        ("GET", "2.2/jobs/get", {"job_id": 99999999}),
        ("POST", "2.2/jobs/run-now", {"job_id": 99999999}),
        ("GET", "2.2/jobs/runs/get", {"run_id": 99999999}),
        ("GET", "2.2/jobs/runs/get-output", {"run_id": 99999999}),
        ("POST", "2.2/jobs/runs/cancel", {"run_id": 99999999}),
    ):
        response = api.call(method, path, body)
        assert response.status_code == 400, path
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE", path
        assert response.json()["message"].endswith("99999999 does not exist."), path


def test_unknown_notebook_path_fails_the_run_naming_the_path(api):
    missing = f"{FOLDER}/does-not-exist"
    run = api.wait(api.submit(run_name="missing", tasks=[notebook_task("t", missing)]))
    assert run["state"]["result_state"] == "FAILED"
    assert missing in run["state"]["state_message"]


def test_notebook_exception_reaches_state_message_and_output(api):
    run = api.wait(api.submit(run_name="failing", tasks=[notebook_task("t", f"{FOLDER}/fail")]))
    assert run["state"]["result_state"] == "FAILED"
    assert "the input table has no rows" in run["state"]["state_message"]
    output = api.ok("GET", "2.2/jobs/runs/get-output", {"run_id": run["tasks"][0]["run_id"]})
    assert "ValueError" in output["error"]
    assert "the input table has no rows" in output["error"]
    assert "Traceback" in output.get("error_trace", "") or "fail" in output.get("error_trace", "")


def test_output_of_a_multi_task_run_points_to_task_runs(api):
    run_id = api.submit(
        run_name="two",
        tasks=[notebook_task("a", f"{FOLDER}/empty"), notebook_task("b", f"{FOLDER}/empty")],
    )
    response = api.call("GET", "2.2/jobs/runs/get-output", {"run_id": run_id})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "task" in response.json()["message"]
    api.wait(run_id)


def test_missing_or_wrong_token_is_refused(workspace):
    url = f"{workspace.url}/api/2.2/jobs/list"
    assert requests.get(url, timeout=10).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 403
    assert wrong.json()["error_code"] == "PERMISSION_DENIED"


def test_fault_rate_answers_429_or_503_with_retry_after(tmp_path):
    service = start_workspace("faulty", tmp_path / "ws", token="t", extra_args=["--fault-rate", "0.9"])
    try:
        api = Api(service.url, "t")
        statuses = []
        for _ in range(20):
            response = api.call("GET", "2.2/jobs/list")
            statuses.append(response.status_code)
            if response.status_code != 200:
                assert response.status_code in (429, 503)
                assert response.headers["Retry-After"] == "1"
        assert {429, 503} & set(statuses)
        # the driver-facing endpoints stay reliable
        assert api.call("GET", "2.0/devstack/stats").status_code == 200
    finally:
        service.stop()


def test_provider_hook_rides_out_injected_faults(tmp_path, monkeypatch):
    import base64
    import json
    import time

    service = start_workspace("flaky", tmp_path / "ws", token="t", extra_args=["--fault-rate", "0.3"])
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_DATABRICKS_FLAKY",
            json.dumps(
                {
                    "conn_type": "databricks",
                    "host": "127.0.0.1",
                    "port": service.port,
                    "schema": "http",
                    "password": "t",
                }
            ),
        )
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        hook = DatabricksHook("databricks_flaky", retry_limit=12, retry_delay=0.05)
        source = base64.b64encode(
            b'# Databricks notebook source\ndbutils.notebook.exit("survived")\n'
        ).decode()
        hook._do_api_call(
            ("POST", "2.0/workspace/import"),
            {"path": "/Shared/survive", "format": "SOURCE", "language": "PYTHON", "content": source},
        )
        run_id = hook.submit_run(
            {
                "run_name": "survive",
                "new_cluster": {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2"},
                "notebook_task": {"notebook_path": "/Shared/survive"},
            }
        )
        deadline = time.monotonic() + 60
        while not hook.get_run_state(run_id).is_terminal and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hook.get_run_state(run_id).is_successful
        task_run_id = hook.get_run_tasks(run_id)[0]["run_id"]
        assert hook.get_run_output(task_run_id)["notebook_output"]["result"] == "survived"
    finally:
        service.stop()
