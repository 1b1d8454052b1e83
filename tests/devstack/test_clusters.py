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
    from databricks.sdk.service.compute import EventType

    def started_and_stopped() -> list[EventType]:
        # What databricks-sdk's own integration test asks of a workspace's default cluster.
        found = client.clusters.events(
            clusters[0].cluster_id, event_types=[EventType.STARTING, EventType.TERMINATING]
        )
        return [e.type for e in found]

    # Before anything started it: the past it had when the workspace first started.
    assert started_and_stopped() == [EventType.TERMINATING, EventType.STARTING]  # newest first

    client.clusters.start("0101-000000-analysts").result()
    assert client.clusters.get("0101-000000-analysts").state == State.RUNNING

    client.clusters.delete("0101-000000-analysts").result()
    assert client.clusters.get("0101-000000-analysts").state == State.TERMINATED
    assert started_and_stopped() == [EventType.TERMINATING, EventType.STARTING] * 2


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


def _small(client: WorkspaceClient, **extra):
    spec = dict(
        cluster_name="sdk-made",
        spark_version=client.clusters.select_spark_version(long_term_support=True),
        node_type_id=client.clusters.select_node_type(local_disk=True),
        num_workers=1,
        autotermination_minutes=10,
    )
    return {**spec, **extra}


def test_sdk_picks_an_azure_runtime_and_node_type(service):
    client = WorkspaceClient(host=service.url, token="c")
    assert client.clusters.select_spark_version(long_term_support=True) == "16.4.x-scala2.12"
    assert client.clusters.select_spark_version(long_term_support=True, ml=True) == "16.4.x-cpu-ml-scala2.12"
    # The smallest Azure VM with a local disk, by cores then memory.
    assert client.clusters.select_node_type(local_disk=True) == "Standard_F4s"
    assert (
        client.clusters.select_node_type(min_memory_gb=60, category="Memory Optimized") == "Standard_E8ds_v4"
    )
    assert client.clusters.select_node_type(min_gpus=1) == "Standard_NC4as_T4_v3"


def test_create_edit_resize_delete_and_events(service):
    from databricks.sdk.errors import ResourceDoesNotExist
    from databricks.sdk.service.compute import EventType, GetEventsOrder, TerminationReasonCode

    client = WorkspaceClient(host=service.url, token="c")
    info = client.clusters.create_and_wait(**_small(client))
    assert info.state == State.RUNNING
    assert (info.cluster_name, info.num_workers, info.node_type_id) == ("sdk-made", 1, "Standard_F4s")
    assert info.cluster_id in [c.cluster_id for c in client.clusters.list()]

    # A running cluster restarts to take an edit.
    client.clusters.edit_and_wait(
        info.cluster_id, spark_version="15.4.x-scala2.12", node_type_id="Standard_DS4_v2", num_workers=2
    )
    edited = client.clusters.get(info.cluster_id)
    assert (edited.state, edited.spark_version, edited.node_type_id) == (
        State.RUNNING,
        "15.4.x-scala2.12",
        "Standard_DS4_v2",
    )

    client.clusters.resize_and_wait(info.cluster_id, num_workers=4)
    assert client.clusters.get(info.cluster_id).num_workers == 4

    client.clusters.delete_and_wait(info.cluster_id)
    terminated = client.clusters.get(info.cluster_id)
    assert terminated.state == State.TERMINATED
    assert terminated.termination_reason.code == TerminationReasonCode.USER_REQUEST

    events = list(client.clusters.events(info.cluster_id, order=GetEventsOrder.ASC))
    kinds = [e.type for e in events]
    assert kinds[0] == EventType.CREATING
    for expected in (EventType.RUNNING, EventType.EDITED, EventType.RESTARTING, EventType.RESIZING):
        assert expected in kinds
    assert kinds[-1] == EventType.TERMINATING
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    edit = next(e for e in events if e.type == EventType.EDITED)
    assert edit.details.previous_attributes.node_type_id == "Standard_F4s"
    assert edit.details.attributes.node_type_id == "Standard_DS4_v2"
    resize = next(e for e in events if e.type == EventType.RESIZING)
    assert (resize.details.current_num_workers, resize.details.target_num_workers) == (2, 4)

    # Pages of two: the SDK follows next_page to the end; newest first by default.
    newest_first = list(client.clusters.events(info.cluster_id, limit=2))
    assert [e.timestamp for e in newest_first] == [e.timestamp for e in reversed(events)]
    only = list(client.clusters.events(info.cluster_id, event_types=[EventType.RESIZING, EventType.EDITED]))
    assert sorted(e.type.value for e in only) == ["EDITED", "RESIZING"]

    client.clusters.permanent_delete(info.cluster_id)
    with pytest.raises(ResourceDoesNotExist, match=f"Cluster {info.cluster_id} does not exist"):
        client.clusters.get(info.cluster_id)


def test_terminated_cluster_starts_again_and_cannot_be_resized(service):
    from databricks.sdk.errors import InvalidState

    client = WorkspaceClient(host=service.url, token="c")
    info = client.clusters.create_and_wait(**_small(client, cluster_name="restartable"))
    client.clusters.delete_and_wait(info.cluster_id)
    with pytest.raises(InvalidState, match="unexpected state"):
        client.clusters.resize(info.cluster_id, num_workers=3)
    client.clusters.start_and_wait(info.cluster_id)
    assert client.clusters.get(info.cluster_id).state == State.RUNNING
    client.clusters.ensure_cluster_is_running(info.cluster_id)
    client.clusters.permanent_delete(info.cluster_id)


def test_unknown_cluster_is_named_as_databricks_names_it(service):
    from databricks.sdk.core import DatabricksError

    client = WorkspaceClient(host=service.url, token="c")
    with pytest.raises(DatabricksError) as caught:
        client.clusters.get("123__non_existing__")
    assert "Cluster 123__non_existing__ does not exist" in str(caught.value)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
