"""A configured all-purpose cluster exists before the workspace first starts: it comes with the
past it had by then (created, started, terminated for inactivity), recorded once."""

from __future__ import annotations

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import EventType, GetEventsOrder, State, TerminationReasonCode

from devstack.services import start_workspace

TOKEN = "dapi-cluster-past"
DEFAULT_CLUSTER = "0000-000000-devstack"  # the cluster a workspace without --config has


def _past(w: WorkspaceClient) -> list:
    return list(w.clusters.events(DEFAULT_CLUSTER, order=GetEventsOrder.ASC))


def test_default_cluster_has_its_past_once_across_restarts(tmp_path):
    data_dir = tmp_path / "ws"
    service = start_workspace("past", data_dir, token=TOKEN)
    try:
        w = WorkspaceClient(host=service.url, token=TOKEN)
        admin = w.current_user.me().user_name
        cluster = w.clusters.get(DEFAULT_CLUSTER)
        assert cluster.state == State.TERMINATED
        assert cluster.termination_reason.code == TerminationReasonCode.INACTIVITY
        assert cluster.creator_user_name == admin
        # As databricks-sdk's integration test (test_clusters.py::test_cluster_events) asks.
        asked = w.clusters.events(DEFAULT_CLUSTER, event_types=[EventType.STARTING, EventType.TERMINATING])
        assert [e.type for e in asked] == [EventType.TERMINATING, EventType.STARTING]
        first = _past(w)
        assert [e.type for e in first] == [
            EventType.CREATING,
            EventType.STARTING,
            EventType.DRIVER_HEALTHY,
            EventType.RUNNING,
            EventType.TERMINATING,
        ]
        assert first[0].details.user == admin
        assert first[-1].details.reason.code == TerminationReasonCode.INACTIVITY
        assert cluster.start_time == first[0].timestamp < first[-1].timestamp < cluster.terminated_time
    finally:
        service.stop()

    service = start_workspace("past", data_dir, token=TOKEN)
    try:
        w = WorkspaceClient(host=service.url, token=TOKEN)
        again = _past(w)
        # The same events, not a second past made at this start.
        assert [(e.type, e.timestamp) for e in again] == [(e.type, e.timestamp) for e in first]
        assert w.clusters.get(DEFAULT_CLUSTER).terminated_time == cluster.terminated_time
    finally:
        service.stop()
