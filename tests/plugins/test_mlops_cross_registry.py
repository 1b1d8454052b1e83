"""Promotion into a second, independent MLflow server (a central production registry)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from mlops.exceptions import ModelRegistryError
from mlops.operators import PromoteModelVersionOperator, RegisterModelVersionOperator
from mlops_testlib import artifacts_dir


def register(registry, name, context, model):
    op = RegisterModelVersionOperator(task_id="register", model_uri=model.model_uri, model_name=name)
    return op.execute(context("register"))


def promote_remote(name, target, version, **kwargs):
    return PromoteModelVersionOperator(
        task_id="promote",
        model_name=name,
        version=version,
        target_model_name=target,
        target_mlflow_conn_id="mlflow_central",
        **kwargs,
    )


def load(url, uri):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(previous)


def test_promotion_copies_across_registries_with_lineage_and_only_once(
    sqlite_registry, remote_registry, model_name, context
):
    source, remote = sqlite_registry, remote_registry
    target = model_name.replace("dev.", "prod.", 1)
    v1 = register(source, model_name, context, source.models[0])
    ctx = context("promote", user="dana")
    op = promote_remote(model_name, target, v1, reason="quarterly release")
    assert op.execute(ctx) == {"model_name": target, "version": "1", "previous_version": None}

    client = remote.client()
    copied = client.get_model_version(target, "1")
    assert copied.status == "READY"
    assert client.get_model_version_by_alias(target, "champion").version == "1"
    assert copied.tags["mlops_copied_from_model"] == model_name
    assert copied.tags["mlops_copied_from_version"] == v1
    assert copied.tags["mlops_copied_from_registry"] == source.url
    assert copied.tags["mlops_dag_id"] == "plugin_tests"  # lineage tags of the source version kept
    assert client.get_run(copied.run_id).data.metrics["rmse"] == source.models[0].metrics["rmse"]
    [entry] = [json.loads(v) for k, v in copied.tags.items() if k.startswith("mlops_history_champion_")]
    assert (entry["by"], entry["source_model"], entry["reason"]) == ("dana", model_name, "quarterly release")

    # the copy is a working model: same predictions as the source
    x = np.arange(6, dtype=float).reshape(3, 2)
    from_remote = load(remote.url, f"models:/{target}@champion")
    original = load(source.url, f"models:/{model_name}/{v1}")
    np.testing.assert_allclose(from_remote.predict(x), original.predict(x))

    # re-runs (a retry, or another DAG run) find the copy instead of making a second one
    op.execute(context("promote", run_id=ctx["ti"].run_id, try_number=2))
    op.execute(context("promote"))
    assert [mv.version for mv in client.search_model_versions(f"name = '{target}'")] == ["1"]

    v2 = register(source, model_name, context, source.models[1])
    assert promote_remote(model_name, target, v2).execute(context("promote")) == {
        "model_name": target,
        "version": "2",
        "previous_version": "1",
    }


def test_failed_promotion_leaves_the_old_champion_and_no_orphan_alias(
    sqlite_registry, remote_registry, model_name, context
):
    source, remote = sqlite_registry, remote_registry
    target = model_name.replace("dev.", "prod.", 1)
    v1 = register(source, model_name, context, source.models[0])
    promote_remote(model_name, target, v1).execute(context("promote"))

    # a candidate whose artifacts were lost from the source artifact store
    broken = source.log_model({"rmse": 50.0, "r2": 0.5}, experiment="mlops-plugin-broken")
    v2 = register(source, model_name, context, broken)
    PromoteModelVersionOperator(
        task_id="challenger", model_name=model_name, version=v2, alias="challenger"
    ).execute(context("challenger"))
    location = source.client().get_logged_model(broken.model_id).artifact_location
    shutil.rmtree(artifacts_dir(source.service, location))

    op = promote_remote(model_name, target, v2, remove_alias="challenger")
    with pytest.raises(ModelRegistryError, match=f"Copying version {v2} of '{model_name}'") as err:
        op.execute(context("promote"))
    assert "Nothing was promoted" in str(err.value)

    client = remote.client()
    assert client.get_registered_model(target).aliases == {"champion": "1"}
    assert [mv.version for mv in client.search_model_versions(f"name = '{target}'")] == ["1"]
    # the source keeps its challenger: nothing was half-applied there either
    assert source.client().get_registered_model(model_name).aliases["challenger"] == v2
