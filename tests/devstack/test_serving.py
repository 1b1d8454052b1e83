"""Model Serving on the emulated workspace, driven by databricks-sdk's ``w.serving_endpoints``.

The endpoint really serves: its entities are Unity Catalog model versions registered in the
session's MLflow server, loaded by mlflow.pyfunc in processes of their own.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests
from databricks.sdk.errors import InvalidParameterValue, NotFound, OperationFailed, ResourceAlreadyExists
from databricks.sdk.errors.platform import BadRequest
from databricks.sdk.service.serving import (
    AutoCaptureConfigInput,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    Route,
    ServedEntityInput,
    TrafficConfig,
)

from tests.devstack.serving_support import COLUMNS, TOKEN, frame, register_versions, start_serving_workspace

MODEL = "prod.ml.diabetes"
ENDPOINT = "diabetes"
IDLE_SECONDS = 4.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mlflow_server):
    stack = start_serving_workspace(
        tmp_path_factory.mktemp("serving"), mlflow_server.url, idle_seconds=IDLE_SECONDS
    )
    yield stack
    stack.workspace.stop()


@pytest.fixture(scope="module")
def models(stack):
    """Versions 1 and 2 of prod.ml.diabetes (different coefficients, so answers tell them apart)."""
    return register_versions(stack, MODEL, [[1.0, 2.0, 3.0], [-2.0, 0.5, 4.0]])


@pytest.fixture(scope="module")
def w(stack):
    return stack.sdk()


def entity(version: str, **kwargs) -> ServedEntityInput:
    return ServedEntityInput(entity_name=MODEL, entity_version=version, workload_size="Small", **kwargs)


def split(x) -> DataframeSplitInput:
    return DataframeSplitInput(columns=list(x.columns), data=x.to_numpy().tolist())


@pytest.fixture(scope="module")
def endpoint(w, models):
    """Endpoint ``diabetes`` serving version 1, ready."""
    return w.serving_endpoints.create_and_wait(
        ENDPOINT,
        config=EndpointCoreConfigInput(
            name=ENDPOINT, served_entities=[entity("1", environment_vars={"MODE": "test"})]
        ),
    )


def test_endpoint_serves_the_registered_version(w, models, endpoint, stack):
    assert endpoint.state.ready.value == "READY"
    assert endpoint.state.config_update.value == "NOT_UPDATING"
    served = endpoint.config.served_entities
    assert [(e.name, e.entity_name, e.entity_version) for e in served] == [("diabetes-1", MODEL, "1")]
    assert served[0].state.deployment.value == "DEPLOYMENT_READY"
    assert served[0].environment_vars == {"MODE": "test"}
    assert [(r.served_entity_name, r.traffic_percentage) for r in endpoint.config.traffic_config.routes] == [
        ("diabetes-1", 100)
    ]
    assert ENDPOINT in [e.name for e in w.serving_endpoints.list()]

    # Every MLflow input format gets the model's own predictions.
    x = frame(5)
    expected = pytest.approx(models[0].predict(x).tolist())
    answers = [
        w.serving_endpoints.query(ENDPOINT, dataframe_split=split(x)),
        w.serving_endpoints.query(ENDPOINT, dataframe_records=x.to_dict(orient="records")),
        w.serving_endpoints.query(ENDPOINT, instances=x.to_dict(orient="records")),
        w.serving_endpoints.query(ENDPOINT, inputs={c: x[c].tolist() for c in COLUMNS}),
    ]
    for answer in answers:
        assert answer.predictions == expected
        assert answer.served_model_name == "diabetes-1"

    # Plain HTTP, as the README's curl does: the same token, outside /api/.
    url = f"{stack.workspace.url}/serving-endpoints/{ENDPOINT}/invocations"
    body = {"dataframe_split": split(x).as_dict()}
    assert requests.post(url, json=body, timeout=30).status_code == 401
    answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == 200 and answer.headers["served-model-name"] == "diabetes-1"

    assert "Model server ready" in w.serving_endpoints.build_logs(ENDPOINT, "diabetes-1").logs
    assert "POST /invocations 200" in w.serving_endpoints.logs(ENDPOINT, "diabetes-1").logs
    metrics = w.serving_endpoints.export_metrics(ENDPOINT).contents.read().decode()
    assert 'request_count_total{served_entity_name="diabetes-1"} 5' in metrics
    assert 'request_4xx_count_total{served_entity_name="diabetes-1"} 0' in metrics
    assert 'request_latency_ms_count{served_entity_name="diabetes-1"} 5' in metrics


def test_query_not_matching_the_signature_is_refused_naming_the_column(w, endpoint):
    with pytest.raises(BadRequest, match=r"missing inputs \['bp'\]"):
        w.serving_endpoints.query(ENDPOINT, dataframe_records=[{"age": 0.1, "bmi": 0.2}])
    with pytest.raises(BadRequest, match="column bmi"):
        w.serving_endpoints.query(ENDPOINT, dataframe_records=[{"age": 0.1, "bmi": "high", "bp": 0.3}])
    with pytest.raises(BadRequest, match="dataframe_split"):
        w.serving_endpoints.query(ENDPOINT, extra_params={"no": "input"})
    metrics = w.serving_endpoints.export_metrics(ENDPOINT).contents.read().decode()
    assert 'request_4xx_count_total{served_entity_name="diabetes-1"} 3' in metrics


def test_version_that_does_not_exist_fails_the_update_and_the_old_config_keeps_serving(w, models, endpoint):
    waiter = w.serving_endpoints.update_config(ENDPOINT, served_entities=[entity("99")])
    with pytest.raises(OperationFailed, match="UPDATE_FAILED"):
        waiter.result()
    seen = w.serving_endpoints.get(ENDPOINT)
    assert seen.state.config_update.value == "UPDATE_FAILED"
    assert seen.state.ready.value == "READY"
    assert [e.entity_version for e in seen.config.served_entities] == ["1"]
    failed = seen.pending_config.served_entities[0]
    assert failed.state.deployment.value == "DEPLOYMENT_FAILED"
    assert "Model version 99 of registered model 'prod.ml.diabetes' does not exist" in (
        failed.state.deployment_state_message
    )
    assert "FAILED" in w.serving_endpoints.build_logs(ENDPOINT, "diabetes-99").logs
    x = frame(3)
    answer = w.serving_endpoints.query(ENDPOINT, dataframe_split=split(x))
    assert answer.predictions == pytest.approx(models[0].predict(x).tolist())


def test_routes_must_add_up_to_100(w, models):
    config = EndpointCoreConfigInput(
        name="split",
        served_entities=[entity("1"), entity("2")],
        traffic_config=TrafficConfig(
            routes=[
                Route(served_entity_name="diabetes-1", traffic_percentage=50),
                Route(served_entity_name="diabetes-2", traffic_percentage=40),
            ]
        ),
    )
    with pytest.raises(InvalidParameterValue, match="add up to 90, not 100"):
        w.serving_endpoints.create("split", config=config)
    with pytest.raises(NotFound):
        w.serving_endpoints.get("split")


def test_endpoint_name_taken(w, endpoint):
    with pytest.raises(ResourceAlreadyExists, match="'diabetes' already exists"):
        w.serving_endpoints.create(
            ENDPOINT, config=EndpointCoreConfigInput(name=ENDPOINT, served_entities=[entity("2")])
        )


def test_canary_split_then_promote(w, models, endpoint):
    first = w.serving_endpoints.get(ENDPOINT).config.served_entities[0]
    canary = w.serving_endpoints.update_config_and_wait(
        ENDPOINT,
        served_entities=[entity("1", environment_vars={"MODE": "test"}), entity("2")],
        traffic_config=TrafficConfig(
            routes=[
                Route(served_entity_name="diabetes-1", traffic_percentage=50),
                Route(served_entity_name="diabetes-2", traffic_percentage=50),
            ]
        ),
    )
    assert canary.pending_config is None
    kept = next(e for e in canary.config.served_entities if e.name == "diabetes-1")
    assert kept.creation_timestamp == first.creation_timestamp  # unchanged entity: not reloaded

    x = frame(1)
    answered = Counter(
        w.serving_endpoints.query(ENDPOINT, dataframe_split=split(x)).served_model_name for _ in range(60)
    )
    assert answered["diabetes-1"] > 10 and answered["diabetes-2"] > 10

    # One entity directly: the candidate's own answers.
    url = f"{w.config.host}/serving-endpoints/{ENDPOINT}/served-models/diabetes-2/invocations"
    answer = requests.post(
        url,
        json={"dataframe_split": split(x).as_dict()},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert answer.json()["predictions"] == pytest.approx(models[1].predict(x).tolist())

    promoted = w.serving_endpoints.update_config_and_wait(ENDPOINT, served_entities=[entity("2")])
    assert [e.name for e in promoted.config.served_entities] == ["diabetes-2"]
    assert w.serving_endpoints.query(ENDPOINT, dataframe_split=split(x)).predictions == pytest.approx(
        models[1].predict(x).tolist()
    )


def test_scale_to_zero_and_cold_start(w, models):
    name = "cold"
    w.serving_endpoints.create_and_wait(
        name,
        config=EndpointCoreConfigInput(name=name, served_entities=[entity("1", scale_to_zero_enabled=True)]),
    )
    deadline = time.monotonic() + IDLE_SECONDS + 15
    while "Scaled to zero" not in (
        w.serving_endpoints.get(name).config.served_entities[0].state.deployment_state_message or ""
    ):
        assert time.monotonic() < deadline, "the idle entity was not scaled to zero"
        time.sleep(1)
    x = frame(2)
    assert w.serving_endpoints.query(name, dataframe_split=split(x)).predictions == pytest.approx(
        models[0].predict(x).tolist()
    )
    assert "Cold start" in w.serving_endpoints.build_logs(name, "diabetes-1").logs
    assert w.serving_endpoints.get(name).config.served_entities[0].state.deployment_state_message == ""
    w.serving_endpoints.delete(name)
    with pytest.raises(NotFound):
        w.serving_endpoints.get(name)


def test_inference_table_captures_requests_and_responses(w, models, endpoint, stack):
    import pandas as pd

    w.serving_endpoints.update_config_and_wait(
        ENDPOINT,
        served_entities=[entity("2")],
        auto_capture_config=AutoCaptureConfigInput(
            catalog_name="prod", schema_name="ml", table_name_prefix="diabetes_serving", enabled=True
        ),
    )
    seen = w.serving_endpoints.get(ENDPOINT).config.auto_capture_config
    assert seen.state.payload_table.name == "diabetes_serving_payload"
    x = frame(2)
    w.serving_endpoints.query(ENDPOINT, dataframe_split=split(x), client_request_id="req-42")
    table = stack.metastore_dir / "tables" / "prod" / "ml" / "diabetes_serving_payload"
    deadline = time.monotonic() + 20
    while not list(table.glob("*.parquet")):
        assert time.monotonic() < deadline, f"no inference table files under {table}"
        time.sleep(0.5)
    rows = pd.read_parquet(table)
    row = rows[rows.client_request_id == "req-42"].iloc[0]
    assert row.status_code == 200
    assert dict(row.request_metadata) == {
        "endpoint_name": ENDPOINT,
        "model_name": MODEL,
        "model_version": "2",
        "served_entity_name": "diabetes-2",
    }
    assert '"columns": ["age", "bmi", "bp"]' in row.request
    assert json.loads(row.response)["predictions"] == pytest.approx(models[1].predict(x).tolist())


def test_update_while_updating_and_unknown_endpoint(w, endpoint):
    w.serving_endpoints.update_config(ENDPOINT, served_entities=[entity("1")])
    try:
        with pytest.raises(Exception, match="already updating"):
            w.serving_endpoints.update_config(ENDPOINT, served_entities=[entity("2")])
    finally:
        w.serving_endpoints.wait_get_serving_endpoint_not_updating(ENDPOINT)
    with pytest.raises(NotFound, match="'nope' does not exist"):
        w.serving_endpoints.query("nope", dataframe_split=split(frame(1)))


def _worker_pids(metastore_dir) -> list[int]:
    """Served-entity processes loading models from this stack's metastore."""
    from pathlib import Path

    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "devstack.workspace.serving.worker" in cmdline and str(metastore_dir) in cmdline:
            pids.append(int(proc.name))
    return pids


