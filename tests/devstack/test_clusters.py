"""Clusters API: the all-purpose cluster starts, stops and restarts as the provider and sdk expect."""

from __future__ import annotations

import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import State

from devstack.services import start_workspace
from tests.devstack.jobs_support import Api, pid_alive


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    config = tmp_path_factory.mktemp("cluster-config") / "clusters.json"
    config.write_text('{"clusters": [{"cluster_id": "0101-000000-analysts", "cluster_name": "analysts"}]}')
    service = start_workspace(
        "clusters", tmp_path_factory.mktemp("ws-clusters"), token="c", extra_args=["--config", str(config)]
    )
    yield service
    service.stop()


def test_configured_cluster_is_listed_and_starts_on_request(service):
    client = WorkspaceClient(host=service.url, token="c")
    clusters = list(client.clusters.list())
    assert [(c.cluster_id, c.cluster_name) for c in clusters] == [("0101-000000-analysts", "analysts")]
    assert clusters[0].state == State.TERMINATED

    client.clusters.start("0101-000000-analysts").result()
    assert client.clusters.get("0101-000000-analysts").state == State.RUNNING

    client.clusters.delete("0101-000000-analysts").result()
    assert client.clusters.get("0101-000000-analysts").state == State.TERMINATED


def test_restart_replaces_the_driver_process(service):
    api = Api(service.url, "c")
    cluster = "0101-000000-analysts"
    task = {
        "task_key": "t",
        "existing_cluster_id": cluster,
        "spark_python_task": {"python_file": "/nowhere.py"},
    }
    first = api.wait(api.submit(run_name="before", tasks=[task]))
    old_pid = int(first["tasks"][0]["cluster_instance"]["spark_context_id"])
    assert pid_alive(old_pid)
    api.ok("POST", "2.1/clusters/restart", {"cluster_id": cluster})
    deadline = time.monotonic() + 30
    running = api.ok("GET", "2.1/clusters/get", {"cluster_id": cluster})
    while running["state"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
        running = api.ok("GET", "2.1/clusters/get", {"cluster_id": cluster})
    assert running["state"] == "RUNNING"
    assert not pid_alive(old_pid)


def test_unknown_cluster_and_spark_versions(service):
    api = Api(service.url, "c")
    response = api.call("GET", "2.1/clusters/get", {"cluster_id": "nope"})
    assert response.status_code == 400
    assert "nope" in response.json()["message"]
    versions = api.ok("GET", "2.1/clusters/spark-versions")["versions"]
    assert any(v["key"].startswith("15.4") for v in versions)


def test_libraries_are_recorded_per_cluster(service):
    client = WorkspaceClient(host=service.url, token="c")
    from databricks.sdk.service.compute import Library, LibraryInstallStatus, PythonPyPiLibrary

    lib = Library(pypi=PythonPyPiLibrary(package="scikit-learn==1.5.2"))
    client.libraries.install("0101-000000-analysts", [lib])
    statuses = list(client.libraries.cluster_status("0101-000000-analysts"))
    assert [(s.library.pypi.package, s.status) for s in statuses] == [
        ("scikit-learn==1.5.2", LibraryInstallStatus.INSTALLED)
    ]
    client.libraries.uninstall("0101-000000-analysts", [lib])
    assert list(client.libraries.cluster_status("0101-000000-analysts")) == []
