"""Every DAG file imports cleanly, follows the house rules and refuses bad trigger input."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
LIFECYCLE_DAGS = {"mlops_train", "mlops_release", "mlops_batch_score", "mlops_rollback"}


@pytest.fixture(scope="module")
def dagbag():
    # No connections, variables or services exist here: parsing must not need any.
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == LIFECYCLE_DAGS


@pytest.mark.parametrize("dag_id", sorted(LIFECYCLE_DAGS))
def test_house_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and "mlops" in dag.tags
    assert dag.doc_md and dag.doc_md.startswith(f"## {dag_id}")
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.owner == "mlops", task.task_id
        assert task.retries is not None, task.task_id


def test_dag_files_pass_the_airflow3_lint():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--select", "AIR3", str(DAGS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_dag_files_do_no_network_or_db_work_at_parse_time():
    # Parsing with no connection, variable or service anywhere must work: DagBag above had none.
    source = "\n".join(p.read_text() for p in DAGS.glob("*.py"))
    assert "Variable.get(" not in source
    # And parsing imports none of the heavy libraries: they belong inside tasks and operators.
    probe = (
        "import runpy, sys\n"
        f"for f in sorted(__import__('glob').glob({str(DAGS)!r} + '/*.py')): runpy.run_path(f)\n"
        "print(sorted(m for m in ('mlflow', 'pandas', 'sklearn', 'pyspark') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("dag_id", "conf", "problem"),
    [
        ("mlops_train", {"alpha": -1}, "alpha"),
        ("mlops_train", {"alpha": "lots"}, "alpha"),
        ("mlops_train", {"model_type": "svm"}, "model_type"),
        ("mlops_train", {"max_depth": 0}, "max_depth"),
        ("mlops_release", {"version": "latest"}, "version"),
        ("mlops_release", {"require_approval": "maybe"}, "require_approval"),
        ("mlops_rollback", {}, "reason"),
        ("mlops_batch_score", {"date": "yesterday"}, "date"),
    ],
)
def test_bad_trigger_params_are_refused(dagbag, dag_id, conf, problem):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=problem):
        _trigger_params(dagbag, dag_id, conf)


def test_good_trigger_params_are_accepted(dagbag):
    assert (
        _trigger_params(dagbag, "mlops_train", {"model_type": "random_forest", "max_depth": 6})["max_depth"]
        == 6
    )
    assert (
        _trigger_params(dagbag, "mlops_rollback", {"reason": "bad predictions in EU"})["to_version"] is None
    )
    assert _trigger_params(dagbag, "mlops_batch_score", {"date": "2026-11-21"})["date"] == "2026-11-21"


def _trigger_params(dagbag, dag_id: str, conf: dict) -> dict:
    """Validate ``conf`` as a trigger would: the DAG's params updated with it, then checked."""
    params = copy.deepcopy(dagbag.dags[dag_id].params)
    params.update(conf)
    return params.validate()


def test_form_model_types_match_the_training_code():
    sys.path.insert(0, str(ROOT / "include" / "notebooks"))
    from lifecycle.training import MODEL_TYPES as TRAINABLE

    from include.dag_helpers import MODEL_TYPES

    assert tuple(MODEL_TYPES) == tuple(TRAINABLE)
