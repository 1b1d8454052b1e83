"""Release approval through Airflow's HITL REST API (what the Required Actions page calls), a real
`airflow dags test` run and a real MLflow server: who may answer, and what the registry records."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlops.approval import ReleaseApprovalOperator
from mlops.operators import PromoteModelVersionOperator, RegisterModelVersionOperator

from devstack.airflow_runner import VENV_BIN
from devstack.processes import free_port, start_process, wait_for_http

DAGS = Path(__file__).parent / "approval_dags"
DAG_ID = "mlops_plugin_approval"
USERS = ("alice", "bob", "carol")


class AirflowApi:
    """A logged-in user's calls to the api-server's public REST API."""

    def __init__(self, url: str, user: str, password: str):
        self.url = url
        body = self._call("POST", "/auth/token", {"username": user, "password": password}, token=None)
        self.token = body["access_token"]

    def _call(self, method: str, path: str, payload: dict | None = None, *, token: str | None) -> dict:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(payload).encode() if payload is not None else None,
            method=method,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {token}"} if token else {}),
            },
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)

    def call(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
        try:
            return 200, self._call(method, path, payload, token=self.token)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def api_server(airflow, tmp_path_factory):
    """`airflow api-server` on the test metadata DB, with users alice, bob and carol."""
    home = tmp_path_factory.mktemp("api-server")
    passwords = {user: secrets.token_hex(8) for user in USERS}
    (home / "passwords.json").write_text(json.dumps(passwords))
    port = free_port()
    env = airflow.env(
        DAGS,
        {
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:admin" for u in USERS),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        },
    )
    proc = start_process(
        "api-server",
        [str(VENV_BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)],
        log_path=home / "api-server.log",
        env=env,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", 180, proc)
        url = f"http://127.0.0.1:{port}"
        yield {user: AirflowApi(url, user, password) for user, password in passwords.items()}
    finally:
        proc.stop()


def _version(registry, name, context, index, trained_by):
    version = RegisterModelVersionOperator(
        task_id="register",
        model_uri=registry.models[index].model_uri,
        model_name=name,
        tags={"mlops_triggered_by": trained_by},
    ).execute(context("register"))
    return version


def _start_release(airflow, registry, name, version):
    """`airflow dags test` in the background: it waits while the approval task awaits input."""
    import subprocess

    cmd = [str(VENV_BIN / "airflow"), "dags", "test", DAG_ID, "--dagfile-path", str(DAGS / f"{DAG_ID}.py")]
    cmd += ["--conf", json.dumps({"model_name": name, "version": version})]
    env = airflow.env(DAGS, {"AIRFLOW_CONN_MLFLOW_DEFAULT": registry.conn_json()})
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _awaiting_approval(api: AirflowApi, proc, name: str, version: str, timeout: float = 240) -> str:
    """The run id of this release's DAG run once its approval task waits for an answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        _, runs = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=5")
        for run in runs.get("dag_runs", []):
            if run["conf"] == {"model_name": name, "version": version}:
                status, detail = api.call(
                    "GET",
                    f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/approve_release/-1/hitlDetails",
                )
                if status == 200 and detail.get("task_instance", {}).get("state") == "awaiting_input":
                    return run["dag_run_id"]
        time.sleep(2)
    proc.kill()
    pytest.fail(f"The approval never waited for input:\n{proc.stdout.read()[-4000:]}")


def _answer(api: AirflowApi, run_id: str, option: str) -> tuple[int, dict]:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_release/-1/hitlDetails"
    return api.call("PATCH", path, {"chosen_options": [option], "params_input": {}})


def _finish(proc) -> str:
    output, _ = proc.communicate(timeout=240)
    return output


def test_approval_refuses_the_trainer_records_the_approver_and_a_rejection_keeps_the_champion(
    airflow, api_server, sqlite_registry, model_name, context
):
    registry, client = sqlite_registry, sqlite_registry.client()
    v1 = _version(registry, model_name, context, 0, "carol")
    PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v1).execute(context("p"))

    # alice triggered v2's training: with separation of duties the API refuses her answer.
    v2 = _version(registry, model_name, context, 1, "alice")
    proc = _start_release(airflow, registry, model_name, v2)
    run_id = _awaiting_approval(api_server["bob"], proc, model_name, v2)
    status, body = _answer(api_server["alice"], run_id, "Approve")
    assert status == 403 and "not a respondent" in body["detail"], body
    status, _ = _answer(api_server["carol"], run_id, "Approve")  # not an approver at all
    assert status == 403
    assert _answer(api_server["bob"], run_id, "Approve")[0] == 200
    output = _finish(proc)
    assert "DagRun Finished" in output and "state=success" in output, output[-4000:]
    assert client.get_model_version_by_alias(model_name, "champion").version == v2
    tags = client.get_model_version(model_name, v2).tags
    assert tags["approve_release"] == "approved"  # what a Databricks deployment job reads
    assert tags["mlops_approval_by"] == "bob" and tags["mlops_approval_run_id"] == run_id
    assert tags["mlops_approval_at"].startswith("20")

    # bob rejects v3: the run ends, promote is skipped, the champion stays v2.
    v3 = _version(registry, model_name, context, 2, "carol")
    proc = _start_release(airflow, registry, model_name, v3)
    run_id = _awaiting_approval(api_server["bob"], proc, model_name, v3)
    assert _answer(api_server["bob"], run_id, "Reject")[0] == 200
    output = _finish(proc)
    assert "state=success" in output and "Release REJECTED by bob" in output, output[-4000:]
    _, promote = api_server["bob"].call(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/promote"
    )
    assert promote["state"] == "skipped"
    assert client.get_model_version_by_alias(model_name, "champion").version == v2
    tags = client.get_model_version(model_name, v3).tags
    assert (tags["approve_release"], tags["mlops_approval_by"]) == ("rejected", "bob")


def test_no_release_waits_when_every_approver_trained_the_candidate(sqlite_registry, model_name, context):
    version = _version(sqlite_registry, model_name, context, 0, "alice")
    op = ReleaseApprovalOperator(
        task_id="approve_release",
        subject="Release?",
        model_name=model_name,
        version=version,
        approvers=["alice"],
        separation_of_duties=True,
    )
    with pytest.raises(Exception, match=r"No one may approve version 1 .*approvers \['alice'\] triggered"):
        op.execute(context("approve_release"))
    assert op.respondents("alice") == [] and op.respondents("carol") == ["alice"]
    assert ReleaseApprovalOperator(
        task_id="a", subject="s", model_name=model_name, version=version, approvers=["alice"]
    ).respondents("alice") == ["alice"]  # without separation of duties the trainer may approve


def test_without_an_approver_list_the_trainers_own_approval_fails_and_records_nothing(
    sqlite_registry, model_name, context
):
    from datetime import UTC, datetime

    from airflow.sdk.exceptions import AirflowFailException

    version = _version(sqlite_registry, model_name, context, 0, "alice")
    op = ReleaseApprovalOperator(
        task_id="approve_release",
        subject="s",
        model_name=model_name,
        version=version,
        separation_of_duties=True,
    )
    event = {
        "chosen_options": ["Approve"],
        "params_input": {},
        "responded_at": datetime.now(UTC),
        "responded_by_user": {"id": "alice", "name": "alice"},
    }
    with pytest.raises(AirflowFailException, match="alice triggered the training of version 1"):
        op.execute_complete(context("approve_release"), event)
    assert "approve_release" not in sqlite_registry.client().get_model_version(model_name, version).tags
