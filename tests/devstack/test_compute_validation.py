"""Compute checked as Azure Databricks checks it: cluster specs, policies, pools and init scripts."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, OperationFailed
from databricks.sdk.service.compute import (
    AutoScale,
    DataSecurityMode,
    EventType,
    InitScriptInfo,
    State,
    TerminationReasonCode,
    WorkspaceStorageInfo,
)
from databricks.sdk.service.workspace import ImportFormat

from devstack.services import start_workspace

LTS = "15.4.x-scala2.12"
NODE = "Standard_DS3_v2"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = start_workspace("compute", tmp_path_factory.mktemp("ws-compute"), token="t")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(service) -> WorkspaceClient:
    return WorkspaceClient(host=service.url, token="t")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"spark_version": "99.9.x-scala2.12", "node_type_id": NODE},
            "Invalid spark version 99.9.x-scala2.12",
        ),
        ({"spark_version": LTS, "node_type_id": "m5.xlarge"}, "Node type m5.xlarge is not supported"),
        ({"spark_version": LTS, "node_type_id": "local"}, "Node type local is not supported"),
        ({"spark_version": LTS}, "Missing required field: node_type_id"),
        (
            {"spark_version": LTS, "node_type_id": NODE, "driver_node_type_id": "Standard_X99"},
            "Node type Standard_X99 is not supported (driver_node_type_id)",
        ),
        (
            {"spark_version": LTS, "node_type_id": NODE, "autoscale": {"min_workers": 4, "max_workers": 2}},
            "max_workers (2) must be at least 1 and at least min_workers (4)",
        ),
        ({"spark_version": LTS, "node_type_id": NODE, "num_workers": -1}, "num_workers"),
        ({"spark_version": LTS, "node_type_id": NODE, "num_workers": "two"}, "num_workers"),
        (
            {"spark_version": LTS, "node_type_id": NODE, "data_security_mode": "SINGLE_USER"},
            "Missing required field: single_user_name",
        ),
        ({"spark_version": LTS, "node_type_id": NODE, "data_security_mode": "SHARED"}, "data_security_mode"),
        (
            {"spark_version": LTS, "node_type_id": NODE, "autotermination_minutes": 5},
            "autotermination_minutes",
        ),
        (
            {
                "spark_version": LTS,
                "node_type_id": NODE,
                "init_scripts": [{"dbfs": {"destination": "dbfs:/x.sh"}}],
            },
            "init scripts on DBFS are end-of-life",
        ),
        (
            {"spark_version": LTS, "node_type_id": NODE, "instance_pool_id": "nope"},
            "Instance pool nope does not exist",
        ),
        (
            {"spark_version": LTS, "node_type_id": NODE, "policy_id": "NOPE"},
            "Cluster policy NOPE does not exist",
        ),
    ],
)
def test_a_bad_cluster_spec_is_refused_at_create(client, spec, message):
    before = {c.cluster_id for c in client.clusters.list()}
    with pytest.raises(InvalidParameterValue) as caught:
        client.api_client.do("POST", "/api/2.1/clusters/create", body={"cluster_name": "bad", **spec})
    assert message in str(caught.value)
    assert {c.cluster_id for c in client.clusters.list()} == before  # nothing was created


def test_autoscale_and_single_user_clusters_are_accepted(client):
    info = client.clusters.create(
        cluster_name="autoscaled",
        spark_version=LTS,
        node_type_id="Standard_D4ds_v5",
        autoscale=AutoScale(min_workers=1, max_workers=3),
        data_security_mode=DataSecurityMode.SINGLE_USER,
        single_user_name="someone@example.com",
    ).result(timeout=timedelta(minutes=2))
    assert info.state == State.RUNNING
    assert (info.autoscale.min_workers, info.autoscale.max_workers) == (1, 3)
    assert info.single_user_name == "someone@example.com"
    client.clusters.permanent_delete(info.cluster_id)


# --------------------------------------------------------------------------- cluster policies

POLICY = {
    "spark_version": {"type": "fixed", "value": LTS},
    "node_type_id": {"type": "allowlist", "values": [NODE, "Standard_DS4_v2"], "defaultValue": NODE},
    "num_workers": {"type": "range", "minValue": 1, "maxValue": 4, "defaultValue": 1},
    "autotermination_minutes": {"type": "range", "maxValue": 60, "defaultValue": 30},
    "custom_tags.team": {"type": "regex", "pattern": "[a-z]+"},
    "spark_conf.spark.databricks.cluster.profile": {"type": "forbidden"},
    "data_security_mode": {"type": "blocklist", "values": ["NONE"]},
    "cluster_name": {"type": "unlimited", "isOptional": True},
}


def test_policy_crud_and_enforcement(client):
    created = client.cluster_policies.create(
        name="small-ml", definition=json.dumps(POLICY), description="ML teams"
    )
    policy = client.cluster_policies.get(created.policy_id)
    assert (policy.name, json.loads(policy.definition)) == ("small-ml", POLICY)
    assert created.policy_id in [p.policy_id for p in client.cluster_policies.list()]

    # Violations name every rule broken, as Databricks does, and nothing is created.
    with pytest.raises(InvalidParameterValue) as caught:
        client.clusters.create(
            cluster_name="too-big",
            policy_id=created.policy_id,
            spark_version="14.3.x-scala2.12",
            node_type_id="Standard_E16ds_v4",
            num_workers=9,
            autotermination_minutes=20,
            custom_tags={"team": "ML-Ops"},
            spark_conf={"spark.databricks.cluster.profile": "singleNode"},
            data_security_mode=DataSecurityMode.NONE,
        )
    message = str(caught.value)
    assert "Validation failed for spark_version, the value must be 15.4.x-scala2.12" in message
    assert "Validation failed for node_type_id, the value must be one of" in message
    assert "Validation failed for num_workers, the value must be at most 4" in message
    assert "Validation failed for custom_tags.team, the value must match the regex [a-z]+" in message
    assert (
        "Validation failed for spark_conf.spark.databricks.cluster.profile, the value must not be present"
        in message
    )
    assert "Validation failed for data_security_mode, the value must not be one of" in message

    # Without the defaults applied, a required attribute the spec leaves out is a violation too.
    with pytest.raises(
        InvalidParameterValue,
        match="Validation failed for autotermination_minutes, the value must be present",
    ):
        client.clusters.create(
            cluster_name="no-default",
            policy_id=created.policy_id,
            spark_version=LTS,
            node_type_id=NODE,
            num_workers=1,
            custom_tags={"team": "ml"},
        )

    # Fixed and default values fill what the spec leaves out.
    info = client.clusters.create(
        cluster_name="by-policy",
        spark_version=LTS,
        policy_id=created.policy_id,
        apply_policy_default_values=True,
        custom_tags={"team": "ml"},
    ).result(timeout=timedelta(minutes=2))
    assert (info.spark_version, info.node_type_id, info.num_workers, info.autotermination_minutes) == (
        LTS,
        NODE,
        1,
        30,
    )
    assert info.policy_id == created.policy_id
    client.clusters.permanent_delete(info.cluster_id)

    client.cluster_policies.edit(
        created.policy_id,
        name="small-ml",
        definition=json.dumps({"num_workers": {"type": "fixed", "value": 2}}),
    )
    assert json.loads(client.cluster_policies.get(created.policy_id).definition) == {
        "num_workers": {"type": "fixed", "value": 2}
    }
    client.cluster_policies.delete(created.policy_id)
    assert created.policy_id not in [p.policy_id for p in client.cluster_policies.list()]


def test_a_bad_policy_definition_is_refused(client):
    with pytest.raises(InvalidParameterValue, match="needs a type"):
        client.cluster_policies.create(
            name="broken", definition=json.dumps({"num_workers": {"type": "sometimes"}})
        )


def test_a_fixed_rule_on_an_array_element_makes_the_array():
    # The policy reference's array attributes: "init_scripts.0.workspace.destination" fixes the
    # first init script; a cluster spec without init_scripts gets an array of one script.
    from devstack.workspace.clusters import compute

    definition = {"init_scripts.0.workspace.destination": {"type": "fixed", "value": "/Shared/init.sh"}}
    for given in ({}, {"init_scripts": []}):
        spec = {"spark_version": LTS, "node_type_id": NODE, "num_workers": 0, "policy_id": "P", **given}
        checked = compute.check_cluster_spec(spec, policy=lambda _id: {"definition": definition})
        assert checked["init_scripts"] == [{"workspace": {"destination": "/Shared/init.sh"}}]


# --------------------------------------------------------------------------- instance pools


def test_pool_crud_and_a_cluster_from_its_idle_instances(client):
    pool = client.instance_pools.create(
        instance_pool_name="warm", node_type_id="Standard_DS4_v2", min_idle_instances=2, max_capacity=4
    )
    got = client.instance_pools.get(pool.instance_pool_id)
    assert (got.instance_pool_name, got.node_type_id, got.stats.idle_count, got.stats.used_count) == (
        "warm",
        "Standard_DS4_v2",
        2,
        0,
    )

    info = client.clusters.create(
        cluster_name="pooled", spark_version=LTS, instance_pool_id=pool.instance_pool_id, num_workers=1
    ).result(timeout=timedelta(minutes=2))
    assert info.node_type_id == "Standard_DS4_v2"  # the pool's
    stats = client.instance_pools.get(pool.instance_pool_id).stats
    assert (stats.used_count, stats.idle_count) == (2, 2)  # two taken, the pool keeps two idle

    # A cluster that does not fit in the pool's capacity fails to start, naming the pool.
    with pytest.raises(OperationFailed):
        client.clusters.create(
            cluster_name="too-big", spark_version=LTS, instance_pool_id=pool.instance_pool_id, num_workers=4
        ).result(timeout=timedelta(minutes=2))
    failed = [c for c in client.clusters.list() if c.cluster_name == "too-big"][0]
    assert failed.termination_reason.code == TerminationReasonCode.INSTANCE_POOL_MAX_CAPACITY_REACHED

    client.clusters.delete_and_wait(info.cluster_id)
    stats = client.instance_pools.get(pool.instance_pool_id).stats
    assert (stats.used_count, stats.idle_count) == (0, 4)  # its instances went back to the pool

    client.instance_pools.edit(
        pool.instance_pool_id,
        instance_pool_name="warmer",
        node_type_id="Standard_DS4_v2",
        min_idle_instances=1,
    )
    assert client.instance_pools.get(pool.instance_pool_id).instance_pool_name == "warmer"
    for cluster in (info.cluster_id, failed.cluster_id):
        client.clusters.permanent_delete(cluster)
    client.instance_pools.delete(pool.instance_pool_id)
    assert pool.instance_pool_id not in [p.instance_pool_id for p in client.instance_pools.list()]


def test_pool_node_type_must_be_azure(client):
    with pytest.raises(InvalidParameterValue, match="Node type i3.xlarge is not supported"):
        client.instance_pools.create(instance_pool_name="aws", node_type_id="i3.xlarge")


def test_idle_pool_instances_shorten_the_modelled_start(tmp_path):
    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, InstancePools
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=0, data_dir=tmp_path, token="t", store=store)
    ctx.cluster_start_seconds = 10.0
    pools = InstancePools(store)
    manager = ClusterManager(ctx, pools, ClusterPolicies(store), run_token=lambda: "run-token")
    pool_id = pools.create({"instance_pool_name": "p", "node_type_id": NODE, "min_idle_instances": 2})
    spec = {"spark_version": LTS, "instance_pool_id": pool_id, "num_workers": 1}
    leases, warm = manager._take_pool_instances(spec)  # both nodes idle: already up
    assert (warm, manager.start_seconds(warm)) == (1.0, pytest.approx(2.0))
    leases2, warm2 = manager._take_pool_instances({**spec, "num_workers": 3})  # 2 of 4 idle (refilled)
    assert (warm2, manager.start_seconds(warm2)) == (0.5, pytest.approx(6.0))
    assert manager.start_seconds(0.0) == 10.0  # no pool: the full start
    manager._release(leases + leases2)
    assert pools.describe(pool_id)["stats"]["used_count"] == 0
    store.close()


def test_extra_idle_pool_instances_time_out_and_the_next_start_is_slower_again(tmp_path):
    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, InstancePools
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.http import ApiError
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=0, data_dir=tmp_path, token="t", store=store)
    ctx.cluster_start_seconds = 10.0
    pools = InstancePools(store)
    manager = ClusterManager(ctx, pools, ClusterPolicies(store), run_token=lambda: "run-token")
    try:
        pool_id = pools.create(
            {
                "instance_pool_name": "p",
                "node_type_id": NODE,
                "min_idle_instances": 1,
                "idle_instance_autotermination_minutes": 10,
            }
        )
        spec = {"spark_version": LTS, "instance_pool_id": pool_id, "num_workers": 3}
        leases, _ = manager._take_pool_instances(spec)
        manager._release(leases)  # four instances back: five idle, four above min_idle_instances
        assert pools.describe(pool_id)["stats"]["idle_count"] == 5
        assert pools.expire_idle() == 0  # ten minutes have not passed

        pools.minute_seconds = 0.001  # ten "minutes" are now 10 ms
        time.sleep(0.05)
        assert pools.expire_idle() == 4
        assert pools.describe(pool_id)["stats"]["idle_count"] == 1  # min_idle_instances stay
        assert pools.expire_idle() == 0
        leases, warm = manager._take_pool_instances(spec)  # 1 of 4 nodes warm: a slower start
        assert (warm, manager.start_seconds(warm)) == (0.25, pytest.approx(8.0))
        manager._release(leases)

        # idle_instance_autotermination_minutes 0: extra idle instances go at once, and so do the
        # ones a cluster gives back.
        pools.minute_seconds = 60.0
        pools.edit(
            pool_id,
            {"instance_pool_name": "p", "min_idle_instances": 1, "idle_instance_autotermination_minutes": 0},
        )
        assert pools.describe(pool_id)["stats"]["idle_count"] == 1
        leases, _ = manager._take_pool_instances(spec)
        manager._release(leases)
        assert pools.describe(pool_id)["stats"]["idle_count"] == 1
        with pytest.raises(ApiError, match="must be between 0 and 10000"):
            pools.edit(pool_id, {"instance_pool_name": "p", "idle_instance_autotermination_minutes": 10001})
    finally:
        manager.shutdown()
        store.close()


# --------------------------------------------------------------------------- init scripts


def _upload(client: WorkspaceClient, path: str, text: str) -> None:
    client.workspace.mkdirs(path.rsplit("/", 1)[0])
    client.workspace.upload(path, io.BytesIO(text.encode()), format=ImportFormat.AUTO, overwrite=True)


def test_init_scripts_run_before_the_driver_and_a_failing_one_stops_the_start(client, service, tmp_path):
    marker = tmp_path / "init-ran"
    _upload(
        client,
        "/Shared/init/setup.sh",
        f'#!/bin/bash\nset -e\necho "cluster=$DB_CLUSTER_ID driver=$DB_IS_DRIVER" > {marker}\n',
    )
    _upload(client, "/Shared/init/broken.sh", "#!/bin/bash\necho about to fail\nexit 3\n")
    script = InitScriptInfo(workspace=WorkspaceStorageInfo(destination="/Shared/init/setup.sh"))
    info = client.clusters.create(
        cluster_name="with-init", spark_version=LTS, node_type_id=NODE, num_workers=0, init_scripts=[script]
    ).result(timeout=timedelta(minutes=2))
    assert marker.read_text().strip() == f"cluster={info.cluster_id} driver=TRUE"
    kinds = [
        e.type
        for e in client.clusters.events(
            info.cluster_id,
        )
    ]
    assert EventType.INIT_SCRIPTS_STARTED in kinds and EventType.INIT_SCRIPTS_FINISHED in kinds

    broken = InitScriptInfo(workspace=WorkspaceStorageInfo(destination="/Shared/init/broken.sh"))
    with pytest.raises(OperationFailed, match="Cluster scoped init script /Shared/init/broken.sh failed"):
        client.clusters.create(
            cluster_name="broken-init",
            spark_version=LTS,
            node_type_id=NODE,
            num_workers=0,
            init_scripts=[script, broken],
        ).result(timeout=timedelta(minutes=2))
    failed = [c for c in client.clusters.list() if c.cluster_name == "broken-init"][0]
    assert failed.state == State.TERMINATED
    assert failed.termination_reason.code == TerminationReasonCode.INIT_SCRIPT_FAILURE
    assert (
        "Script exit status is non-zero" in failed.termination_reason.parameters["databricks_error_message"]
    )
    for cluster in (info.cluster_id, failed.cluster_id):
        client.clusters.permanent_delete(cluster)


def test_clusters_pools_and_policies_outlive_a_workspace_restart(tmp_path):
    data_dir = tmp_path / "ws"
    first = start_workspace("compute-restart", data_dir, token="r")
    try:
        client = WorkspaceClient(host=first.url, token="r")
        pool = client.instance_pools.create(
            instance_pool_name="kept", node_type_id=NODE, min_idle_instances=1
        )
        policy = client.cluster_policies.create(
            name="kept", definition=json.dumps({"num_workers": {"type": "range", "maxValue": 2}})
        )
        cluster = client.clusters.create_and_wait(
            cluster_name="kept", spark_version=LTS, instance_pool_id=pool.instance_pool_id, num_workers=1
        )
    finally:
        first.stop()
    second = start_workspace("compute-restart", data_dir, token="r")
    try:
        client = WorkspaceClient(host=second.url, token="r")
        again = client.clusters.get(cluster.cluster_id)
        # Its driver died with the workspace: the cluster is there, terminated, and starts again.
        assert (again.cluster_name, again.state, again.node_type_id) == ("kept", State.TERMINATED, NODE)
        assert client.instance_pools.get(pool.instance_pool_id).instance_pool_name == "kept"
        assert client.cluster_policies.get(policy.policy_id).name == "kept"
        client.clusters.start_and_wait(cluster.cluster_id)
        assert client.clusters.get(cluster.cluster_id).state == State.RUNNING
    finally:
        second.stop()


def test_an_idle_cluster_terminates_after_its_autotermination_minutes(tmp_path):
    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, InstancePools
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=9, data_dir=tmp_path, token="t", store=store)
    manager = ClusterManager(ctx, InstancePools(store), ClusterPolicies(store), run_token=lambda: "run-token")
    try:
        spec = {"spark_version": LTS, "node_type_id": NODE, "num_workers": 0}
        idle = manager.create({**spec, "cluster_name": "idle", "autotermination_minutes": 10}, "me")
        kept = manager.create({**spec, "cluster_name": "kept", "autotermination_minutes": 0}, "me")
        for cluster_id in (idle, kept):
            assert manager.get(cluster_id).ready.wait(60)
        assert manager.terminate_idle() == []  # ten minutes have not passed
        manager.minute_seconds = 0.001  # ten "minutes" are now 10 ms
        time.sleep(0.05)
        assert manager.terminate_idle() == [idle]
        cluster = manager.get(idle)
        assert (cluster.state, cluster.termination_reason["code"]) == ("TERMINATED", "INACTIVITY")
        assert manager.get(kept).state == "RUNNING"  # autotermination_minutes 0: never
    finally:
        manager.shutdown()
        store.close()


class _FakeDriver:
    """A job cluster's driver, as far as the cluster manager's bookkeeping sees it."""

    pid = 1

    def __init__(self, cluster_id: str):
        self.cluster_id = cluster_id

    def kill(self) -> None:
        pass


def test_clusters_list_shows_job_clusters_for_30_days_and_filters_by_source(tmp_path):
    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, InstancePools, now_ms
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=9, data_dir=tmp_path, token="t", store=store)
    manager = ClusterManager(ctx, InstancePools(store), ClusterPolicies(store), run_token=lambda: "run-token")
    try:
        spec = {"spark_version": LTS, "node_type_id": NODE, "num_workers": 0}
        drivers = {c: _FakeDriver(c) for c in ("old", "ended", "up")}
        for cluster_id, driver in drivers.items():  # three job clusters, oldest first
            manager._remember_job_cluster(cluster_id, spec, driver)
        manager.kill_driver(drivers["old"])
        manager.kill_driver(drivers["ended"])
        manager.job_clusters["old"].terminated_time = now_ms() - 31 * 24 * 3600 * 1000
        [configured] = manager.clusters

        listed = [(c.cluster_id, c.source, c.state) for c in manager.list_clusters()]
        # All-purpose first, then the job clusters newest first; one ended 31 days ago is gone.
        assert listed == [
            (configured, "UI", "TERMINATED"),
            ("up", "JOB", "RUNNING"),
            ("ended", "JOB", "TERMINATED"),
        ]
        assert [c.cluster_id for c in manager.list_clusters(sources=["UI", "API"])] == [configured]
        assert [c.cluster_id for c in manager.list_clusters(sources=["JOB"], states=["RUNNING"])] == ["up"]
        assert manager.list_clusters(sources=["JOB"], is_pinned=True) == []
    finally:
        manager.shutdown()
        store.close()


def test_deleting_a_pending_cluster_cancels_its_start(tmp_path):
    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, InstancePools
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=9, data_dir=tmp_path, token="t", store=store)
    ctx.cluster_start_seconds = 600.0  # the VMs take ten minutes to come
    manager = ClusterManager(ctx, InstancePools(store), ClusterPolicies(store), run_token=lambda: "run-token")
    try:
        cluster_id = manager.create({"spark_version": LTS, "node_type_id": NODE, "num_workers": 0}, "me")
        assert manager.get(cluster_id).state == "PENDING"
        manager.terminate(cluster_id, "me")  # returns without waiting for the start
        cluster = manager.get(cluster_id)
        assert (cluster.state, cluster.termination_reason["code"]) == ("TERMINATED", "USER_REQUEST")
        assert manager.cluster_starts == 0  # no driver was started
    finally:
        manager.shutdown()
        store.close()


def _fake_launches(manager):
    """Make ``manager`` start fake drivers, keeping launch_driver's bookkeeping (pool leases)."""
    started = []

    def launch(cluster_id, spec, cancelled=None, on_started=None):
        leases, _warm = manager._take_pool_instances(spec or {})
        driver = _FakeDriver(cluster_id)
        driver.alive, driver.running = True, set()
        with manager._lock:
            manager._drivers.add(driver)
            manager._leases[driver] = leases
        started.append(driver)
        return driver

    manager.launch_driver = launch
    return started


