"""Command Execution API 1.2 on an all-purpose cluster, driven by databricks-sdk's
``command_execution`` and its remote ``dbutils``, as IDE tooling and laptops use them."""

from __future__ import annotations

import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import DatabricksError
from databricks.sdk.service.compute import CommandStatus, ContextStatus, Language, ResultType, State

from devstack.services import start_workspace

CLUSTER = "0101-000000-laptop"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    config = tmp_path_factory.mktemp("commands-config") / "clusters.json"
    config.write_text(f'{{"clusters": [{{"cluster_id": "{CLUSTER}", "cluster_name": "laptop"}}]}}')
    service = start_workspace(
        "commands", tmp_path_factory.mktemp("ws-commands"), token="k", extra_args=["--config", str(config)]
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(service) -> WorkspaceClient:
    client = WorkspaceClient(host=service.url, token="k")
    client.clusters.ensure_cluster_is_running(CLUSTER)
    return client


@pytest.fixture
def context(client):
    ctx = client.command_execution.create_and_wait(cluster_id=CLUSTER, language=Language.PYTHON)
    yield ctx.id
    client.command_execution.destroy(CLUSTER, ctx.id)


def run(client, context_id, command, language=Language.PYTHON):
    return client.command_execution.execute_and_wait(
        cluster_id=CLUSTER, context_id=context_id, language=language, command=command
    )


def test_a_context_keeps_its_state_between_commands(client, context):
    assert client.command_execution.context_status(CLUSTER, context).status == ContextStatus.RUNNING
    first = run(client, context, "x = 40\nprint('hello from the driver')")
    assert first.status == CommandStatus.FINISHED
    assert (first.results.result_type, first.results.data) == (ResultType.TEXT, "hello from the driver")
    second = run(client, context, "x + 2")
    assert (second.results.result_type, second.results.data) == (ResultType.TEXT, "42")
    # What a notebook has: dbutils and the cluster's id in its context.
    third = run(
        client, context, "dbutils.notebook.entry_point.getDbutils().notebook().getContext().clusterId().get()"
    )
    assert third.results.data == repr(CLUSTER)


def test_contexts_do_not_share_names(client, context):
    run(client, context, "secret_name = 'mine'")
    other = client.command_execution.create_and_wait(cluster_id=CLUSTER, language=Language.PYTHON).id
    try:
        answer = run(client, other, "secret_name")
        assert answer.status == CommandStatus.FINISHED
        assert answer.results.result_type == ResultType.ERROR
        assert "NameError" in answer.results.summary
        assert "secret_name" in answer.results.cause
    finally:
        client.command_execution.destroy(CLUSTER, other)
    with pytest.raises(DatabricksError, match="does not exist"):
        client.command_execution.context_status(CLUSTER, other)


def test_an_exception_is_an_error_result_with_its_traceback(client, context):
    result = run(client, context, "def f():\n    return 1 / 0\n\nf()")
    assert result.status == CommandStatus.FINISHED  # the command ran; its Python raised
    assert result.results.result_type == ResultType.ERROR
    assert "ZeroDivisionError" in result.results.summary
    assert "return 1 / 0" in result.results.cause and "Traceback" in result.results.cause


def test_a_long_command_can_be_cancelled(client, context):
    waiter = client.command_execution.execute(
        cluster_id=CLUSTER,
        context_id=context,
        language=Language.PYTHON,
        command="import time\ntime.sleep(60)",
    )
    command_id = waiter.response.id
    deadline = time.monotonic() + 20
    while (
        client.command_execution.command_status(CLUSTER, context, command_id).status != CommandStatus.RUNNING
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = client.command_execution.cancel_and_wait(
        cluster_id=CLUSTER, context_id=context, command_id=command_id
    )
    assert cancelled.status == CommandStatus.CANCELLED
    # The context is still usable afterwards.
    assert run(client, context, "1 + 1").results.data == "2"


def test_sql_answers_a_table(client):
    ctx = client.command_execution.create_and_wait(cluster_id=CLUSTER, language=Language.SQL).id
    try:
        result = run(client, ctx, "SELECT 1 AS one, 'a' AS letter", language=Language.SQL)
        assert result.results.result_type == ResultType.TABLE
        assert result.results.data == [[1, "a"]]
        assert [(c["name"], c["type"]) for c in result.results.schema] == [
            ("one", "int"),
            ("letter", "string"),
        ]
    finally:
        client.command_execution.destroy(CLUSTER, ctx)


def test_a_semicolon_in_a_sql_literal_does_not_end_the_statement(client):
    ctx = client.command_execution.create_and_wait(cluster_id=CLUSTER, language=Language.SQL).id
    try:
        command = "SELECT 'a;b' AS s; -- the last statement answers; not this comment\nSELECT 'c;d' AS t"
        result = run(client, ctx, command, language=Language.SQL)
        assert result.results.result_type == ResultType.TABLE, result.results
        assert result.results.data == [["c;d"]]
    finally:
        client.command_execution.destroy(CLUSTER, ctx)


def test_display_of_a_dataframe_is_a_table(client, context):
    result = run(
        client, context, "import pandas as pd\ndisplay(pd.DataFrame({'n': [1, 2], 'name': ['a', 'b']}))"
    )
    assert result.results.result_type == ResultType.TABLE
    assert result.results.data == [[1, "a"], [2, "b"]]
    assert [(c["name"], c["type"]) for c in result.results.schema] == [("n", "bigint"), ("name", "string")]


def test_errors_come_in_the_shape_of_api_1_2(client):
    # As in databricks-sdk's own integration test: no error_code, the message of API 1.2.
    with pytest.raises(DatabricksError) as caught:
        client.command_execution.execute(cluster_id="__non_existing__")
    assert "requirement failed: missing contextId" in str(caught.value)
    assert caught.value.error_code is None


def test_a_terminated_cluster_has_no_contexts(service, client):
    import requests

    client.clusters.delete_and_wait(CLUSTER)
    try:
        # databricks-sdk retries ClusterNotReadyException until the cluster runs; the answer itself:
        answer = requests.post(
            f"{service.url}/api/1.2/contexts/create",
            json={"clusterId": CLUSTER, "language": "python"},
            headers={"Authorization": "Bearer k"},
            timeout=10,
        )
        assert answer.status_code == 400
        assert answer.json()["error"].startswith(
            f"ClusterNotReadyException: Cluster {CLUSTER} is in unexpected state Terminated"
        )
    finally:
        client.clusters.start_and_wait(CLUSTER)
    assert client.clusters.get(CLUSTER).state == State.RUNNING


def test_remote_dbutils_runs_on_the_cluster(service, client):
    # databricks-sdk's dbutils proxies what it cannot do over REST through a command context.
    remote = WorkspaceClient(host=service.url, token="k", cluster_id=CLUSTER)
    mounts = remote.dbutils.fs.mounts()
    assert [(m.mountPoint, m.source) for m in mounts] == [
        ("/", "DatabricksRoot"),
        ("/Volumes", "UnityCatalogVolumes"),
    ]


class _FakeDriver:
    """A driver that takes commands and never answers (they stay Running)."""

    pid = 1

    def __init__(self, cluster_id: str):
        self.cluster_id = cluster_id
        self.alive, self.running, self.tasks = True, set(), []

    def execute(self, task, callback) -> None:
        self.tasks.append((task, callback))

    def cancel(self, exec_id: str) -> None:
        pass

    def kill(self) -> None:
        self.alive = False


def test_a_context_whose_driver_died_lets_go_of_it_and_answers_error(tmp_path):
    from devstack.workspace.clusters import ClusterManager
    from devstack.workspace.commands.backend import CommandError, CommandsBackend
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    store = Store(tmp_path / "ws.db")
    ctx = WorkspaceContext(name="t", host="127.0.0.1", port=9, data_dir=tmp_path, token="t", store=store)
    manager = ClusterManager(ctx, run_token=lambda: "run-token")
    drivers = []

    def launch(cluster_id, spec, cancelled=None, on_started=None):
        drivers.append(_FakeDriver(cluster_id))
        return drivers[-1]

    manager.launch_driver = launch
    [cluster_id] = manager.clusters
    backend = CommandsBackend(manager)
    try:
        manager.ensure_running(cluster_id)
        asked, untouched = (backend.create_context(cluster_id, "python") for _ in range(2))
        command_id = backend.execute(cluster_id, asked, "python", "import time; time.sleep(60)")
        assert backend.command_status(cluster_id, asked, command_id)["status"] == "Running"

        drivers[-1].alive = False  # the driver dies: its contexts with it
        assert backend.context_status(cluster_id, asked) == {"id": asked, "status": "Error"}
        status = backend.command_status(cluster_id, asked, command_id)
        assert status["status"] == "Error"
        assert status["results"]["summary"] == "The cluster's driver was restarted or terminated"
        with pytest.raises(CommandError, match="is not running"):
            backend.execute(cluster_id, asked, "python", "1")
        # Neither keeps the dead driver or its commands: the next context lets go of the other one.
        manager.ensure_running(cluster_id)
        fresh = backend.create_context(cluster_id, "python")
        assert list(backend._contexts) == [fresh]
        assert backend.context_status(cluster_id, untouched)["status"] == "Error"
        backend.destroy_context(cluster_id, asked)
        with pytest.raises(CommandError, match="ContextNotFound"):
            backend.context_status(cluster_id, asked)
        assert backend.context_status(cluster_id, fresh)["status"] == "Running"
    finally:
        manager.shutdown()
        store.close()
