"""Registry operators against real MLflow servers (SQLite and PostgreSQL backends)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from mlops.exceptions import ConcurrentPromotionError, ModelRegistryNotFoundError
from mlops.operators import (
    DeleteModelAliasOperator,
    ModelValidationGateOperator,
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    RollbackModelOperator,
    SetModelAliasOperator,
    TransitionModelVersionStageOperator,
)
from mlops.sensors import ModelVersionSensor

RULES = {"rmse": {"max": 70, "max_regression": 0.02}, "r2": {"min": 0.3, "min_improvement": 0.0}}


def register(registry, name, context, index=0, task_id="register", **kwargs):
    op = RegisterModelVersionOperator(
        task_id=task_id, model_uri=registry.models[index].model_uri, model_name=name, **kwargs
    )
    return op.execute(context(task_id))


def history(registry, name, alias="champion"):
    """History entries as stored: one tag per event on the version the alias moved to."""
    entries = []
    for mv in registry.client().search_model_versions(f"name = '{name}'"):
        entries += [json.loads(v) for k, v in mv.tags.items() if k.startswith("mlops_history_")]
    return sorted((e for e in entries if e["alias"] == alias), key=lambda e: e["ts"])


def versions(registry, name):
    return sorted(int(mv.version) for mv in registry.client().search_model_versions(f"name = '{name}'"))


def test_register_waits_ready_tags_lineage_and_a_retry_reuses_the_version(registry, model_name, context):
    op = RegisterModelVersionOperator(
        task_id="register",
        model_uri=registry.models[0].run_uri,
        model_name=model_name,
        tags={"git_sha": "abc123"},
    )
    first = context("register", try_number=1)
    version = op.execute(first)
    mv = registry.client().get_model_version(model_name, version)
    assert mv.status == "READY"
    assert mv.run_id == registry.models[0].run_id
    assert mv.source == f"models:/{registry.models[0].model_id}"  # runs:/ resolved to the logged model
    assert mv.tags["git_sha"] == "abc123"
    assert mv.tags["mlops_dag_id"] == "plugin_tests"
    assert mv.tags["mlops_run_id"] == first["ti"].run_id
    assert mv.tags["mlops_try_number"] == "1"

    retry = context("register", run_id=first["ti"].run_id, try_number=2)
    assert op.execute(retry) == version
    assert versions(registry, model_name) == [int(version)]

    other_run = op.execute(context("register"))
    assert versions(registry, model_name) == [int(version), int(other_run)]


def test_set_and_delete_alias_are_idempotent(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    setter = SetModelAliasOperator(task_id="alias", model_name=model_name, alias="challenger", version=v1)
    assert setter.execute(context("alias")) == v1
    assert setter.execute(context("alias")) == v1
    assert registry.client().get_model_version_by_alias(model_name, "challenger").version == v1
    deleter = DeleteModelAliasOperator(task_id="unalias", model_name=model_name, alias="challenger")
    assert deleter.execute(context("unalias")) == v1
    assert deleter.execute(context("unalias")) is None
    assert "challenger" not in registry.client().get_registered_model(model_name).aliases
    assert versions(registry, model_name) == [int(v1)]


def test_promote_moves_alias_records_history_and_is_idempotent(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    v2 = register(registry, model_name, context, 1)
    first = PromoteModelVersionOperator(
        task_id="promote", model_name=model_name, version=v1, reason="first release"
    )
    assert first.execute(context("promote")) == {
        "model_name": model_name,
        "version": v1,
        "previous_version": None,
    }

    SetModelAliasOperator(task_id="a", model_name=model_name, alias="challenger", version=v2).execute(
        context("a")
    )
    promote = PromoteModelVersionOperator(
        task_id="promote", model_name=model_name, version=v2, remove_alias="challenger", reason="better rmse"
    )
    ctx = context("promote", user="bob")
    assert promote.execute(ctx) == {"model_name": model_name, "version": v2, "previous_version": v1}
    model = registry.client().get_registered_model(model_name)
    assert model.aliases == {"champion": v2}  # challenger removed, champion moved
    assert model.tags["mlops_previous_champion"] == v1

    entries = history(registry, model_name)
    assert [(e["version"], e["previous_version"], e["status"]) for e in entries] == [
        (v1, None, "applied"),
        (v2, v1, "applied"),
    ]
    assert entries[-1]["by"] == "bob" and entries[-1]["reason"] == "better rmse"
    assert entries[-1]["run_id"] == ctx["ti"].run_id and entries[-1]["dag_id"] == "plugin_tests"

    # a re-run changes nothing and writes no second history entry
    assert (
        promote.execute(context("promote", run_id=ctx["ti"].run_id, try_number=2))["previous_version"] == v1
    )
    assert len(history(registry, model_name)) == 2


def test_promote_copies_into_the_target_model_once(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    target = model_name.replace("dev.", "prod.", 1)
    op = PromoteModelVersionOperator(
        task_id="promote", model_name=model_name, version=v1, target_model_name=target, reason="release"
    )
    ctx = context("promote")
    result = op.execute(ctx)
    assert result == {"model_name": target, "version": "1", "previous_version": None}
    copied = registry.client().get_model_version(target, "1")
    assert copied.tags["mlops_copied_from_model"] == model_name
    assert copied.tags["mlops_copied_from_version"] == v1
    assert copied.tags["mlops_dag_id"] == "plugin_tests"  # lineage of the registering task kept
    assert registry.client().get_model_version_by_alias(target, "champion").version == "1"

    op.execute(context("promote", run_id=ctx["ti"].run_id, try_number=2))
    op.execute(context("promote"))  # even another DAG run does not copy the same version twice
    assert versions(registry, target) == [1]


def test_rollback_returns_to_the_previous_champion_with_an_audit_entry(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    v2 = register(registry, model_name, context, 1)
    rollback = RollbackModelOperator(task_id="rollback", model_name=model_name, reason="bad scores")
    PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v1).execute(context("p"))
    with pytest.raises(ModelRegistryNotFoundError, match="records no earlier holder") as err:
        rollback.execute(context("rollback"))
    assert "Pass to_version" in str(err.value) and f"champion -> {v1}" in str(err.value)

    PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v2).execute(context("p"))
    assert rollback.execute(context("rollback", user="carol")) == {
        "model_name": model_name,
        "version": v1,
        "previous_version": v2,
    }
    assert registry.client().get_model_version_by_alias(model_name, "champion").version == v1
    last = history(registry, model_name)[-1]
    assert (last["action"], last["version"], last["previous_version"], last["by"], last["reason"]) == (
        "rollback",
        v1,
        v2,
        "carol",
        "bad scores",
    )
    # v1 was installed by the first promotion, which had no predecessor: no further rollback
    with pytest.raises(ModelRegistryNotFoundError, match="records no earlier holder"):
        rollback.execute(context("rollback"))
    forward = RollbackModelOperator(task_id="rb", model_name=model_name, to_version=v2)
    assert forward.execute(context("rb"))["version"] == v2
    assert versions(registry, model_name) == [int(v1), int(v2)]


def test_unknown_model_version_and_alias_errors_name_what_exists(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    SetModelAliasOperator(task_id="a", model_name=model_name, alias="challenger", version=v1).execute(
        context("a")
    )
    with pytest.raises(ModelRegistryNotFoundError) as err:
        SetModelAliasOperator(task_id="a", model_name=model_name, alias="champion", version="7").execute(
            context("a")
        )
    message = str(err.value)
    assert f"Version 7 of model {model_name!r} not found" in message
    assert f"has versions: {v1}; aliases: challenger -> {v1}" in message

    with pytest.raises(ModelRegistryNotFoundError) as err:
        PromoteModelVersionOperator(task_id="p", model_name=model_name + "_typo", version="1").execute(
            context("p")
        )
    assert f"Registered model '{model_name}_typo' not found" in str(err.value)
    assert model_name in str(err.value)  # the models that do exist are listed

    sensor = ModelVersionSensor(task_id="s", model_name=model_name, alias="champion")
    assert sensor.poke(context("s")) is False
    with pytest.raises(
        ModelRegistryNotFoundError, match=f"Alias 'champion' of model '{model_name}' not found"
    ):
        from mlops.hooks import MlflowRegistryHook

        MlflowRegistryHook().get_model_version_by_alias(model_name, "champion")


def test_gate_compares_candidate_with_champion_metrics_from_mlflow(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)  # rmse 60, r2 .40
    v2 = register(registry, model_name, context, 1)  # rmse 55, r2 .45
    v3 = register(registry, model_name, context, 2)  # rmse 80, r2 .20

    no_champion = ModelValidationGateOperator(
        task_id="gate", model_name=model_name, candidate_version=v1, rules=RULES
    )
    result = no_champion.execute(context("gate"))
    assert result["passed"] is True and result["champion_version"] is None
    PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v1).execute(context("p"))

    better = ModelValidationGateOperator(
        task_id="gate", model_name=model_name, candidate_version=v2, rules=RULES
    )
    result = better.execute(context("gate"))
    assert result["passed"] is True and result["champion_version"] == v1
    assert result["candidate_metrics"]["rmse"] == 55.0 and result["champion_metrics"]["rmse"] == 60.0

    worse = ModelValidationGateOperator(
        task_id="gate", model_name=model_name, candidate_version=v3, rules=RULES
    )
    ctx = context("gate")
    with pytest.raises(AirflowFailException, match="rmse 80 > max 70") as err:
        worse.execute(ctx)
    assert f"Candidate version {v3} of '{model_name}' failed the validation gate" in str(err.value)
    assert ctx["ti"].xcom["gate_result"]["passed"] is False
    assert registry.client().get_model_version(model_name, v3).tags["mlops_validation_status"] == "failed"

    skip = ModelValidationGateOperator(
        task_id="gate", model_name=model_name, candidate_version=v3, rules=RULES, on_fail="skip"
    )
    with pytest.raises(AirflowSkipException):
        skip.execute(context("gate"))


def test_gate_uses_given_metrics_and_reports_missing_metrics(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    v2 = register(registry, model_name, context, 3)  # 1 % worse rmse than v1 on MLflow
    PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v1).execute(context("p"))
    # metrics of a validation notebook, as JSON text: better than the champion's MLflow metrics
    gate = ModelValidationGateOperator(
        task_id="gate",
        model_name=model_name,
        candidate_version=v2,
        rules=RULES,
        candidate_metrics='{"rmse": 58.9, "r2": 0.41}',
    )
    assert gate.execute(context("gate"))["passed"] is True
    missing = ModelValidationGateOperator(
        task_id="gate",
        model_name=model_name,
        candidate_version=v2,
        rules={"rmse": {"max": 70}, "f1": {"min": 0.5}},
    )
    with pytest.raises(
        AirflowFailException, match="candidate has no metric 'f1'; metrics present: mae, r2, rmse"
    ):
        missing.execute(context("gate"))


def test_transition_stage_for_legacy_registries(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    v2 = register(registry, model_name, context, 1)
    TransitionModelVersionStageOperator(
        task_id="t", model_name=model_name, version=v1, stage="Production"
    ).execute(context("t"))
    result = TransitionModelVersionStageOperator(
        task_id="t", model_name=model_name, version=v2, stage="production", archive_existing_versions=True
    ).execute(context("t"))
    assert result["stage"] == "Production"
    client = registry.client()
    assert client.get_model_version(model_name, v2).current_stage == "Production"
    assert client.get_model_version(model_name, v1).current_stage == "Archived"


def test_sensor_pokes_for_ready_version_and_alias(registry, model_name, context):
    v1 = register(registry, model_name, context, 0)
    assert ModelVersionSensor(task_id="s", model_name=model_name, version=v1).poke(context("s")) is True
    waiting = ModelVersionSensor(task_id="s", model_name=model_name, alias="champion", expected_version=v1)
    assert waiting.poke(context("s")) is False
    PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v1).execute(context("p"))
    assert waiting.poke(context("s")) is True


def test_concurrent_promotions_end_consistent_with_complete_history(registry, model_name, context):
    vs = [register(registry, model_name, context, i % 4) for i in range(4)]
    PromoteModelVersionOperator(task_id="p", model_name=model_name, version=vs[0]).execute(context("p"))
    barrier = threading.Barrier(3)
    outcomes: dict[str, str] = {}

    def promote(version):
        op = PromoteModelVersionOperator(task_id=f"p{version}", model_name=model_name, version=version)
        barrier.wait()
        try:
            op.execute(context(f"p{version}"))
            outcomes[version] = "ok"
        except ConcurrentPromotionError:
            outcomes[version] = "superseded"

    for _round in range(2):
        threads = [threading.Thread(target=promote, args=(v,)) for v in vs[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        holder = registry.client().get_model_version_by_alias(model_name, "champion").version
        applied = [e for e in history(registry, model_name) if e["status"] == "applied"]
        # the last applied entry names the version the alias points at
        assert applied[-1]["version"] == holder
        assert outcomes[holder] == "ok"
        # every promotion that reported success is in the history, and no entry is left pending
        entries = history(registry, model_name)
        assert not [e for e in entries if e["status"] == "pending"]
        assert {v for v, o in outcomes.items() if o == "ok"} <= {e["version"] for e in applied}
        assert {v for v, o in outcomes.items() if o == "superseded"} <= {
            e["version"] for e in entries if e["status"] == "superseded"
        } | {e["version"] for e in applied}
        outcomes.clear()
        barrier.reset()
    # a rollback still works from the resulting history
    RollbackModelOperator(task_id="rb", model_name=model_name).execute(context("rb"))
    assert versions(registry, model_name) == sorted(int(v) for v in vs)


def test_no_operator_deletes_model_versions(registry, model_name, context):
    import pathlib

    import mlops

    source = "\n".join(p.read_text() for p in pathlib.Path(mlops.__file__).parent.glob("*.py"))
    assert "delete_model_version(" not in source and "delete_registered_model(" not in source
    v1 = register(registry, model_name, context, 0)
    v2 = register(registry, model_name, context, 1)
    for op in (
        PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v1),
        PromoteModelVersionOperator(
            task_id="p", model_name=model_name, version=v2, target_model_name=model_name + "_prod"
        ),
        PromoteModelVersionOperator(task_id="p", model_name=model_name, version=v2),
        RollbackModelOperator(task_id="r", model_name=model_name),
        DeleteModelAliasOperator(task_id="d", model_name=model_name, alias="champion"),
        TransitionModelVersionStageOperator(task_id="t", model_name=model_name, version=v2, stage="Archived"),
    ):
        op.execute(context(op.task_id))
    assert versions(registry, model_name) == [int(v1), int(v2)]
    assert versions(registry, model_name + "_prod") == [1]


def test_a_retry_after_a_crash_mid_promotion_completes_the_history(registry, model_name, context):
    """The task died after moving the alias but before marking its history entry applied."""
    v1 = register(registry, model_name, context, 0)
    v2 = register(registry, model_name, context, 1)
    PromoteModelVersionOperator(task_id="p0", model_name=model_name, version=v1).execute(context("p0"))
    crashed = context("promote", try_number=1)
    ti = crashed["ti"]
    ts = int(time.time() * 1000)
    entry = {
        "action": "promote",
        "alias": "champion",
        "version": v2,
        "previous_version": v1,
        "status": "pending",
        "by": "alice",
        "at": "2026-01-01T00:00:00+00:00",
        "ts": ts,
        "reason": "",
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "map_index": "-1",
        "try_number": "1",
    }
    client = registry.client()
    client.set_model_version_tag(model_name, v2, f"mlops_history_champion_{ts}_crashed0", json.dumps(entry))
    client.set_registered_model_alias(model_name, "champion", v2)

    retry = context("promote", run_id=ti.run_id, try_number=2)
    result = PromoteModelVersionOperator(task_id="promote", model_name=model_name, version=v2).execute(retry)
    assert result == {"model_name": model_name, "version": v2, "previous_version": v1}
    statuses = [(e["version"], e["status"]) for e in history(registry, model_name)]
    assert statuses == [(v1, "applied"), (v2, "applied")]
    RollbackModelOperator(task_id="rb", model_name=model_name).execute(context("rb"))
    assert client.get_model_version_by_alias(model_name, "champion").version == v1
