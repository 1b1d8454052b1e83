"""Libraries through databricks-sdk: cluster libraries and task libraries installed for real.

tomli-w is a tiny pure-Python package that the project's environment does not have: a notebook
can import it only if the workspace installed it into the cluster's environment.
"""

from __future__ import annotations

import base64
import time
import tomllib

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import OperationFailed
from databricks.sdk.service import jobs
from databricks.sdk.service.compute import Library, LibraryInstallStatus, PythonPyPiLibrary
from databricks.sdk.service.workspace import ImportFormat, Language

from tests.devstack.jobs_support import small_cluster
from tests.devstack.test_libraries_backend import make_wheel

FOLDER = "/Shared/libraries"
CLUSTER = "0000-000000-devstack"  # the workspace's all-purpose cluster
TOMLI_W = Library(pypi=PythonPyPiLibrary(package="tomli-w==1.2.0"))
NOTEBOOK = """# Databricks notebook source
import sys

import tomli_w

dbutils.notebook.exit(tomli_w.dumps({"installed": True, "environment": sys.prefix}))
"""


@pytest.fixture(scope="module")
def client(workspace) -> WorkspaceClient:
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    client.workspace.mkdirs(FOLDER)
    client.workspace.import_(
        f"{FOLDER}/uses_tomli_w",
        content=base64.b64encode(NOTEBOOK.encode()).decode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
        overwrite=True,
    )
    return client


def submit(client: WorkspaceClient, libraries: list[Library], **compute) -> jobs.Run:
    task = jobs.SubmitTask(
        task_key="uses_tomli_w",
        notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/uses_tomli_w"),
        libraries=libraries,
        **(compute or {"new_cluster": small_cluster()}),
    )
    waiter = client.jobs.submit(run_name="libraries", tasks=[task])
    try:
        return client.jobs.wait_get_run_job_terminated_or_skipped(waiter.run_id)
    except OperationFailed:  # the sdk's waiter raises on INTERNAL_ERROR: the run is over
        return client.jobs.get_run(waiter.run_id)


def test_a_task_library_from_pypi_is_importable_in_the_notebook(client, workspace):
    run = submit(client, [TOMLI_W])
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message
    output = tomllib.loads(client.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result)
    environment = workspace.data_dir / "libraries" / run.tasks[0].cluster_instance.cluster_id
    assert output == {"installed": True, "environment": str(environment)}
    # The run's cluster is gone, and its environment with it.
    deadline = time.monotonic() + 15
    while environment.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not environment.exists()


def test_a_wheel_from_workspace_files(client, tmp_path):
    wheel = make_wheel(tmp_path, "devstack_probe", "0.1", "ANSWER = 42\n")
    client.workspace.upload(
        f"{FOLDER}/{wheel.name}", wheel.read_bytes(), format=ImportFormat.AUTO, overwrite=True
    )
    notebook = "# Databricks notebook source\nimport devstack_probe\ndbutils.notebook.exit(str(devstack_probe.ANSWER))\n"
    client.workspace.upload(
        f"{FOLDER}/uses_probe",
        notebook.encode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
        overwrite=True,
    )
    task = jobs.SubmitTask(
        task_key="uses_probe",
        notebook_task=jobs.NotebookTask(notebook_path=f"{FOLDER}/uses_probe"),
        libraries=[Library(whl=f"/Workspace{FOLDER}/{wheel.name}")],
        new_cluster=small_cluster(),
    )
    run = client.jobs.submit(run_name="wheel", tasks=[task]).result()
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message
    assert client.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result == "42"


def test_without_the_library_the_same_notebook_fails(client):
    run = submit(client, [])
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert "No module named 'tomli_w'" in client.jobs.get_run_output(run.tasks[0].run_id).error


def test_a_library_that_cannot_be_installed_fails_the_run_with_the_install_message(client):
    bad = Library(pypi=PythonPyPiLibrary(package="devstack-no-such-package-q7"))
    run = submit(client, [bad])
    task = run.tasks[0]
    # As Databricks ends it: INTERNAL_ERROR with result FAILED.
    assert task.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
    assert task.state.result_state == jobs.RunResultState.FAILED
    assert task.state.state_message.startswith("Library installation failed for library due to user error")
    assert "devstack-no-such-package-q7" in task.state.state_message
    assert "ERROR_NO_MATCHING_DISTRIBUTION" in task.state.state_message
    assert task.status.termination_details.code == jobs.TerminationCodeCode.LIBRARY_INSTALLATION_ERROR
    assert task.status.termination_details.type == jobs.TerminationTypeType.CLIENT_ERROR
    assert run.state.result_state == jobs.RunResultState.FAILED
    # The job run completed with a task failure, a fault of the user's library.
    assert run.status.termination_details.code == jobs.TerminationCodeCode.RUN_EXECUTION_ERROR
    assert run.status.termination_details.type == jobs.TerminationTypeType.CLIENT_ERROR


def wait_for_statuses(client: WorkspaceClient, cluster_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        statuses = list(client.libraries.cluster_status(cluster_id))
        busy = [
            s for s in statuses if s.status in (LibraryInstallStatus.PENDING, LibraryInstallStatus.INSTALLING)
        ]
        if not busy or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def test_cluster_library_through_the_api_serves_runs_on_that_cluster(client):
    client.libraries.install(CLUSTER, [TOMLI_W])
    client.clusters.ensure_cluster_is_running(CLUSTER)
    statuses = wait_for_statuses(client, CLUSTER)
    assert [(s.library.pypi.package, s.status) for s in statuses] == [
        ("tomli-w==1.2.0", LibraryInstallStatus.INSTALLED)
    ]
    assert statuses[0].is_library_for_all_clusters is False
    every = {s.cluster_id: s for s in client.libraries.all_cluster_statuses()}
    assert [s.status for s in every[CLUSTER].library_statuses] == [LibraryInstallStatus.INSTALLED]

    run = submit(client, [], existing_cluster_id=CLUSTER)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message

    client.libraries.uninstall(CLUSTER, [TOMLI_W])
    (status,) = client.libraries.cluster_status(CLUSTER)
    assert status.status == LibraryInstallStatus.UNINSTALL_ON_RESTART


def test_install_on_an_unknown_cluster_is_refused(client):
    from databricks.sdk.errors import DatabricksError

    with pytest.raises(DatabricksError, match="no-such-cluster"):
        client.libraries.install("no-such-cluster", [TOMLI_W])


def test_a_malformed_library_is_refused_at_submit(client):
    from databricks.sdk.errors import InvalidParameterValue

    task = {
        "task_key": "t",
        "notebook_task": {"notebook_path": f"{FOLDER}/uses_tomli_w"},
        "new_cluster": small_cluster().as_dict(),
        "libraries": [{"pypi": {"repo": "https://example.invalid/simple"}}],
    }
    with pytest.raises(InvalidParameterValue, match=r"tasks\[0\]\.libraries: pypi.package is required"):
        client.api_client.do("POST", "/api/2.1/jobs/runs/submit", body={"run_name": "bad", "tasks": [task]})