def test_a_dead_driver_gives_its_pool_instances_back_before_the_next_start(tmp_path):
    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, InstancePools
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=9, data_dir=tmp_path, token="t", store=store)
    pools = InstancePools(store)
    manager = ClusterManager(ctx, pools, ClusterPolicies(store), run_token=lambda: "run-token")
    started = _fake_launches(manager)
    try:
        pool_id = pools.create({"instance_pool_name": "p", "node_type_id": NODE, "max_capacity": 2})
        cluster_id = manager.create(
            {"spark_version": LTS, "instance_pool_id": pool_id, "num_workers": 0}, "me"
        )
        assert manager.get(cluster_id).ready.wait(10)
        for _ in range(3):  # the driver dies, the next use starts another one
            started[-1].alive = False
            assert manager.ensure_running(cluster_id) is started[-1]
            assert started[-1].alive
            assert pools.describe(pool_id)["stats"]["used_count"] == 1
        assert len(started) == 4
        with manager._lock:
            assert manager._drivers == {started[-1]}

        # A resize keeps the driver: a task or command meanwhile uses it, never starts another one.
        manager.resize(cluster_id, 1, None, "me")
        assert manager.get(cluster_id).state == "RESIZING"
        assert manager.ensure_running(cluster_id) is started[-1]
        assert manager.cluster_driver_if_running(cluster_id) is started[-1]
        assert len(started) == 4
    finally:
        manager.shutdown()
        store.close()


