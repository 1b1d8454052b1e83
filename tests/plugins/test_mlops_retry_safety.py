"""Registry steps that a retry or a cleared task must not repeat, against a real MLflow server."""

from __future__ import annotations

import json

from mlops.operators import PromoteModelVersionOperator, RegisterModelVersionOperator, RollbackModelOperator


def _register(registry, name, context, index):
    op = RegisterModelVersionOperator(
        task_id="register", model_uri=registry.models[index].model_uri, model_name=name
    )
    return op.execute(context("register"))


def _champion(registry, name):
    return registry.client().get_model_version_by_alias(name, "champion").version


def _rollbacks(registry, name):
    entries = []
    for mv in registry.client().search_model_versions(f"name = '{name}'"):
        entries += [json.loads(v) for k, v in mv.tags.items() if k.startswith("mlops_history_")]
    return sorted((e for e in entries if e["action"] == "rollback"), key=lambda e: e["ts"])


def test_a_retried_or_cleared_rollback_lands_where_its_first_try_did(sqlite_registry, model_name, context):
    v1, v2, v3 = (_register(sqlite_registry, model_name, context, i) for i in range(3))
    for version in (v1, v2, v3):
        PromoteModelVersionOperator(task_id="promote", model_name=model_name, version=version).execute(
            context("promote")
        )
    rollback = RollbackModelOperator(task_id="rollback_champion", model_name=model_name, reason="bad scores")
    first = context("rollback_champion", try_number=1)
    assert rollback.execute(first)["version"] == v2
    assert _champion(sqlite_registry, model_name) == v2

    # The retry (or a person clearing the task) sees v2 as champion; it must not go on to v1.
    run_id = first["ti"].run_id
    for try_number in (2, 3):
        again = rollback.execute(context("rollback_champion", run_id=run_id, try_number=try_number))
        assert again == {"model_name": model_name, "version": v2, "previous_version": v3}
        assert _champion(sqlite_registry, model_name) == v2
    assert [(e["version"], e["rolled_back_from"]) for e in _rollbacks(sqlite_registry, model_name)] == [
        (v2, v3)
    ]

    # A new rollback run is a new decision: one more step back.
    assert rollback.execute(context("rollback_champion"))["version"] == v1
    assert _champion(sqlite_registry, model_name) == v1


def test_a_rollback_that_died_before_moving_the_alias_retries_to_its_recorded_target(
    sqlite_registry, model_name, context
):
    v1, v2, v3 = (_register(sqlite_registry, model_name, context, i) for i in range(3))
    for version in (v1, v2, v3):
        PromoteModelVersionOperator(task_id="promote", model_name=model_name, version=version).execute(
            context("promote")
        )
    rollback = RollbackModelOperator(task_id="rollback_champion", model_name=model_name)
    first = context("rollback_champion", try_number=1)

    def die(*args, **kwargs):
        raise ConnectionError("worker lost")

    rollback.hook.set_registered_model_alias = die
    try:
        rollback.execute(first)
    except ConnectionError:
        pass
    assert _champion(sqlite_registry, model_name) == v3
    # Meanwhile a release moved the champion on; the retry still restores the version it chose.
    PromoteModelVersionOperator(task_id="promote", model_name=model_name, version=v1).execute(
        context("promote")
    )
    retry = RollbackModelOperator(task_id="rollback_champion", model_name=model_name)
    assert (
        retry.execute(context("rollback_champion", run_id=first["ti"].run_id, try_number=2))["version"] == v2
    )
    assert _champion(sqlite_registry, model_name) == v2