def test_environment_vars_resolve_secret_references(w, models, stack):
    """{{secrets/<scope>/<key>}} becomes the secret's value in the served entity's environment."""
    from pathlib import Path

    w.secrets.create_scope("serving")
    w.secrets.put_secret("serving", "api_key", string_value="s3cr3t-value")
    name = "secrets"
    env = {"API_KEY": "{{secrets/serving/api_key}}", "PLAIN": "yes"}
    created = w.serving_endpoints.create_and_wait(
        name, config=EndpointCoreConfigInput(name=name, served_entities=[entity("1", environment_vars=env)])
    )
    assert created.config.served_entities[0].environment_vars == env  # the reference, never the value
    environ = {}
    for pid in _worker_pids(stack.metastore_dir):
        if f"/serving/{name}/" in str(Path(f"/proc/{pid}/cwd").resolve()) + "/":
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            environ = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    assert environ.get("API_KEY") == "s3cr3t-value" and environ.get("PLAIN") == "yes"

    missing = {"API_KEY": "{{secrets/serving/nope}}"}
    with pytest.raises(OperationFailed):
        w.serving_endpoints.update_config_and_wait(
            name, served_entities=[entity("2", environment_vars=missing)]
        )
    failed = w.serving_endpoints.get(name).pending_config.served_entities[0].state.deployment_state_message
    assert "secret 'nope' in scope 'serving', which does not exist" in failed
    w.serving_endpoints.delete(name)


# Last: it restarts the module's workspace (the module's `w` client points at the old port).
def test_restart_keeps_endpoints_and_stops_their_processes(w, models, endpoint, stack):
    from devstack.services import start_workspace

    served = w.serving_endpoints.get(ENDPOINT).config.served_entities[0]
    assert _worker_pids(stack.metastore_dir)
    stack.workspace.stop()
    assert _worker_pids(stack.metastore_dir) == []  # no served entity outlives its workspace

    stack.workspace = start_workspace(
        "serving-prod",
        stack.metastore_dir.parent / "prod",
        token=TOKEN,
        mlflow_tracking_uri=stack.mlflow_url,
        extra_args=["--metastore-dir", str(stack.metastore_dir), "--serving-idle-seconds", str(IDLE_SECONDS)],
    )
    w = stack.sdk()
    seen = w.serving_endpoints.get(ENDPOINT)
    assert seen.state.ready.value == "READY"
    assert [(e.name, e.entity_version) for e in seen.config.served_entities] == [
        (served.name, served.entity_version)
    ]
    x = frame(2)
    version = int(served.entity_version)
    assert w.serving_endpoints.query(ENDPOINT, dataframe_split=split(x)).predictions == pytest.approx(
        models[version - 1].predict(x).tolist()
    )
