"""mlops_batch_score fixes its model version and date before the job, against a real MLflow registry.

The DAG's resolve task is called as Airflow calls it (its context values as arguments), in
process: a backfill is a run type `airflow dags test` cannot make.
"""

from __future__ import annotations

import importlib.util
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import yaml
from airflow.sdk.exceptions import AirflowSkipException
from mlops.operators import RegisterModelVersionOperator
from mlops.registry import move_alias

from devstack.airflow_runner import ROOT


class Store:
    """The task's state store, as the task runner hands it over (kept across tries of a DAG run)."""

    def __init__(self):
        self.values = {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value, **_):
        self.values[key] = value


@pytest.fixture
def scoring_dag(sqlite_registry, model_name, tmp_path, monkeypatch):
    """dags/mlops_batch_score.py on a config whose prod model is this test's, in the MLflow server."""
    prod = model_name.replace("dev.", "prod.", 1)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                # A self-hosted registry names its server for the notebooks too (else: ConfigError).
                "registry": {"uri": None, "tracking_uri": sqlite_registry.url},
                "model": {"prod_model_name": prod},
            }
        )
    )
    monkeypatch.setenv("MLOPS_CONFIG_OVERLAY", str(overlay))
    spec = importlib.util.spec_from_file_location(
        f"scoring_dag_{tmp_path.name}", ROOT / "dags" / "mlops_batch_score.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag, prod


def _promote_three(registry, prod, context) -> list[int]:
    """Versions 1, 2, 3 of ``prod`` become champion one after another; the moments between."""
    from mlops.hooks import MlflowRegistryHook

    hook = MlflowRegistryHook()
    moments = []
    for index in (0, 1, 2):
        RegisterModelVersionOperator(
            task_id="register", model_uri=registry.models[index].model_uri, model_name=prod
        ).execute(context("register"))
        move_alias(hook, prod, "champion", str(index + 1), action="promote", context=context("promote"))
        time.sleep(0.05)
        moments.append(int(time.time() * 1000))
        time.sleep(0.05)
    return moments


def _resolve(dag, *, run_type, due_ms=None, params=None, store=None):
    task = dag.get_task("resolve_scoring_run")
    due = datetime.fromtimestamp(due_ms / 1000, tz=UTC) if due_ms else datetime(2026, 11, 21, tzinfo=UTC)
    return task.python_callable(
        params={"date": None, "backfill_champion": "of_the_date", **(params or {})},
        dag_run=SimpleNamespace(run_type=run_type),
        data_interval_start=datetime(2026, 11, 20, 6, tzinfo=UTC),
        data_interval_end=due,
        task_state_store=store,
    )


def test_a_backfill_scores_each_date_with_the_champion_of_its_day(scoring_dag, sqlite_registry, context):
    dag, prod = scoring_dag
    after_v1, after_v2, _ = _promote_three(sqlite_registry, prod, context)

    assert _resolve(dag, run_type="backfill", due_ms=after_v1) == {"model_version": "1", "date": "2026-11-20"}
    assert _resolve(dag, run_type="backfill", due_ms=after_v2)["model_version"] == "2"
    # The Param chooses today's champion instead.
    current = _resolve(dag, run_type="backfill", due_ms=after_v1, params={"backfill_champion": "current"})
    assert current["model_version"] == "3"
    # A date before the first promotion has no champion: skipped, saying how to score it anyway.
    with pytest.raises(AirflowSkipException, match="backfill_champion=current"):
        _resolve(dag, run_type="backfill", due_ms=after_v1 - 60_000)


def test_a_retry_scores_the_same_date_with_the_same_version(scoring_dag, sqlite_registry, context):
    dag, prod = scoring_dag
    _promote_three(sqlite_registry, prod, context)
    store = Store()
    first = _resolve(dag, run_type="manual", params={"date": "2026-11-21"}, store=store)
    assert first == {"model_version": "3", "date": "2026-11-21"}

    # A new champion meanwhile; the retry (or a clear) of the same DAG run keeps what was fixed.
    from mlops.hooks import MlflowRegistryHook

    move_alias(MlflowRegistryHook(), prod, "champion", "1", action="rollback", context=context("rollback"))
    assert _resolve(dag, run_type="manual", params={"date": "2026-11-22"}, store=store) == first
    # A new DAG run (a fresh store) takes the new champion.
    assert (
        _resolve(dag, run_type="manual", params={"date": "2026-11-21"}, store=Store())["model_version"] == "1"
    )
