"""Serving operators on the emulated prod workspace: exact version, failed update, canary, smoke check.

The operators sign in through the Databricks connection as the registry hook does (here a
personal access token) and drive databricks-sdk's ``serving_endpoints``; the endpoint really
serves the registered scikit-learn versions.
"""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from airflow.sdk.exceptions import TaskDeferred
from mlops.exceptions import ModelRegistryError
from mlops.serving import (
    PromoteServingCanaryOperator,
    RevertServingCanaryOperator,
    ServingEndpointError,
    ServingEndpointHook,
    ServingEndpointOperator,
    ServingEndpointTrigger,
    ServingSmokeCheckError,
    ServingSmokeCheckOperator,
    StartServingCanaryOperator,
    smoke_check,
)
from mlops_testlib import make_context

from tests.devstack.serving_support import TOKEN, frame, register_versions, start_serving_workspace

MODEL = "prod.ml.ops_model"
ENDPOINT = "ops-endpoint"
CONN = "databricks_prod"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mlflow_server):
    root = tmp_path_factory.mktemp("serving-ops")
    stack = start_serving_workspace(root, mlflow_server.url, tls_dir=root / "tls")
    yield stack
    stack.workspace.stop()


@pytest.fixture(scope="module")
def models(stack):
    return register_versions(stack, MODEL, [[1.0, 2.0, 3.0], [-2.0, 0.5, 4.0]])


@pytest.fixture(autouse=True)
def connection(stack, monkeypatch):
    conn = {
        "conn_type": "databricks",
        "host": "127.0.0.1",
        "port": stack.workspace.port,
        "schema": "http",
        "password": TOKEN,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps(conn))


def serve(version, **kwargs) -> ServingEndpointOperator:
    return ServingEndpointOperator(
        task_id="serve",
        endpoint_name=ENDPOINT,
        model_name=MODEL,
        version=version,
        databricks_conn_id=CONN,
        poll_interval=0.3,
        timeout_seconds=180,
        **kwargs,
    )


def predictions(stack, x) -> list[float]:
    w = stack.sdk()
    return w.serving_endpoints.query(ENDPOINT, dataframe_records=x.to_dict(orient="records")).predictions


def routes(stack) -> dict[str, int]:
    endpoint = stack.sdk().serving_endpoints.get(ENDPOINT)
    return {r.served_entity_name: r.traffic_percentage for r in endpoint.config.traffic_config.routes}


def test_endpoint_kept_on_an_exact_version(stack, models):
    x = frame(4)
    result = serve("1", scale_to_zero_enabled=False).execute(make_context())
    assert result == {
        "endpoint_name": ENDPOINT,
        "served_entities": {"ops_model-1": {"model_name": MODEL, "version": "1", "traffic_percentage": 100}},
    }
    assert predictions(stack, x) == pytest.approx(models[0].predict(x).tolist())

    # Run again: nothing to change, the endpoint is not touched.
    before = stack.sdk().serving_endpoints.get(ENDPOINT).config.config_version
    serve("1").execute(make_context())
    assert stack.sdk().serving_endpoints.get(ENDPOINT).config.config_version == before

    serve("2").execute(make_context())
    assert routes(stack) == {"ops_model-2": 100}
    assert predictions(stack, x) == pytest.approx(models[1].predict(x).tolist())

    with pytest.raises(ServingEndpointError, match="exact model version number, got 'champion'"):
        serve("champion").execute(make_context())


def test_version_that_cannot_load_fails_the_task_and_the_old_one_keeps_serving(stack, models):
    serve("2").execute(make_context())
    with pytest.raises(ServingEndpointError) as failed:
        serve("99").execute(make_context())
    message = str(failed.value)
    assert "Model version 99 of registered model 'prod.ml.ops_model' does not exist" in message
    assert "keeps serving ops_model-2 (prod.ml.ops_model v2) 100%" in message
    x = frame(2)
    assert predictions(stack, x) == pytest.approx(models[1].predict(x).tolist())


def _canary(candidate, share=25) -> StartServingCanaryOperator:
    return StartServingCanaryOperator(
        task_id="canary",
        endpoint_name=ENDPOINT,
        model_name=MODEL,
        candidate_version=candidate,
        traffic_percentage=share,
        databricks_conn_id=CONN,
        poll_interval=0.3,
    )


