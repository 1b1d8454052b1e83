"""Clusters, Instance Pools and Cluster Policies REST APIs: parse, call the backend, render.

Answers are rendered through databricks-sdk's own dataclasses (``ClusterDetails``,
``ClusterEvent``, ``InstancePoolAndStats``, ``Policy``), so the shapes are the ones the SDK reads.
"""

from __future__ import annotations

from typing import Any

from devstack.workspace.clusters.backend import (
    AllPurposeCluster,
    ClusterManager,
    ClusterPolicies,
    InstancePools,
)
from devstack.workspace.clusters.compute import NODE_TYPES, SPARK_VERSIONS
from devstack.workspace.http import Request, coerce, invalid
from devstack.workspace.iam.backend import user_name_of

# clusters/events paging, as documented: 50 events a page unless asked, at most 500.
EVENTS_DEFAULT_LIMIT = 50
EVENTS_MAX_LIMIT = 500


def _user(request: Request) -> str:
    return user_name_of(request.principal)


def _details(cluster: AllPurposeCluster) -> dict[str, Any]:
    from databricks.sdk.service.compute import ClusterDetails

    out = cluster.describe()
    rendered = ClusterDetails.from_dict(out).as_dict()
    # Attributes the SDK's dataclass does not model yet stay as given.
    return {**{k: v for k, v in out.items() if k not in rendered}, **rendered}


def _filter_by(request: Request) -> dict[str, Any]:
    """``filter_by`` of clusters/list: a JSON object, or query parameters ``filter_by.<field>``
    (how databricks-sdk sends a nested query object: ``filter_by.cluster_sources=JOB``)."""
    given = request.get("filter_by", dict) or {}
    nested = {
        name.removeprefix("filter_by."): values[0] if len(values) == 1 else values
        for name, values in request.query.items()
        if name.startswith("filter_by.")
    }
    return {**nested, **given}


def _enum_list(filter_by: dict[str, Any], field: str, enum: Any) -> list[str] | None:
    values = filter_by.get(field)
    if values is None:
        return None
    values = values if isinstance(values, list) else [values]
    allowed = [e.value for e in enum]
    for value in values:
        if value not in allowed:
            raise invalid(
                f"Invalid value for field filter_by.{field}: {value!r}; expected one of {', '.join(allowed)}"
            )
    return values