def test_deleting_a_cluster_a_run_is_starting_cancels_that_start_at_once(tmp_path):
    import threading

    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, ClusterStartError, InstancePools
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=9, data_dir=tmp_path, token="t", store=store)
    ctx.cluster_start_seconds = 600.0  # the VMs take ten minutes to come
    manager = ClusterManager(ctx, InstancePools(store), ClusterPolicies(store), run_token=lambda: "run-token")
    [cluster_id] = manager.clusters
    run_cancelled, outcome = threading.Event(), []

    def task_run() -> None:  # a task run on the existing cluster starts it
        try:
            manager.ensure_running(cluster_id, run_cancelled)
        except Exception as exc:
            outcome.append(exc)

    starting = threading.Thread(target=task_run, daemon=True)
    try:
        starting.start()
        deadline = time.monotonic() + 10
        while manager.get(cluster_id).state != "PENDING" and time.monotonic() < deadline:
            time.sleep(0.01)
        deleting = threading.Thread(target=manager.terminate, args=(cluster_id, "me"), daemon=True)
        deleting.start()
        deleting.join(5)
        assert not deleting.is_alive()  # clusters/delete returns, not after the ten minutes of the start
        starting.join(5)
        cluster = manager.get(cluster_id)
        assert (cluster.state, cluster.termination_reason["code"]) == ("TERMINATED", "USER_REQUEST")
        # The run was not cancelled: its task fails because its cluster went away.
        [error] = outcome
        assert isinstance(error, ClusterStartError) and "was terminated during its start" in str(error)
        assert manager.cluster_starts == 0
    finally:
        run_cancelled.set()
        starting.join(5)
        manager.shutdown()
        store.close()


