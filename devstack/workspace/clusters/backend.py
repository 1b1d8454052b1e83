"""Clusters, instance pools and cluster policies: state and rules, no HTTP.

A "cluster" here is one driver process of the runtime (a Python process with a lazy local
Spark). All-purpose clusters come from the workspace config or from clusters/create and live
as long as they are RUNNING; job clusters and ``new_cluster`` clusters are started by the run
manager through :meth:`ClusterManager.launch_driver` and killed when their run ends.

The emulator's model of start time: a start waits ``--cluster-start-seconds`` (the VMs being
acquired), then runs the cluster's init scripts, then starts the driver. Nodes taken from an
instance pool's idle instances are already up: a cluster whose nodes all come from idle
instances waits :data:`POOL_START_FACTOR` of that time (a fraction for a partial hit).
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.workspace.clusters import compute
from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import ApiError, invalid
from devstack.workspace.iam.backend import ADMIN_USER
from devstack.workspace.store import Store, dumps, loads

log = logging.getLogger("devstack.workspace.clusters")

DEFAULT_CLUSTER = {
    "cluster_id": "0000-000000-devstack",
    "cluster_name": "devstack-shared",
}
SPARK_VERSION = compute.DEFAULT_SPARK_VERSION
SPARK_VERSIONS = compute.SPARK_VERSIONS

# Lifetime of the short-lived tokens notebooks get (one per cluster, and one per task run).
RUN_TOKEN_TTL_SECONDS = 8 * 3600
# Share of --cluster-start-seconds a start waits when every node comes from a pool's idle instances.
POOL_START_FACTOR = 0.2
# How long one init script may run before the start fails (Databricks allows minutes, not hours).
INIT_SCRIPT_TIMEOUT_SECONDS = 600
# Events kept per cluster (clusters/events), oldest dropped first.
MAX_EVENTS = 1000
# How often idle all-purpose clusters are looked for (autotermination_minutes).
IDLE_CHECK_SECONDS = 30.0
# clusters/list shows a job cluster until 30 days after it terminated ("all clusters terminated
# within the last 30 days", ClustersAPI.list in databricks-sdk / the Clusters API reference).
LIST_TERMINATED_DAYS = 30
# An instance pool's extra idle instances terminate after idle_instance_autotermination_minutes:
# 60 when not set (what instance-pools/get reports then), at most 10000 (Instance Pools API).
DEFAULT_POOL_IDLE_MINUTES = 60
MAX_POOL_IDLE_MINUTES = 10000

SCHEMA = """
CREATE TABLE IF NOT EXISTS compute_objects (
    kind TEXT NOT NULL,          -- cluster | instance_pool | cluster_policy
    id TEXT NOT NULL,
    body TEXT NOT NULL,          -- JSON: the object's spec as the API last accepted it
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
"""


def driver_url(ctx: WorkspaceContext) -> str:
    """Where drivers reach their workspace: they run beside it, so its own address, not the
    --public-url browsers use (a container's published port does not exist inside it)."""
    host = "127.0.0.1" if ctx.host in ("", "0.0.0.0", "::") else ctx.host
    return f"http://{host}:{ctx.port}"


def databricks_runtime_env(ctx: WorkspaceContext, token: str) -> dict[str, str]:
    """MLflow and credentials as a Databricks runtime sets them up for notebooks.

    MLflow talks to this workspace (tracking URI ``databricks``, registry ``databricks-uc``),
    never past it to the devstack's MLflow server; databricks-sdk and MLflow find the workspace
    and a token in ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN``. Each task run then gets its own
    token in its environment overlay, as Databricks gives each run one.
    """
    return {
        "MLFLOW_TRACKING_URI": "databricks",
        "MLFLOW_REGISTRY_URI": "databricks-uc",
        "DATABRICKS_HOST": driver_url(ctx),
        "DATABRICKS_TOKEN": token,
    }


class ClusterStartCancelled(Exception):
    """A cluster start was abandoned because its run was cancelled meanwhile."""


class ClusterStartError(RuntimeError):
    """A cluster start failed for a reason Databricks names (``termination_reason``)."""

    def __init__(self, message: str, reason: dict[str, Any]):
        super().__init__(message)
        self.reason = reason


class EitherEvent:
    """Set as soon as one of its events is: what a start waits on when two things can cancel it
    (its run, and clusters/delete of its cluster). Offers the ``wait``/``is_set`` of an Event."""

    def __init__(self, *events: threading.Event, poll_seconds: float = 0.05):
        self.events = events
        self.poll_seconds = poll_seconds

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            step = (
                self.poll_seconds if deadline is None else min(self.poll_seconds, deadline - time.monotonic())
            )
            if step <= 0:
                return False
            self.events[0].wait(step)
        return True


def _deleted_during_start(cluster_id: str) -> ClusterStartError:
    """What a run waiting for an all-purpose cluster's start sees when the cluster is deleted meanwhile."""
    return ClusterStartError(
        f"Cluster {cluster_id} was terminated during its start (clusters/delete).",
        {"code": "USER_REQUEST", "type": "SUCCESS", "parameters": {}},
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def new_cluster_id() -> str:
    """An id shaped like Databricks' (``MMDD-HHMMSS-xxxxxxxx``)."""
    return time.strftime("%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(4)


def invalid_state(cluster_id: str, state: str) -> ApiError:
    return ApiError(400, "INVALID_STATE", f"Cluster {cluster_id} is in unexpected state {state.title()}.")


def workers_of(spec: dict[str, Any]) -> int:
    autoscale = spec.get("autoscale")
    if isinstance(autoscale, dict):
        return int(autoscale.get("min_workers") or 0)
    return int(spec.get("num_workers") or 0)


# ---------------------------------------------------------------------- persistence


class _Objects:
    """The compute objects of one kind in the store (specs as JSON), so a restart keeps them."""

    def __init__(self, store: Store | None, kind: str):
        self.store = store
        self.kind = kind
        if store is not None:
            store.ensure_schema(SCHEMA)

    def load(self) -> list[tuple[str, dict[str, Any], int]]:
        if self.store is None:
            return []
        rows = self.store.all(
            "SELECT id, body, created_at FROM compute_objects WHERE kind = ? ORDER BY created_at, id",
            (self.kind,),
        )
        return [(r["id"], loads(r["body"]), r["created_at"]) for r in rows]

    def save(self, object_id: str, body: dict[str, Any], created_at: int) -> None:
        if self.store is not None:
            self.store.execute(
                "INSERT INTO compute_objects (kind, id, body, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                (self.kind, object_id, dumps(body), created_at),
            )

    def delete(self, object_id: str) -> None:
        if self.store is not None:
            self.store.execute(
                "DELETE FROM compute_objects WHERE kind = ? AND id = ?", (self.kind, object_id)
            )


# ---------------------------------------------------------------------- instance pools


class InstancePools:
    """Instance pools: a node type, idle instances kept warm, a capacity.

    The model: a pool holds ``min_idle_instances`` idle instances from its creation on; a cluster
    start takes idle instances first (they are already up, the most recently idle ones first) and
    the rest are acquired as new VMs; a cluster's instances go back to the pool's idle set when it
    terminates, and the pool tops its idle set up to ``min_idle_instances`` again at once. The
    idle instances above ``min_idle_instances`` terminate once idle for
    ``idle_instance_autotermination_minutes`` (default 60; 0: at once), "the extra instances in the
    pool cache ... if min_idle_instances requirement is already met" (Instance Pools API
    reference): :meth:`expire_idle`, called by the cluster manager's autotermination loop.
    """

    def __init__(self, store: Store | None):
        self._objects = _Objects(store, "instance_pool")
        self._lock = threading.Lock()
        self.pools: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, dict[str, int]] = {}
        # When each idle instance of a pool became idle (time.monotonic(), oldest first).
        self._idle_since: dict[str, list[float]] = {}
        self.minute_seconds = 60.0  # the length of an idle-timeout minute (tests shorten it)
        for pool_id, body, _created in self._objects.load():
            self.pools[pool_id] = body
            self.stats[pool_id] = {"idle_count": 0, "used_count": 0}
            self._set_idle(pool_id, int(body.get("min_idle_instances") or 0))

    def _set_idle(self, pool_id: str, count: int) -> None:
        """The pool now has ``count`` idle instances (the caller holds the lock): new ones are idle
        from now on, and the most recently idle ones are the first taken."""
        since = self._idle_since.setdefault(pool_id, [])
        if count > len(since):
            since.extend([time.monotonic()] * (count - len(since)))
        else:
            del since[count:]
        self.stats[pool_id]["idle_count"] = count

    def _expire(self, pool_id: str, now: float) -> int:
        """Terminate the pool's extra idle instances idle for its timeout (the caller holds the lock)."""
        body, since = self.pools.get(pool_id), self._idle_since.get(pool_id)
        if body is None or not since:
            return 0
        minutes = body.get("idle_instance_autotermination_minutes")
        timeout = (DEFAULT_POOL_IDLE_MINUTES if minutes is None else minutes) * self.minute_seconds
        keep = int(body.get("min_idle_instances") or 0)
        expired = 0
        while len(since) > keep and now - since[0] >= timeout:
            since.pop(0)
            expired += 1
        self.stats[pool_id]["idle_count"] = len(since)
        return expired

    def expire_idle(self) -> int:
        """Terminate every pool's extra idle instances that timed out; returns how many went."""
        now = time.monotonic()
        with self._lock:
            return sum(self._expire(pool_id, now) for pool_id in list(self.pools))

    def _check(self, spec: dict[str, Any]) -> dict[str, Any]:
        name = spec.get("instance_pool_name")
        if not isinstance(name, str) or not name:
            raise invalid("Missing required field: instance_pool_name")
        node = spec.get("node_type_id")
        if not node:
            raise invalid("Missing required field: node_type_id")
        if node not in compute.NODE_TYPE_IDS:
            raise invalid(
                f"Node type {node} is not supported (node_type_id). Supported node types: "
                f"{', '.join(sorted(compute.NODE_TYPE_IDS))}."
            )
        for field in ("min_idle_instances", "max_capacity", "idle_instance_autotermination_minutes"):
            value = spec.get(field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise invalid(f"Invalid value for field {field}: {value!r}; expected an integer >= 0")
        minutes = spec.get("idle_instance_autotermination_minutes")
        if minutes is not None and minutes > MAX_POOL_IDLE_MINUTES:
            raise invalid(
                f"Invalid value for field idle_instance_autotermination_minutes: {minutes}; "
                f"must be between 0 and {MAX_POOL_IDLE_MINUTES}"
            )
        low, high = spec.get("min_idle_instances") or 0, spec.get("max_capacity")
        if high is not None and low > high:
            raise invalid(
                f"Invalid value for field min_idle_instances: {low} is more than max_capacity ({high})"
            )
        for version in spec.get("preloaded_spark_versions") or []:
            if version not in compute.SPARK_VERSION_KEYS:
                raise invalid(f"Invalid spark version {version} (preloaded_spark_versions).")
        keep = (
            "instance_pool_name",
            "node_type_id",
            "min_idle_instances",
            "max_capacity",
            "idle_instance_autotermination_minutes",
            "custom_tags",
            "azure_attributes",
            "enable_elastic_disk",
            "preloaded_spark_versions",
            "disk_spec",
        )
        return {k: copy.deepcopy(spec[k]) for k in keep if spec.get(k) is not None}

    def create(self, spec: dict[str, Any]) -> str:
        body = self._check(spec)
        pool_id = time.strftime("%m%d-%H%M%S-", time.gmtime()) + "pool-" + secrets.token_hex(6)
        with self._lock:
            self.pools[pool_id] = body
            self.stats[pool_id] = {"idle_count": 0, "used_count": 0}
            self._set_idle(pool_id, int(body.get("min_idle_instances") or 0))
        self._objects.save(pool_id, body, now_ms())
        return pool_id

    def get(self, pool_id: str) -> dict[str, Any]:
        with self._lock:
            body = self.pools.get(pool_id)
        if body is None:
            raise ApiError(400, "RESOURCE_DOES_NOT_EXIST", f"Can't find an instance pool with id: {pool_id}.")
        return body

    def find(self, pool_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.pools.get(pool_id)

    def edit(self, pool_id: str, spec: dict[str, Any]) -> None:
        current = self.get(pool_id)
        if spec.get("node_type_id") and spec["node_type_id"] != current["node_type_id"]:
            raise invalid(
                f"Invalid value for field node_type_id: the node type of pool {pool_id} cannot change"
            )
        body = self._check({**spec, "node_type_id": current["node_type_id"]})
        for kept in ("azure_attributes", "preloaded_spark_versions", "enable_elastic_disk", "disk_spec"):
            if kept in current and kept not in body:
                body[kept] = current[kept]
        with self._lock:
            stats = self.stats.get(pool_id)
            if pool_id not in self.pools or stats is None:  # deleted meanwhile
                raise ApiError(
                    400, "RESOURCE_DOES_NOT_EXIST", f"Can't find an instance pool with id: {pool_id}."
                )
            self.pools[pool_id] = body
            self._set_idle(pool_id, max(stats["idle_count"], int(body.get("min_idle_instances") or 0)))
            self._expire(pool_id, time.monotonic())  # a shorter timeout applies to the idle ones now
            self._objects.save(pool_id, body, now_ms())

    def delete(self, pool_id: str) -> None:
        self.get(pool_id)
        with self._lock:
            self.pools.pop(pool_id, None)
            self.stats.pop(pool_id, None)
            self._idle_since.pop(pool_id, None)
        self._objects.delete(pool_id)

    def describe(self, pool_id: str) -> dict[str, Any]:
        body = self.get(pool_id)
        with self._lock:
            stats = dict(self.stats.get(pool_id) or {})
        return {
            "instance_pool_id": pool_id,
            **copy.deepcopy(body),
            "min_idle_instances": body.get("min_idle_instances", 0),
            "idle_instance_autotermination_minutes": body.get(
                "idle_instance_autotermination_minutes", DEFAULT_POOL_IDLE_MINUTES
            ),
            "state": "ACTIVE",
            "default_tags": {
                "Vendor": "Databricks",
                "DatabricksInstancePoolCreatorId": "devstack",
                "DatabricksInstancePoolId": pool_id,
            },
            "stats": {
                "used_count": stats.get("used_count", 0),
                "idle_count": stats.get("idle_count", 0),
                "pending_used_count": 0,
                "pending_idle_count": 0,
            },
        }

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = list(self.pools)
        return [self.describe(pool_id) for pool_id in ids]

    def acquire(self, pool_id: str, count: int) -> int:
        """Take ``count`` instances for a cluster; returns how many were idle (already up).

        :raises ClusterStartError: INSTANCE_POOL_MAX_CAPACITY_REACHED when the pool is full.
        """
        with self._lock:
            body, stats = self.pools.get(pool_id), self.stats.get(pool_id)
            if body is None or stats is None:
                raise ClusterStartError(
                    f"Instance pool {pool_id} does not exist.",
                    {
                        "code": "INSTANCE_POOL_NOT_FOUND",
                        "type": "CLIENT_ERROR",
                        "parameters": {"instance_pool_id": pool_id},
                    },
                )
            capacity = body.get("max_capacity")
            if capacity is not None and stats["used_count"] + count > capacity:
                raise ClusterStartError(
                    f"Instance pool {pool_id} reached its max capacity ({capacity} instances, "
                    f"{stats['used_count']} in use); the cluster needs {count}.",
                    {
                        "code": "INSTANCE_POOL_MAX_CAPACITY_REACHED",
                        "type": "CLIENT_ERROR",
                        "parameters": {"instance_pool_id": pool_id},
                    },
                )
            idle = min(stats["idle_count"], count)
            self._set_idle(pool_id, stats["idle_count"] - idle)
            stats["used_count"] += count
            # The pool tops its idle instances up again (new VMs, within capacity).
            room = capacity - stats["used_count"] if capacity is not None else None
            target = int(body.get("min_idle_instances") or 0)
            if room is not None:
                target = min(target, max(room, 0))
            self._set_idle(pool_id, max(stats["idle_count"], target))
            return idle

    def release(self, pool_id: str, count: int) -> None:
        """A cluster's instances go back to the pool as idle instances."""
        with self._lock:
            body, stats = self.pools.get(pool_id), self.stats.get(pool_id)
            if body is None or stats is None:
                return
            stats["used_count"] = max(stats["used_count"] - count, 0)
            capacity = body.get("max_capacity")
            idle = stats["idle_count"] + count
            if capacity is not None:
                idle = min(idle, capacity - stats["used_count"])
            self._set_idle(pool_id, max(idle, 0))
            self._expire(pool_id, time.monotonic())  # idle_instance_autotermination_minutes 0: at once


# ---------------------------------------------------------------------- cluster policies


class ClusterPolicies:
    """Cluster policies: a name and a definition (attribute path -> rule)."""

    def __init__(self, store: Store | None):
        self._objects = _Objects(store, "cluster_policy")
        self._lock = threading.Lock()
        self.policies: dict[str, dict[str, Any]] = {}
        for policy_id, body, _created in self._objects.load():
            self.policies[policy_id] = body

    def _check(self, spec: dict[str, Any]) -> dict[str, Any]:
        import json

        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("Missing required field: name")
        definition = compute.check_policy_definition(spec.get("definition") or "{}")
        body = {
            "name": name,
            "definition": json.dumps(definition),
            "description": spec.get("description") or "",
            "max_clusters_per_user": spec.get("max_clusters_per_user"),
        }
        return {k: v for k, v in body.items() if v is not None}

    def _claim_name(self, name: str, policy_id: str | None) -> None:
        """Refuse a name another policy has (the caller holds the lock until it stores its own)."""
        if any(p["name"] == name and pid != policy_id for pid, p in self.policies.items()):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Cluster policy with name {name} already exists.")

    def create(self, spec: dict[str, Any], creator: str) -> str:
        policy_id = secrets.token_hex(8).upper()
        body = {**self._check(spec), "creator_user_name": creator, "created_at_timestamp": now_ms()}
        with self._lock:  # two creates with one name: the second is refused
            self._claim_name(body["name"], None)
            self.policies[policy_id] = body
            self._objects.save(policy_id, body, body["created_at_timestamp"])
        return policy_id

    def get(self, policy_id: str) -> dict[str, Any]:
        with self._lock:
            body = self.policies.get(policy_id)
        if body is None:
            raise ApiError(
                400, "RESOURCE_DOES_NOT_EXIST", f"Can't find a cluster policy with id: {policy_id}."
            )
        return {"policy_id": policy_id, **copy.deepcopy(body), "is_default": False}

    def find(self, policy_id: str) -> dict[str, Any] | None:
        """The policy with its definition parsed, for :func:`compute.check_cluster_spec`."""
        import json

        with self._lock:
            body = self.policies.get(policy_id)
        return None if body is None else {**body, "definition": json.loads(body["definition"])}

    def edit(self, policy_id: str, spec: dict[str, Any]) -> None:
        current = self.get(policy_id)
        body = {
            **self._check(spec),
            "creator_user_name": current.get("creator_user_name"),
            "created_at_timestamp": current.get("created_at_timestamp"),
        }
        with self._lock:
            if policy_id not in self.policies:  # deleted meanwhile
                raise ApiError(
                    400, "RESOURCE_DOES_NOT_EXIST", f"Can't find a cluster policy with id: {policy_id}."
                )
            self._claim_name(body["name"], policy_id)
            self.policies[policy_id] = body
            self._objects.save(policy_id, body, body["created_at_timestamp"] or now_ms())

    def delete(self, policy_id: str) -> None:
        self.get(policy_id)
        with self._lock:
            self.policies.pop(policy_id, None)
        self._objects.delete(policy_id)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = list(self.policies)
        return [self.get(policy_id) for policy_id in ids]


# ---------------------------------------------------------------------- clusters


class AllPurposeCluster:
    """One cluster (all-purpose, or a job cluster kept for clusters/get) and its running driver."""

    def __init__(self, spec: dict[str, Any], source: str = "UI"):
        self.spec = spec
        self.cluster_id: str = spec["cluster_id"]
        self.state = "TERMINATED"
        self.state_message = "Cluster is terminated; it starts on first use or with clusters/start."
        self.driver: Any = None
        self.start_time: int | None = None
        self.terminated_time: int | None = None
        self.termination_reason: dict[str, Any] | None = None
        self.lock = threading.Lock()  # serializes start/stop of this cluster
        self.source = source
        self.creator = ADMIN_USER  # a configured cluster was put there by the workspace's admin
        self.pinned = False
        self.ready = threading.Event()
        self.generation = 0  # bumped by every terminate: a start begun before it gives up
        self.last_activity = time.monotonic()  # a start, a task launched on it, a command
        self.start_cancelled = threading.Event()  # set by a terminate during a start

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        node = spec.get("node_type_id") or compute.DEFAULT_NODE_TYPE
        out: dict[str, Any] = {
            **{k: copy.deepcopy(v) for k, v in spec.items() if k not in ("apply_policy_default_values",)},
            "cluster_id": self.cluster_id,
            "cluster_name": spec.get("cluster_name", self.cluster_id),
            "spark_version": spec.get("spark_version", SPARK_VERSION),
            "node_type_id": node,
            "driver_node_type_id": spec.get("driver_node_type_id", node),
            "autotermination_minutes": spec.get("autotermination_minutes", 0),
            "spark_conf": spec.get("spark_conf", {}),
            "spark_env_vars": spec.get("spark_env_vars", {}),
            "custom_tags": spec.get("custom_tags", {}),
            "default_tags": {
                "Vendor": "Databricks",
                "Creator": self.creator,
                "ClusterName": spec.get("cluster_name", ""),
                "ClusterId": self.cluster_id,
            },
            "cluster_source": self.source,
            "creator_user_name": self.creator,
            "data_security_mode": spec.get("data_security_mode", "SINGLE_USER"),
            "state": self.state,
            "state_message": self.state_message,
        }
        if "autoscale" not in spec:
            out["num_workers"] = spec.get("num_workers", 0)
        if self.start_time:
            out["start_time"] = self.start_time
        if self.terminated_time and self.state == "TERMINATED":
            out["terminated_time"] = self.terminated_time
        if self.termination_reason and self.state in ("TERMINATED", "TERMINATING"):
            out["termination_reason"] = self.termination_reason
        if self.driver is not None and self.state in ("RUNNING", "RESIZING"):
            out["driver"] = {"host_private_ip": "127.0.0.1", "node_id": f"driver-{self.driver.pid}"}
            out["spark_context_id"] = self.driver.pid
        return out


class ClusterManager:
    """Starts drivers (counting cluster starts) and owns the all-purpose clusters.

    :param ctx: the workspace's settings (data dir, address, --cluster-start-seconds, storage).
    :param pools: the instance pools (None: a workspace without pools).
    :param policies: the cluster policies (None: a workspace without policies).
    :param libraries: the clusters' Python environments and libraries
        (:class:`~devstack.workspace.libraries.backend.LibrariesBackend`); None: drivers run on
        the workspace's own interpreter.
    :param run_token: issues a short-lived token for a driver or an init script (the workspace's
        identities issue them; never the workspace's PAT).
    """

    def __init__(
        self,
        ctx: WorkspaceContext,
        pools: InstancePools | None = None,
        policies: ClusterPolicies | None = None,
        libraries: Any = None,
        *,
        run_token: Callable[[], str],
    ):
        self.ctx = ctx
        self.pools = pools
        self.policies = policies
        self.libraries = libraries
        # Short-lived tokens for drivers and init scripts (the workspace's identities issue them).
        self.issue_run_token: Callable[[], str] = run_token
        self._objects = _Objects(getattr(ctx, "store", None), "cluster")
        specs = ctx.clusters or [DEFAULT_CLUSTER]
        self.clusters: dict[str, AllPurposeCluster] = {}
        for spec in specs:
            if "cluster_id" not in spec:
                raise ValueError(f"cluster in --config lacks a cluster_id: {spec!r}")
            self.clusters[spec["cluster_id"]] = AllPurposeCluster(dict(spec))
        self.configured = frozenset(self.clusters)
        for cluster_id, body, _created in self._objects.load():
            cluster = AllPurposeCluster({**body["spec"], "cluster_id": cluster_id}, source="API")
            cluster.creator = body.get("creator") or cluster.creator
            cluster.pinned = bool(body.get("pinned"))
            cluster.state_message = "Cluster is terminated (the workspace restarted)."
            self.clusters[cluster_id] = cluster
        self._lock = threading.Lock()
        self._drivers: set[Any] = set()
        self._leases: dict[Any, list[tuple[str, int]]] = {}  # driver -> pool instances it holds
        self.events: dict[str, list[dict[str, Any]]] = {}
        # A configured cluster exists before the workspace first starts: it comes with the past it
        # had by then, recorded once and the same at every later start.
        self._pasts = _Objects(getattr(ctx, "store", None), "cluster_past")
        self._give_pasts()
        self.job_clusters: dict[str, AllPurposeCluster] = {}  # job and new clusters, newest last
        self.cluster_starts = 0
        self.stopping = False
        self.minute_seconds = 60.0  # the length of an autotermination minute (tests shorten it)
        self._idle_check = threading.Event()
        threading.Thread(
            target=self._terminate_idle_loop, name="cluster-autotermination", daemon=True
        ).start()

    # ----------------------------------------------------------------- events

    def event(self, cluster_id: str, kind: str, details: dict[str, Any] | None = None) -> None:
        with self._lock:
            events = self.events.setdefault(cluster_id, [])
            stamp = max(now_ms(), events[-1]["timestamp"] + 1) if events else now_ms()
            events.append(
                {"cluster_id": cluster_id, "timestamp": stamp, "type": kind, "details": details or {}}
            )
            if len(events) > MAX_EVENTS:
                del events[: len(events) - MAX_EVENTS]

    def _give_pasts(self) -> None:
        """The configured clusters' past: created and started by the workspace's admin, RUNNING,
        then terminated for inactivity (they start TERMINATED). Its events are in the store from
        the workspace's first start on; later starts read them back instead of making new ones."""
        stored = {cluster_id: body for cluster_id, body, _created in self._pasts.load()}
        for cluster_id in sorted(self.configured):
            cluster = self.clusters[cluster_id]
            past = stored.get(cluster_id)
            if past is None:
                past = self._past_of(cluster)
                self._pasts.save(cluster_id, past, past["start_time"])
            self.events[cluster_id] = copy.deepcopy(past["events"])
            cluster.start_time = past["start_time"]
            cluster.terminated_time = past["terminated_time"]
            cluster.termination_reason = copy.deepcopy(past["termination_reason"])
            cluster.state_message = past["state_message"]

    def _past_of(self, cluster: AllPurposeCluster) -> dict[str, Any]:
        # Its idle time: the spec's autotermination_minutes, or 120, Databricks' default for an
        # all-purpose cluster made in the UI.
        minutes = int(cluster.spec.get("autotermination_minutes") or 120)
        workers = workers_of(cluster.spec)
        reason = {
            "code": "INACTIVITY",
            "type": "SUCCESS",
            "parameters": {"inactivity_duration_min": str(minutes)},
        }
        terminated = now_ms() - 1000
        terminating = terminated - 1000
        running = terminating - minutes * 60_000
        starting = running - max(1000, int(self.ctx.cluster_start_seconds * 1000))
        created = starting - 1
        events = [
            (created, "CREATING", {"user": cluster.creator, "attributes": _attributes(cluster.spec)}),
            (starting, "STARTING", {"user": cluster.creator}),
            (running - 1, "DRIVER_HEALTHY", {}),
            (running, "RUNNING", {"current_num_workers": workers, "target_num_workers": workers}),
            (terminating, "TERMINATING", {"reason": reason}),
        ]
        return {
            "events": [
                {"cluster_id": cluster.cluster_id, "timestamp": stamp, "type": kind, "details": details}
                for stamp, kind, details in events
            ],
            "start_time": created,
            "terminated_time": terminated,
            "termination_reason": reason,
            "state_message": f"Inactive cluster terminated (inactive for {minutes} minutes).",
        }

    def list_events(
        self,
        cluster_id: str,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        event_types: list[str] | None = None,
        order: str = "DESC",
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of a cluster's events (newest first unless ``order`` is ASC) and the total."""
        self.find(cluster_id)
        with self._lock:
            events = list(self.events.get(cluster_id) or [])
        events = [
            e
            for e in events
            if (start_time is None or e["timestamp"] >= start_time)
            and (end_time is None or e["timestamp"] <= end_time)
            and (not event_types or e["type"] in event_types)
        ]
        if order == "DESC":
            events.reverse()
        return copy.deepcopy(events[offset : offset + limit]), len(events)

    # ----------------------------------------------------------------- drivers

    def _pool_lookup(self, pool_id: str) -> dict[str, Any] | None:
        return self.pools.find(pool_id) if self.pools is not None else None

    def _policy_lookup(self, policy_id: str) -> dict[str, Any] | None:
        return self.policies.find(policy_id) if self.policies is not None else None

    def check_spec(
        self, spec: dict[str, Any], where: str = "", *, job_cluster: bool = False
    ) -> dict[str, Any]:
        """:func:`compute.check_cluster_spec` with this workspace's pools and policies."""
        return compute.check_cluster_spec(
            spec, where=where, pool=self._pool_lookup, policy=self._policy_lookup, job_cluster=job_cluster
        )

    def check_job_compute(self, settings: dict[str, Any]) -> None:
        """:func:`compute.check_job_compute` with this workspace's pools and policies (jobs/create,
        runs/submit)."""
        compute.check_job_compute(settings, pool=self._pool_lookup, policy=self._policy_lookup)

    def _take_pool_instances(self, spec: dict[str, Any]) -> tuple[list[tuple[str, int]], float]:
        """Instances from the spec's pools, and the share of the cluster's nodes that were idle."""
        leases: list[tuple[str, int]] = []
        nodes = 1 + workers_of(spec)
        pool_id, driver_pool = spec.get("instance_pool_id"), spec.get("driver_instance_pool_id")
        if not pool_id or self.pools is None:
            return leases, 0.0
        idle = 0
        try:
            if driver_pool and driver_pool != pool_id:
                idle += self.pools.acquire(driver_pool, 1)
                leases.append((driver_pool, 1))
                idle += self.pools.acquire(pool_id, nodes - 1) if nodes > 1 else 0
                leases.append((pool_id, nodes - 1))
            else:
                idle += self.pools.acquire(pool_id, nodes)
                leases.append((pool_id, nodes))
        except BaseException:
            self._release(leases)
            raise
        return leases, idle / nodes

    def _release(self, leases: list[tuple[str, int]]) -> None:
        for pool_id, count in leases:
            if self.pools is not None and count:
                self.pools.release(pool_id, count)

    def start_seconds(self, warm_share: float) -> float:
        """The modelled wait of a start whose ``warm_share`` of nodes come from idle pool instances."""
        base = self.ctx.cluster_start_seconds
        return base * (1 - (1 - POOL_START_FACTOR) * warm_share)

    def launch_driver(
        self,
        cluster_id: str,
        spec: dict[str, Any] | None,
        cancelled: threading.Event | None = None,
        on_started=None,
    ):
        """Start one driver for ``cluster_id`` (blocking): the emulated cluster start.

        Waits the modelled start time first (the PENDING "Waiting for cluster" phase), runs the
        cluster's init scripts, then starts the driver. Raises :class:`ClusterStartCancelled`
        when ``cancelled`` is set meanwhile, :class:`ClusterStartError` when an init script fails
        or a pool is full.
        """
        from devstack.workspace.runtime import DriverProcess
        from devstack.workspace.runtime.fs import StorageMap

        spec = spec or {}
        if cluster_id not in self.clusters and (spec.get("policy_id") or spec.get("instance_pool_id")):
            # A job cluster gets its policy's values and its pool's node type.
            spec = self.check_spec(spec, job_cluster=True)
        leases, warm_share = self._take_pool_instances(spec)
        handed_over = False
        try:
            delay = self.start_seconds(warm_share)
            if delay > 0 and cancelled is not None:
                if cancelled.wait(delay):
                    raise ClusterStartCancelled(cluster_id)
            elif delay > 0:
                time.sleep(delay)
            if self.stopping or (cancelled is not None and cancelled.is_set()):
                raise ClusterStartCancelled(cluster_id)
            env = {
                **databricks_runtime_env(self.ctx, self.issue_run_token()),
                **{str(k): str(v) for k, v in (spec.get("spark_env_vars") or {}).items()},
            }
            cluster_dir: Path = self.ctx.data_dir / "clusters" / cluster_id
            cluster_dir.mkdir(parents=True, exist_ok=True)
            storage = StorageMap(
                self.ctx.data_dir, getattr(self.ctx.metastore, "root", None), self.ctx.storage_accounts
            )
            if spec.get("init_scripts"):
                self._run_init_scripts(cluster_id, spec, cluster_dir, env, storage, cancelled)
            driver = DriverProcess(
                cluster_id,
                cluster_dir=cluster_dir,
                data_dir=self.ctx.data_dir,
                workspace_url=driver_url(self.ctx),
                token=self.ctx.token,
                env=env,
                spark_conf={str(k): str(v) for k, v in (spec.get("spark_conf") or {}).items()},
                # /Volumes in the shared metastore, abfss:// in the workspace's storage accounts.
                storage=storage,
                # A fresh Python environment of the cluster's own (its libraries go there).
                python=self.libraries.start_environment(cluster_id) if self.libraries is not None else None,
            )
            with self._lock:
                self._drivers.add(driver)
                self._leases[driver] = leases
                handed_over = True
                self.cluster_starts += 1
        finally:
            if not handed_over:
                self._release(leases)
        if on_started:
            on_started()
        try:
            driver.start(timeout=60)
        except BaseException:
            self.kill_driver(driver)
            raise
        if self.stopping or (cancelled is not None and cancelled.is_set()):
            self.kill_driver(driver)
            raise ClusterStartCancelled(cluster_id)
        if self.libraries is not None:
            self.libraries.cluster_running(cluster_id)  # libraries installed through the API
        if cluster_id not in self.clusters:
            self._remember_job_cluster(cluster_id, spec, driver)
        return driver

    def _run_init_scripts(self, cluster_id, spec, cluster_dir: Path, env, storage, cancelled) -> None:
        """Run the cluster's init scripts in order, as Databricks does before Spark starts on a node.

        A script's output goes to ``cluster_dir/init_scripts/``; the first failing script fails the
        start with termination reason INIT_SCRIPT_FAILURE.
        """
        scripts = spec.get("init_scripts") or []
        self.event(cluster_id, "INIT_SCRIPTS_STARTED", {"instance_id": f"driver-{cluster_id}"})
        log_dir = cluster_dir / "init_scripts"
        log_dir.mkdir(parents=True, exist_ok=True)
        script_env = {
            **os.environ,
            **env,
            "DB_CLUSTER_ID": cluster_id,
            "DB_CLUSTER_NAME": str(spec.get("cluster_name") or cluster_id),
            "DB_IS_DRIVER": "TRUE",
            "DB_DRIVER_IP": "127.0.0.1",
            "DB_INSTANCE_TYPE": str(spec.get("node_type_id") or ""),
            "DATABRICKS_RUNTIME_VERSION": str(spec.get("spark_version") or SPARK_VERSION).split(".x")[0],
        }
        details = []
        for i, script in enumerate(scripts):
            kind = next(iter(script))
            destination = script[kind]["destination"]
            started = time.monotonic()
            stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
            log_path = log_dir / f"{stamp}_{i:02d}_{Path(destination).name}.log"
            try:
                text = self._init_script_text(kind, destination, storage)
                local = log_dir / f"{i:02d}_{Path(destination).name}"
                local.write_text(text, encoding="utf-8")
                with open(log_path, "wb") as out:
                    proc = subprocess.Popen(
                        ["bash", str(local)],
                        cwd=cluster_dir,
                        env=script_env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    deadline = time.monotonic() + INIT_SCRIPT_TIMEOUT_SECONDS
                    while proc.poll() is None:
                        if (cancelled is not None and cancelled.is_set()) or self.stopping:
                            _kill_group(proc)
                            raise ClusterStartCancelled(cluster_id)
                        if time.monotonic() > deadline:
                            _kill_group(proc)
                            raise RuntimeError(
                                f"Script timed out after {INIT_SCRIPT_TIMEOUT_SECONDS} seconds"
                            )
                        time.sleep(0.05)
                    if proc.returncode != 0:
                        raise RuntimeError("Script exit status is non-zero")
            except ClusterStartCancelled:
                raise
            except Exception as exc:
                message = f"Cluster scoped init script {destination} failed: {exc}"
                self.event(
                    cluster_id,
                    "INIT_SCRIPTS_FINISHED",
                    {
                        "init_scripts": {
                            "cluster": [
                                *details,
                                {
                                    kind: {"destination": destination},
                                    "status": "FAILED_EXECUTION",
                                    "error_message": message,
                                },
                            ]
                        }
                    },
                )
                raise ClusterStartError(
                    message,
                    {
                        "code": "INIT_SCRIPT_FAILURE",
                        "type": "CLIENT_ERROR",
                        "parameters": {
                            "instance_id": f"driver-{cluster_id}",
                            "databricks_error_message": message,
                        },
                    },
                ) from None
            details.append(
                {
                    kind: {"destination": destination},
                    "status": "SUCCEEDED",
                    "execution_duration_seconds": int(time.monotonic() - started),
                }
            )
        self.event(cluster_id, "INIT_SCRIPTS_FINISHED", {"init_scripts": {"cluster": details}})

    def _init_script_text(self, kind: str, destination: str, storage) -> str:
        if kind == "workspace":
            import base64

            from devstack.workspace.runtime.wsclient import WorkspaceApiError, WorkspaceClient

            path = destination[len("/Workspace") :] if destination.startswith("/Workspace/") else destination
            client = WorkspaceClient(driver_url(self.ctx), self.issue_run_token())
            try:
                answer = client.get("/api/2.0/workspace/export", path=path, format="SOURCE")
            except WorkspaceApiError as exc:
                raise RuntimeError(f"the workspace file does not exist ({exc.message})") from None
            return base64.b64decode(answer.get("content") or "").decode("utf-8")
        local = (
            Path(destination[len("file:") :]) if kind == "file" and destination.startswith("file:") else None
        )
        local = local or storage.to_local(destination, bare="local")
        if not local.is_file():
            raise RuntimeError(f"the file does not exist (looked at {local})")
        return local.read_text(encoding="utf-8")

    def _remember_job_cluster(self, cluster_id: str, spec: dict[str, Any], driver) -> None:
        """Keep job/new clusters answerable by clusters/get (cluster_instance.cluster_id of a run)."""
        cluster = AllPurposeCluster(
            {"cluster_name": f"job-cluster-{cluster_id}", **spec, "cluster_id": cluster_id}, source="JOB"
        )
        cluster.state, cluster.state_message = "RUNNING", ""
        cluster.driver, cluster.start_time = driver, now_ms()
        with self._lock:
            self.job_clusters[cluster_id] = cluster
            while len(self.job_clusters) > 500:  # forget the oldest
                gone = next(iter(self.job_clusters))
                self.job_clusters.pop(gone)
                self.events.pop(gone, None)

    def kill_driver(self, driver) -> None:
        try:
            driver.kill()
        except Exception:
            log.exception("could not kill driver %s", getattr(driver, "pid", "?"))
        if self.libraries is not None:
            self.libraries.cluster_stopped(driver.cluster_id)  # its environment goes with it
        with self._lock:
            self._drivers.discard(driver)
            leases = self._leases.pop(driver, [])
            for cluster in self.job_clusters.values():
                if cluster.driver is driver:
                    cluster.state, cluster.driver = "TERMINATED", None
                    cluster.state_message = "Job cluster terminated with its run."
                    cluster.terminated_time = now_ms()
                    cluster.termination_reason = {"code": "JOB_FINISHED", "type": "SUCCESS"}
        self._release(leases)

    def kill_driver_async(self, driver) -> None:
        threading.Thread(target=self.kill_driver, args=(driver,), name="kill-driver", daemon=True).start()

    def shutdown(self) -> None:
        """Kill every driver (all-purpose, job and new clusters) in parallel."""
        self.stopping = True
        self._idle_check.set()
        with self._lock:
            drivers = list(self._drivers)
        threads = [threading.Thread(target=self.kill_driver, args=(d,), daemon=True) for d in drivers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)

    # ----------------------------------------------------------------- all-purpose clusters

    def get(self, cluster_id: str) -> AllPurposeCluster:
        """An all-purpose cluster, or 400 INVALID_PARAMETER_VALUE "Cluster ... does not exist"."""
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise invalid(f"Cluster {cluster_id} does not exist")
        return cluster

    def find(self, cluster_id: str) -> AllPurposeCluster:
        """Any cluster clusters/get answers for: all-purpose, or a job cluster of a recent run."""
        cluster = self.clusters.get(cluster_id) or self.job_clusters.get(cluster_id)
        if cluster is None:
            raise invalid(f"Cluster {cluster_id} does not exist")
        return cluster

    def list_clusters(
        self,
        *,
        sources: list[str] | None = None,
        states: list[str] | None = None,
        is_pinned: bool | None = None,
        policy_id: str | None = None,
    ) -> list[AllPurposeCluster]:
        """clusters/list: the all-purpose clusters, then the job clusters (newest first) that run
        or terminated within the last 30 days, narrowed by ``filter_by``'s fields."""
        horizon = now_ms() - LIST_TERMINATED_DAYS * 24 * 3600 * 1000
        with self._lock:
            found = list(self.clusters.values())
            found += [
                c
                for c in reversed(self.job_clusters.values())
                if c.state != "TERMINATED" or (c.terminated_time or 0) >= horizon
            ]
        return [
            c
            for c in found
            if (not sources or c.source in sources)
            and (not states or c.state in states)
            and (is_pinned is None or c.pinned == is_pinned)
            and (policy_id is None or c.spec.get("policy_id") == policy_id)
        ]

    def _persist(self, cluster: AllPurposeCluster) -> None:
        if cluster.cluster_id in self.configured:
            return  # clusters of the --config file come from it at every start
        spec = {k: v for k, v in cluster.spec.items() if k != "cluster_id"}
        self._objects.save(
            cluster.cluster_id, {"spec": spec, "creator": cluster.creator, "pinned": cluster.pinned}, now_ms()
        )

    def create(self, spec: dict[str, Any], creator: str) -> str:
        """clusters/create: check the spec (and its policy), then start the new cluster (PENDING)."""
        spec = self.check_spec({k: v for k, v in spec.items() if k != "cluster_id"})
        cluster_id = new_cluster_id()
        cluster = AllPurposeCluster({**spec, "cluster_id": cluster_id}, source="API")
        cluster.creator = creator
        with self._lock:
            self.clusters[cluster_id] = cluster
        self._persist(cluster)
        self.event(cluster_id, "CREATING", {"user": creator, "attributes": _attributes(cluster.spec)})
        self._start_async(cluster)
        return cluster_id

    def edit(self, cluster_id: str, spec: dict[str, Any], user: str) -> None:
        """clusters/edit: RUNNING or TERMINATED clusters only; a running cluster restarts."""
        cluster = self.get(cluster_id)
        if cluster.state not in ("RUNNING", "TERMINATED"):
            raise invalid_state(cluster_id, cluster.state)
        new_spec = self.check_spec({k: v for k, v in spec.items() if k != "cluster_id"})
        previous = _attributes(cluster.spec)
        cluster.spec = {**new_spec, "cluster_id": cluster_id}
        self._persist(cluster)
        self.event(
            cluster_id,
            "EDITED",
            {"user": user, "previous_attributes": previous, "attributes": _attributes(cluster.spec)},
        )
        if cluster.state == "RUNNING":
            self.restart(cluster_id, user)

    def _start_async(self, cluster: AllPurposeCluster, event: str | None = None) -> None:
        if event:
            self.event(cluster.cluster_id, event, {"user": cluster.creator})
        cluster.state = "PENDING"
        cluster.state_message = "Finding instances for new nodes, acquiring more instances if necessary"
        cluster.ready.clear()
        generation = cluster.generation

        def _run():
            try:
                self.ensure_running(cluster.cluster_id, expected_generation=generation)
            except ClusterStartCancelled:
                pass
            except Exception:
                log.info("cluster %s failed to start", cluster.cluster_id, exc_info=True)

        threading.Thread(target=_run, name=f"start-{cluster.cluster_id}", daemon=True).start()

    def ensure_running(
        self,
        cluster_id: str,
        cancelled: threading.Event | None = None,
        on_started=None,
        *,
        expected_generation: int | None = None,
    ):
        """The driver of all-purpose cluster ``cluster_id``, started (TERMINATED -> PENDING -> RUNNING) if needed."""
        cluster = self.get(cluster_id)
        cluster.last_activity = time.monotonic()
        with cluster.lock:
            if (
                cluster.state in ("RUNNING", "RESIZING")
                and cluster.driver is not None
                and cluster.driver.alive
            ):
                return cluster.driver  # a resize changes the workers, not the driver
            stale, cluster.driver = cluster.driver, None
            if stale is not None:  # a driver that died: its pool instances go back before a new one
                self.kill_driver(stale)
            if cluster.state == "TERMINATED":
                self.event(cluster_id, "STARTING", {"user": cluster.creator})
            generation = cluster.generation
            cluster.state = "PENDING" if cluster.state != "RESTARTING" else "RESTARTING"
            cluster.state_message = "Starting Spark driver"
            cluster.ready.clear()
            # clusters/delete cancels any start, its own or a run's (which its run cancels as well).
            deleted, run_cancelled = cluster.start_cancelled, cancelled
            if cancelled is None:
                cancelled = deleted
                if expected_generation is not None and expected_generation != cluster.generation:
                    cluster.state = "TERMINATED"  # deleted before this start began
                    raise ClusterStartCancelled(cluster_id)
            else:
                cancelled = EitherEvent(cancelled, deleted)
            try:
                driver = self.launch_driver(cluster_id, cluster.spec, cancelled, on_started)
            except ClusterStartCancelled:
                cluster.state = "TERMINATED"
                cluster.terminated_time = now_ms()
                if run_cancelled is not None and deleted.is_set() and not run_cancelled.is_set():
                    raise _deleted_during_start(cluster_id) from None
                raise
            except BaseException as exc:
                cluster.state = "TERMINATED"
                cluster.terminated_time = now_ms()
                if isinstance(exc, ClusterStartError):
                    cluster.termination_reason = exc.reason
                    cluster.state_message = str(exc)
                else:
                    cluster.termination_reason = {
                        "code": "DRIVER_UNREACHABLE",
                        "type": "SERVICE_FAULT",
                        "parameters": {"databricks_error_message": str(exc)[:2000]},
                    }
                    cluster.state_message = f"Cluster start failed: {exc}"
                self.event(cluster_id, "TERMINATING", {"reason": cluster.termination_reason})
                raise
            if generation != cluster.generation:  # terminated while it started
                self.kill_driver(driver)
                cluster.state = "TERMINATED"
                cluster.terminated_time = now_ms()
                if run_cancelled is not None and not run_cancelled.is_set():
                    raise _deleted_during_start(cluster_id)
                raise ClusterStartCancelled(cluster_id)
            cluster.driver = driver
            cluster.state = "RUNNING"
            cluster.state_message = ""
            cluster.termination_reason = None
            cluster.start_time = now_ms()
            cluster.last_activity = time.monotonic()
            cluster.ready.set()
            workers = workers_of(cluster.spec)
            self.event(cluster_id, "DRIVER_HEALTHY", {})
            self.event(cluster_id, "RUNNING", {"current_num_workers": workers, "target_num_workers": workers})
            return driver

    def start_async(self, cluster_id: str) -> None:
        """clusters/start: a TERMINATED cluster starts; any other state is left as it is (documented)."""
        cluster = self.get(cluster_id)
        if cluster.state != "TERMINATED":
            return
        self._start_async(cluster, "STARTING")

    def terminate(self, cluster_id: str, user: str = ADMIN_USER, *, reason: dict | None = None) -> None:
        """clusters/delete: TERMINATING, the driver killed, TERMINATED (the spec stays)."""
        cluster = self.get(cluster_id)
        if cluster.state == "TERMINATED" and cluster.driver is None:
            return
        cluster.generation += 1
        # A start under way gives up instead of finishing first; later starts get a fresh event.
        begun, cluster.start_cancelled = cluster.start_cancelled, threading.Event()
        begun.set()
        with cluster.lock:
            reason = reason or {"code": "USER_REQUEST", "type": "SUCCESS", "parameters": {"username": user}}
            cluster.state = "TERMINATING"
            cluster.termination_reason = reason
            self.event(cluster_id, "TERMINATING", {"reason": reason, **({"user": user} if user else {})})
            driver, cluster.driver = cluster.driver, None
            if driver is not None:
                self.kill_driver(driver)
            cluster.state = "TERMINATED"
            cluster.state_message = "Terminated by user request (clusters/delete)."
            cluster.terminated_time = now_ms()

    def restart(self, cluster_id: str, user: str = ADMIN_USER) -> None:
        """clusters/restart: a RUNNING cluster gets a new driver (RESTARTING -> RUNNING)."""
        cluster = self.get(cluster_id)
        if cluster.state not in ("RUNNING",):
            raise invalid_state(cluster_id, cluster.state)
        self.event(cluster_id, "RESTARTING", {"user": user})
        with cluster.lock:
            driver, cluster.driver = cluster.driver, None
            cluster.state = "RESTARTING"
            cluster.state_message = "Restarting Spark driver"
            cluster.ready.clear()
            generation = cluster.generation
        if driver is not None:
            self.kill_driver(driver)

        def _run():
            try:
                self.ensure_running(cluster_id, expected_generation=generation)
            except Exception:
                log.info("cluster %s failed to restart", cluster_id, exc_info=True)

        threading.Thread(target=_run, name=f"restart-{cluster_id}", daemon=True).start()

    def resize(self, cluster_id: str, num_workers: int | None, autoscale: dict | None, user: str) -> None:
        """clusters/resize: a RUNNING cluster changes its workers (RESIZING -> RUNNING)."""
        cluster = self.get(cluster_id)
        if cluster.state != "RUNNING":
            raise invalid_state(cluster_id, cluster.state)
        if (num_workers is None) == (autoscale is None):
            raise invalid("Exactly one of num_workers or autoscale must be specified")
        new_spec = {k: v for k, v in cluster.spec.items() if k not in ("num_workers", "autoscale")}
        new_spec.update({"num_workers": num_workers} if autoscale is None else {"autoscale": autoscale})
        self.check_spec({k: v for k, v in new_spec.items() if k != "cluster_id"})
        before = workers_of(cluster.spec)
        target = workers_of(new_spec)
        cluster.state = "RESIZING"
        self.event(
            cluster_id,
            "RESIZING",
            {"current_num_workers": before, "target_num_workers": target, "user": user},
        )
        cluster.spec = new_spec
        self._persist(cluster)

        def _done():
            # Workers are modelled, not started: the resize completes at once.
            time.sleep(0.2)
            if cluster.state == "RESIZING":
                cluster.state = "RUNNING"
                self.event(
                    cluster_id,
                    "UPSIZE_COMPLETED",
                    {"current_num_workers": target, "target_num_workers": target},
                )

        threading.Thread(target=_done, name=f"resize-{cluster_id}", daemon=True).start()

    def permanent_delete(self, cluster_id: str, user: str) -> None:
        """clusters/permanent-delete: terminated and forgotten (clusters/get no longer knows it)."""
        self.terminate(cluster_id, user)
        with self._lock:
            self.clusters.pop(cluster_id, None)
            self.events.pop(cluster_id, None)
        self._objects.delete(cluster_id)
        if self.libraries is not None:
            self.libraries.forget(cluster_id)  # its API libraries too (libraries/all-cluster-statuses)

    def pin(self, cluster_id: str, pinned: bool, user: str) -> None:
        cluster = self.get(cluster_id)
        if cluster.pinned != pinned:
            cluster.pinned = pinned
            self._persist(cluster)
            self.event(cluster_id, "PINNED" if pinned else "UNPINNED", {"user": user})

    def cluster_driver_if_running(self, cluster_id: str):
        cluster = self.clusters.get(cluster_id)
        if cluster and cluster.state in ("RUNNING", "RESIZING") and cluster.driver is not None:
            return cluster.driver
        return None

    def touch(self, cluster_id: str) -> None:
        """Note activity on an all-purpose cluster (a command), which postpones its autotermination."""
        cluster = self.clusters.get(cluster_id)
        if cluster is not None:
            cluster.last_activity = time.monotonic()

    def terminate_idle(self) -> list[str]:
        """Terminate the RUNNING all-purpose clusters idle for their ``autotermination_minutes``
        (no task or command executing meanwhile), with termination reason INACTIVITY, as
        Databricks does. Returns their ids."""
        done = []
        for cluster in list(self.clusters.values()):
            minutes = cluster.spec.get("autotermination_minutes") or 0
            driver = cluster.driver
            if cluster.state != "RUNNING" or not minutes or driver is None:
                continue
            if driver.running:
                cluster.last_activity = time.monotonic()  # busy: idle time counts from the end
                continue
            if time.monotonic() - cluster.last_activity < minutes * self.minute_seconds:
                continue
            reason = {
                "code": "INACTIVITY",
                "type": "SUCCESS",
                "parameters": {"inactivity_duration_min": str(minutes)},
            }
            self.terminate(cluster.cluster_id, "", reason=reason)
            cluster.state_message = f"Inactive cluster terminated (inactive for {minutes} minutes)."
            done.append(cluster.cluster_id)
        return done

    def _terminate_idle_loop(self) -> None:
        while not self._idle_check.wait(IDLE_CHECK_SECONDS):
            try:
                self.terminate_idle()
                if self.pools is not None:
                    self.pools.expire_idle()  # instance pools' idle instances time out as well
            except Exception:
                log.exception("autotermination check failed")


def _attributes(spec: dict[str, Any]) -> dict[str, Any]:
    """The cluster attributes an EDITED/CREATING event carries."""
    return {
        k: copy.deepcopy(v) for k, v in spec.items() if k not in ("cluster_id", "apply_policy_default_values")
    }


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)