class ClustersApi:
    """``/api/2.0|2.1/clusters/*`` (all-purpose clusters; job clusters answer clusters/get and list)."""

    def __init__(self, clusters: ClusterManager):
        self.clusters = clusters

    @staticmethod
    def _cluster_id(request: Request) -> str:
        return request.require("cluster_id", str)

    def create(self, request: Request):
        return {"cluster_id": self.clusters.create(dict(request.body), _user(request))}

    def edit(self, request: Request):
        cluster_id = self._cluster_id(request)
        self.clusters.edit(cluster_id, dict(request.body), _user(request))
        return {}

    def get(self, request: Request):
        return _details(self.clusters.find(self._cluster_id(request)))

    def list(self, request: Request):
        """All-purpose and job clusters; ``filter_by`` (ListClustersFilterBy) narrows them."""
        from databricks.sdk.service.compute import ClusterSource, State

        filter_by = _filter_by(request)
        pinned, policy_id = filter_by.get("is_pinned"), filter_by.get("policy_id")
        clusters = self.clusters.list_clusters(
            sources=_enum_list(filter_by, "cluster_sources", ClusterSource),
            states=_enum_list(filter_by, "cluster_states", State),
            is_pinned=None if pinned is None else coerce("filter_by.is_pinned", pinned, bool),
            policy_id=None if policy_id is None else coerce("filter_by.policy_id", policy_id, str),
        )
        return {"clusters": [_details(c) for c in clusters]}

    def start(self, request: Request):
        self.clusters.start_async(self._cluster_id(request))  # a cluster not TERMINATED is left as it is
        return {}

    def restart(self, request: Request):
        self.clusters.restart(self._cluster_id(request), _user(request))
        return {}

    def delete(self, request: Request):
        self.clusters.terminate(self._cluster_id(request), _user(request))
        return {}

    def permanent_delete(self, request: Request):
        self.clusters.permanent_delete(self._cluster_id(request), _user(request))
        return {}

    def resize(self, request: Request):
        autoscale = request.get("autoscale", dict)
        self.clusters.resize(
            self._cluster_id(request), request.get("num_workers", int), autoscale, _user(request)
        )
        return {}

    def pin(self, request: Request):
        self.clusters.pin(self._cluster_id(request), True, _user(request))
        return {}

    def unpin(self, request: Request):
        self.clusters.pin(self._cluster_id(request), False, _user(request))
        return {}

    def events(self, request: Request):
        from databricks.sdk.service.compute import ClusterEvent

        cluster_id = self._cluster_id(request)
        order = (request.get("order", str) or "DESC").upper()
        if order not in ("ASC", "DESC"):
            raise invalid(f"Invalid value for field order: {order!r}; expected ASC or DESC")
        limit = request.get("limit", int) or request.get("page_size", int) or EVENTS_DEFAULT_LIMIT
        if not 1 <= limit <= EVENTS_MAX_LIMIT:
            raise invalid(f"Invalid value for field limit: must be between 1 and {EVENTS_MAX_LIMIT}")
        offset = request.get("offset", int) or 0
        token = request.get("page_token", str)
        if token:
            if not token.isdigit():
                raise invalid(
                    f"Invalid value for field page_token: {token!r} is not a token this API returned"
                )
            offset = int(token)
        types = request.get("event_types")
        if types is not None and not isinstance(types, list):
            types = [types]
        end_time = request.get("end_time", int)
        start_time = request.get("start_time", int)
        events, total = self.clusters.list_events(
            cluster_id,
            start_time=start_time,
            end_time=end_time,
            event_types=types,
            order=order,
            offset=offset,
            limit=limit,
        )
        out: dict[str, Any] = {
            "events": [ClusterEvent.from_dict(e).as_dict() for e in events],
            "total_count": total,
        }
        if offset + limit < total:
            out["next_page"] = {
                k: v
                for k, v in {
                    "cluster_id": cluster_id,
                    "start_time": start_time,
                    "end_time": end_time,
                    "event_types": types,
                    "order": order,
                    "offset": offset + limit,
                    "limit": limit,
                }.items()
                if v is not None
            }
            out["next_page_token"] = str(offset + limit)
        return out

    def spark_versions(self, request: Request):
        return {"versions": SPARK_VERSIONS}

    def node_types(self, request: Request):
        return {"node_types": NODE_TYPES}


class InstancePoolsApi:
    """``/api/2.0/instance-pools/*``."""

    def __init__(self, pools: InstancePools):
        self.pools = pools

    def create(self, request: Request):
        return {"instance_pool_id": self.pools.create(dict(request.body))}

    def get(self, request: Request):
        from databricks.sdk.service.compute import GetInstancePool

        return GetInstancePool.from_dict(
            self.pools.describe(request.require("instance_pool_id", str))
        ).as_dict()

    def list(self, request: Request):
        from databricks.sdk.service.compute import InstancePoolAndStats

        return {"instance_pools": [InstancePoolAndStats.from_dict(p).as_dict() for p in self.pools.list()]}

    def edit(self, request: Request):
        self.pools.edit(request.require("instance_pool_id", str), dict(request.body))
        return {}

    def delete(self, request: Request):
        self.pools.delete(request.require("instance_pool_id", str))
        return {}


class ClusterPoliciesApi:
    """``/api/2.0/policies/clusters/*``."""

    def __init__(self, policies: ClusterPolicies):
        self.policies = policies

    def create(self, request: Request):
        return {"policy_id": self.policies.create(dict(request.body), _user(request))}

    def get(self, request: Request):
        from databricks.sdk.service.compute import Policy

        return Policy.from_dict(self.policies.get(request.require("policy_id", str))).as_dict()

    def list(self, request: Request):
        from databricks.sdk.service.compute import Policy

        return {"policies": [Policy.from_dict(p).as_dict() for p in self.policies.list()]}

    def edit(self, request: Request):
        self.policies.edit(request.require("policy_id", str), dict(request.body))
        return {}

    def delete(self, request: Request):
        self.policies.delete(request.require("policy_id", str))
        return {}