def test_canary_smoke_check_then_revert_or_promote(stack, models):
    rows = frame(12, seed=5)
    records = rows.to_dict(orient="records")
    serve("1").execute(make_context())  # the champion (also clears the failed update above)

    started = _canary("2").execute(make_context())
    assert started["champion_version"] == "1"
    assert started["candidate_served_entity"] == "ops_model-2"
    assert routes(stack) == {"ops_model-1": 75, "ops_model-2": 25}
    # A retry of the same step changes nothing.
    _canary("2").execute(make_context())
    assert routes(stack) == {"ops_model-1": 75, "ops_model-2": 25}

    hook = ServingEndpointHook(CONN)
    report = smoke_check(
        hook,
        ENDPOINT,
        records,
        served_entity="ops_model-2",
        expected_predictions=models[1].predict(rows).tolist(),
        max_p99_ms=5000,
    )
    assert (report["requests"], report["errors"], report["mismatches"]) == (12, 0, 0)

    # A candidate whose answers disagree with the validation run's predictions is caught.
    with pytest.raises(ServingSmokeCheckError, match="12 of 12 answers differ"):
        smoke_check(
            hook,
            ENDPOINT,
            records,
            served_entity="ops_model-2",
            expected_predictions=models[0].predict(rows).tolist(),
        )
    # And one that errors (rows the signature refuses).
    check = ServingSmokeCheckOperator(
        task_id="smoke",
        endpoint_name=ENDPOINT,
        rows=[{"age": 1.0}] * 4,
        served_entity="ops_model-2",
        max_error_rate=0.1,
        databricks_conn_id=CONN,
    )
    with pytest.raises(
        ServingSmokeCheckError, match=r"(?s)error rate 100\.0% > 10\.0% .*missing inputs \['bmi', 'bp'\]"
    ):
        check.execute(make_context())

    revert = RevertServingCanaryOperator(
        task_id="revert",
        endpoint_name=ENDPOINT,
        model_name=MODEL,
        version="1",
        databricks_conn_id=CONN,
        poll_interval=0.3,
    )
    revert.execute(make_context())
    assert routes(stack) == {"ops_model-1": 100}

    _canary("2", share=10).execute(make_context())
    promote = PromoteServingCanaryOperator(
        task_id="promote",
        endpoint_name=ENDPOINT,
        model_name=MODEL,
        version="2",
        databricks_conn_id=CONN,
        poll_interval=0.3,
    )
    promote.execute(make_context())
    assert routes(stack) == {"ops_model-2": 100}
    x = frame(3)
    assert predictions(stack, x) == pytest.approx(models[1].predict(x).tolist())

    # Promoting a version that is not on the endpoint is refused, naming what it serves.
    stray = PromoteServingCanaryOperator(
        task_id="promote", endpoint_name=ENDPOINT, model_name=MODEL, version="1", databricks_conn_id=CONN
    )
    with pytest.raises(ServingEndpointError, match="serves ops_model-2 .* no canary to promote"):
        stray.execute(make_context())


def test_deferrable_operator_waits_in_the_trigger(stack, models):
    op = serve("1", deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, ServingEndpointTrigger)
    path, kwargs = trigger.serialize()
    assert path == "mlops.serving.ServingEndpointTrigger"
    assert set(kwargs) == set(inspect.signature(ServingEndpointTrigger.__init__).parameters) - {"self"}
    assert kwargs["expected"] == {"ops_model-1": [MODEL, "1", 100]}

    async def first_event():
        async for event in ServingEndpointTrigger(**kwargs).run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    result = op.execute_complete(make_context(), event, **deferred.value.kwargs)
    assert result["served_entities"]["ops_model-1"]["version"] == "1"
    # `airflow dags test` resumes a deferred task with the event alone (no defer kwargs).
    assert op.execute_complete(make_context(), event) == result
    x = frame(2)
    assert predictions(stack, x) == pytest.approx(models[0].predict(x).tolist())


def test_operators_sign_in_with_a_databricks_oauth_service_principal(
    stack, models, monkeypatch, caplog, capfd
):
    """OAuth M2M over the workspace's TLS, through the provider's sign-in (as the registry hook)."""
    from devstack import tls

    admin = stack.sdk()
    sp = admin.service_principals.create(display_name="mlops-serving-m2m")
    secret = admin.service_principal_secrets_proxy.create(sp.id).secret
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_bundle(stack.metastore_dir.parent / "tls")))

    def connection(conn_id: str, password: str) -> None:
        # As in production: a bare host (https), the service principal's client id and secret.
        conn = {
            "conn_type": "databricks",
            "host": f"127.0.0.1:{stack.workspace.port}",
            "login": sp.application_id,
            "password": password,
            "extra": {"service_principal_oauth": True},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    connection("databricks_m2m", secret)
    op = serve("1")
    op.databricks_conn_id = "databricks_m2m"
    result = op.execute(make_context())
    assert result["served_entities"]["ops_model-1"]["version"] == "1"
    assert op.hook.client.config.host.startswith("https://")
    x = frame(3)
    report = smoke_check(
        ServingEndpointHook("databricks_m2m"),
        ENDPOINT,
        x.to_dict(orient="records"),
        expected_predictions=models[0].predict(x).tolist(),
        max_p99_ms=5000,
    )
    assert report["errors"] == 0 and report["mismatches"] == 0

    wrong = "dose" + "0123456789abcdef0123456789abcdef"
    connection("databricks_m2m_wrong", wrong)
    with pytest.raises(
        ModelRegistryError, match=r"'databricks_m2m_wrong' \(Databricks OAuth M2M\)"
    ) as failed:
        ServingEndpointHook("databricks_m2m_wrong").get_endpoint(ENDPOINT)
    logs = caplog.text + "".join(capfd.readouterr())
    assert wrong not in str(failed.value) and wrong not in logs and secret not in logs
