"""The operators inside real DAG runs (`airflow dags test`) against a real MLflow server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from mlops.operators import RegisterModelVersionOperator
from mlops_testlib import RecordingProxy

DAGS = Path(__file__).parent / "dags"


def run(airflow, dag_id, registry, conf):
    result = airflow.dags_test(
        dag_id, DAGS, conf=conf, env={"AIRFLOW_CONN_MLFLOW_DEFAULT": registry.conn_json()}, timeout=300
    )
    return result


def test_release_and_rollback_dags(airflow, sqlite_registry, model_name):
    registry = sqlite_registry
    client = registry.client()
    target = model_name.replace("dev.", "prod.", 1)
    conf = {"model_name": model_name, "target_model_name": target}

    first = run(airflow, "mlops_plugin_release", registry, {**conf, "model_uri": registry.models[0].run_uri})
    assert first.succeeded, first.output[-4000:]
    assert client.get_model_version_by_alias(target, "champion").version == "1"
    assert "challenger" not in client.get_registered_model(model_name).aliases
    assert "Verdict: PASSED" in first.output

    better = run(
        airflow,
        "mlops_plugin_release",
        registry,
        {**conf, "model_uri": registry.models[1].model_uri, "reason": "lower rmse"},
    )
    assert better.succeeded, better.output[-4000:]
    assert client.get_model_version_by_alias(target, "champion").version == "2"

    worse = run(
        airflow, "mlops_plugin_release", registry, {**conf, "model_uri": registry.models[2].model_uri}
    )
    assert worse.succeeded, worse.output[-4000:]  # the gate skips the promotion: the run itself is fine
    assert "rmse 80 > max 70" in worse.output
    assert client.get_model_version_by_alias(target, "champion").version == "2"
    assert client.get_model_version(model_name, "3").tags["mlops_validation_status"] == "failed"
    assert client.get_registered_model(model_name).aliases == {"challenger": "3"}

    rollback = run(airflow, "mlops_plugin_rollback", registry, {"model_name": target, "reason": "drift"})
    assert rollback.succeeded, rollback.output[-4000:]
    assert client.get_model_version_by_alias(target, "champion").version == "1"
    entries = sorted(
        (
            json.loads(v)
            for mv in client.search_model_versions(f"name = '{target}'")
            for k, v in mv.tags.items()
            if k.startswith("mlops_history_champion_")
        ),
        key=lambda e: e["ts"],
    )
    assert [(e["action"], e["version"], e["previous_version"]) for e in entries] == [
        ("promote", "1", None),
        ("promote", "2", "1"),
        ("rollback", "1", "2"),
    ]
    assert entries[1]["reason"] == "lower rmse" and entries[2]["reason"] == "drift"
    assert entries[1]["dag_id"] == "mlops_plugin_release"
    assert sorted(int(mv.version) for mv in client.search_model_versions(f"name = '{model_name}'")) == [
        1,
        2,
        3,
    ]


def test_deferrable_sensor_waits_in_the_trigger_until_the_alias_moves(
    airflow, sqlite_registry, model_name, context
):
    registry = sqlite_registry
    client = registry.client()
    for index in (0, 1):
        RegisterModelVersionOperator(
            task_id="register", model_uri=registry.models[index].model_uri, model_name=model_name
        ).execute(context("register"))
    client.set_registered_model_alias(model_name, "champion", "1")

    proxy = RecordingProxy(registry.url)

    def promote_later():
        # Another actor moves the alias once the sensor has looked at it (first poke) and deferred.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("/alias" in path for _, path, _ in proxy.requests):
            time.sleep(0.5)
        time.sleep(5)
        client.set_registered_model_alias(model_name, "champion", "2")

    mover = threading.Thread(target=promote_later)
    mover.start()
    conn = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": proxy.port, "schema": "http"})
    try:
        result = airflow.dags_test(
            "mlops_plugin_wait_alias",
            DAGS,
            conf={"model_name": model_name, "expected_version": "2"},
            env={"AIRFLOW_CONN_MLFLOW_DEFAULT": conn},
            timeout=300,
        )
    finally:
        mover.join()
        proxy.stop()
    assert result.succeeded, result.output[-4000:]
    assert "points at version 1, waiting for 2" in result.output  # polled by the trigger
    assert "deferred" in result.output.lower()