def test_a_permanently_deleted_cluster_leaves_no_libraries_behind(tmp_path):
    from devstack.workspace.clusters import ClusterManager, ClusterPolicies, InstancePools
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.libraries.backend import LibrariesBackend
    from devstack.workspace.store import Store

    def no_files(path: str) -> bytes:
        raise FileNotFoundError(path)

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=9, data_dir=tmp_path, token="t", store=store)
    libraries = LibrariesBackend(tmp_path / "envs", no_files, store)
    manager = ClusterManager(
        ctx, InstancePools(store), ClusterPolicies(store), libraries, run_token=lambda: "run-token"
    )
    _fake_launches(manager)
    try:
        spec = {"spark_version": LTS, "node_type_id": NODE, "num_workers": 0}
        gone, kept = (manager.create({**spec, "cluster_name": n}, "me") for n in ("gone", "kept"))
        for cluster_id in (gone, kept):
            libraries.request_install(cluster_id, [{"jar": "/Volumes/main/default/libs/x.jar"}])
        assert sorted(libraries.clusters_with_libraries()) == sorted([gone, kept])
        manager.permanent_delete(gone, "me")
        assert libraries.clusters_with_libraries() == [kept]
        assert libraries.statuses(gone) == []
        # Nor after a workspace restart.
        again = LibrariesBackend(tmp_path / "envs", no_files, store)
        assert again.clusters_with_libraries() == [kept]
    finally:
        manager.shutdown()
        store.close()


