"""A worker lost mid-run under a real scheduler: the retry re-attaches, no second Databricks run.

On `make up`'s stack (conftest.py's ``native_stack``: scheduler with the LocalExecutor,
api-server, dag-processor, triggerer, the devstack), tests/ui/dags/mlops_recovery.py runs a job
on the dev workspace whose notebook runs until the test lets it end. While the Databricks run is
RUNNING the test SIGKILLs what runs the task, as a lost VM would: the LocalExecutor worker that
supervises it (process title ``airflow worker -- LocalExecutor: <ti id>``) and the task process
it forked (``airflow worker -- <ti id>``). The scheduler finds the task's heartbeat gone (after
30 s in the test stack), fails the try and retries it:

* the run is still going when the retry starts: the retry re-attaches, one run in all;
* the run succeeded while nobody watched it: the retry reads its result, one run in all;
* a person then clears that succeeded task: the job runs again, a second run.

The task waits synchronously, so a worker holds it for the whole run. Deferred (the lifecycle
DAGs' default) the worker is gone once the task defers and the triggerer holds only the run id,
which a triggerer picks up again without any retry; killing the shared stack's triggerer would
end it for the other tests. A FAILED run that is replaced by a new one on retry is tested in
tests/plugins/test_databricks_runs.py.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from tests.ui.conftest import ROOT

pytestmark = pytest.mark.e2e

DAG_ID, TASK_ID = "mlops_recovery_lost_worker", "run_job"
NOTEBOOK = ROOT / "tests" / "plugins" / "run_notebooks" / "slow.py"  # ends when its release file exists
WORKSPACE_DIR = "/Shared/mlops-recovery-tests"
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@dataclass
class Case:
    """One DAG run of the recovery DAG, with a job of its own so its runs can be counted."""

    name: str
    job_id: int
    release: Path
    dag_run_id: str

    def runs(self, client: WorkspaceClient) -> list:
        return sorted(client.jobs.list_runs(job_id=self.job_id), key=lambda r: r.run_id)


@pytest.fixture
def dev(native_stack, monkeypatch) -> WorkspaceClient:
    """The dev workspace as its admin, with the slow notebook imported."""
    stack = native_stack["stack"]
    if stack.get("ca_bundle"):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", stack["ca_bundle"])
    ws = stack["workspaces"]["dev"]
    client = WorkspaceClient(host=ws["url"], token=ws["token"])
    client.workspace.mkdirs(WORKSPACE_DIR)
    client.workspace.import_(
        f"{WORKSPACE_DIR}/slow",
        content=base64.b64encode(NOTEBOOK.read_bytes()).decode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
        overwrite=True,
    )
    return client


def _start(api, client: WorkspaceClient, name: str, tmp_path: Path) -> Case:
    job_name = f"recovery-{name}-{uuid.uuid4().hex[:6]}"
    job = client.api_client.do(
        "POST",
        "/api/2.2/jobs/create",
        body={
            "name": job_name,
            "max_concurrent_runs": 4,
            "tasks": [
                {
                    "task_key": "main",
                    "new_cluster": CLUSTER,
                    "notebook_task": {"notebook_path": f"{WORKSPACE_DIR}/slow"},
                }
            ],
        },
    )
    release = tmp_path / f"release-{name}"
    dag_run_id = f"recovery-{name}-{uuid.uuid4().hex[:6]}"
    api.trigger(DAG_ID, dag_run_id, {"job_name": job_name, "release_file": str(release)})
    return Case(name, job["job_id"], release, dag_run_id)


def _kill_task_processes(ti_id: str) -> list[str]:
    """SIGKILL, by pid, the processes whose title names task instance ``ti_id``; describe them."""
    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        if title.startswith("airflow worker") and ti_id in title:
            victims.append((proc, title.strip()))
    for proc, _ in victims:
        proc.kill()
    psutil.wait_procs([proc for proc, _ in victims], timeout=10)
    return [f"{proc.pid} {title}" for proc, title in victims]


def test_a_lost_worker_is_retried_by_the_scheduler_and_reattaches_to_its_run(native_stack, dev, tmp_path):
    api = native_stack["api"]
    api.wait_for(
        f"the dag-processor to parse {DAG_ID} (tests/ui/dags)",
        lambda: any(d["dag_id"] == DAG_ID for d in api._request("/api/v2/dags?tags=test")["dags"]),
        timeout=120,
    )
    going = _start(api, dev, "still-going", tmp_path)
    finished = _start(api, dev, "succeeded-meanwhile", tmp_path)
    cases = (going, finished)

    # 1. Both Databricks runs are RUNNING, each watched by its task's first try.
    for case in cases:
        api.wait_for(
            f"the Databricks run of {case.name} to be RUNNING",
            lambda case=case: [r.state.life_cycle_state.value for r in case.runs(dev)] == ["RUNNING"],
            timeout=180,
        )
        api.wait_for(
            f"{case.name}'s first try to wait on its run",
            lambda case=case: (
                "Waiting for Databricks run" in api.task_log(DAG_ID, case.dag_run_id, TASK_ID, 1)
            ),
            timeout=60,
        )

    # 2. Both workers are lost: the supervising LocalExecutor worker and the task process, by pid.
    for case in cases:
        ti = api.task(DAG_ID, case.dag_run_id, TASK_ID)
        assert (ti["state"], ti["try_number"]) == ("running", 1), ti
        killed = _kill_task_processes(ti["id"])
        assert len(killed) == 2, f"expected the worker and the task process of {ti['id']}, killed {killed}"
        print(f"{case.name}: killed", *killed, sep="\n  ")

    # 3. One run ends while nobody watches it; the other is still going when its retry starts.
    finished.release.touch()
    api.wait_for(
        "the unwatched Databricks run to succeed",
        lambda: (
            [r.state.result_state and r.state.result_state.value for r in finished.runs(dev)] == ["SUCCESS"]
        ),
        timeout=60,
    )
    api.wait_for(
        "the scheduler's retry of the lost task to re-attach to the run still going",
        lambda: "Re-attaching to Databricks run" in api.task_log(DAG_ID, going.dag_run_id, TASK_ID, 2),
        timeout=150,
    )
    going.release.touch()

    # 4. Each task ends success on its retry, with exactly one Databricks run behind it.
    for case in cases:
        api.wait_for_run_state(DAG_ID, case.dag_run_id, timeout=150)
        runs = case.runs(dev)
        assert [r.state.result_state.value for r in runs] == ["SUCCESS"], (
            f"{case.name}: Databricks runs " + ", ".join(f"{r.run_id} {r.state.result_state}" for r in runs)
        )
        tries = api._request(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{case.dag_run_id}/taskInstances/{TASK_ID}/tries"
        )["task_instances"]
        # The scheduler failed the lost try (its heartbeat stopped) and retried it.
        assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")], tries
        retry_log = api.task_log(DAG_ID, case.dag_run_id, TASK_ID, 2)
        assert f"Re-attaching to Databricks run {runs[0].run_id}" in retry_log, retry_log[-3000:]
    assert "it succeeded after that try was lost" in api.task_log(DAG_ID, finished.dag_run_id, TASK_ID, 2)

    # 5. A person clears the succeeded task to run it again: that is a new Databricks run.
    api.clear_task(DAG_ID, finished.dag_run_id, TASK_ID)
    api.wait_for(
        "the cleared task to succeed again",
        lambda: (
            (t := api.task(DAG_ID, finished.dag_run_id, TASK_ID))["try_number"] == 3
            and t["state"] == "success"
        ),
        timeout=120,
    )
    assert [r.state.result_state.value for r in finished.runs(dev)] == ["SUCCESS", "SUCCESS"]
    assert "starting a new run" in api.task_log(DAG_ID, finished.dag_run_id, TASK_ID, 3)