def test_policy_names_and_pool_edits_hold_under_concurrent_calls(tmp_path, monkeypatch):
    from devstack.workspace.clusters import ClusterPolicies, InstancePools, compute
    from devstack.workspace.http import ApiError
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    policies, pools = ClusterPolicies(store), InstancePools(store)
    try:
        # A second create of the same name arrives while the first checks its definition.
        check_definition, calls = compute.check_policy_definition, []

        def meanwhile(definition):
            calls.append(definition)
            if len(calls) == 1:
                policies.create({"name": "team"}, "other")
            return check_definition(definition)

        monkeypatch.setattr(compute, "check_policy_definition", meanwhile)
        with pytest.raises(ApiError, match="Cluster policy with name team already exists"):
            policies.create({"name": "team"}, "me")
        assert [p["name"] for p in policies.list()] == ["team"]
        monkeypatch.setattr(compute, "check_policy_definition", check_definition)

        # A pool deleted while an edit of it checks the new spec: the edit finds no pool, not a 500.
        pool_id = pools.create({"instance_pool_name": "p", "node_type_id": NODE})
        check_pool = pools._check

        def deleted_meanwhile(spec):
            pools.delete(pool_id)
            return check_pool(spec)

        monkeypatch.setattr(pools, "_check", deleted_meanwhile)
        with pytest.raises(ApiError) as raised:
            pools.edit(pool_id, {"instance_pool_name": "q"})
        assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert pools.find(pool_id) is None
        assert InstancePools(store).find(pool_id) is None  # nor back in the store
    finally:
        store.close()
