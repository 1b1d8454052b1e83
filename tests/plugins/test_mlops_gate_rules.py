"""Gate rules: comparator semantics, and invalid rules rejected when the DAG is parsed."""

from __future__ import annotations

import pytest
from mlops.gate import GateRuleError, evaluate, parse_metrics, parse_rules, render_table
from mlops.operators import (
    ModelValidationGateOperator,
    PromoteModelVersionOperator,
    TransitionModelVersionStageOperator,
)
from mlops.sensors import ModelVersionSensor

RULES = {"rmse": {"max": 70, "max_regression": 0.02}, "r2": {"min": 0.3, "min_improvement": 0.0}}


def verdicts(rules, candidate, champion):
    return {
        (c.metric, c.rule.split()[0]): c.passed for c in evaluate(parse_rules(rules), candidate, champion)
    }


def test_directions_are_inferred_and_explicit():
    parsed = parse_rules(
        {**RULES, "mae": {"max_regression_abs": 1}, "auc": {"direction": "lower", "min_improvement": 0}}
    )
    assert parsed["rmse"]["direction"] == "lower"
    assert parsed["r2"]["direction"] == "higher"
    assert parsed["mae"]["direction"] == "lower"  # by name
    assert parsed["auc"]["direction"] == "lower"  # explicit wins over the name


def test_relative_regression_is_a_fraction_of_the_champion():
    champion = {"rmse": 60.0, "r2": 0.4}
    # 2 % of 60 = 1.2: 61.2 is allowed, 61.3 is not
    assert verdicts(RULES, {"rmse": 61.2, "r2": 0.4}, champion)[("rmse", "max_regression")] is True
    assert verdicts(RULES, {"rmse": 61.3, "r2": 0.4}, champion)[("rmse", "max_regression")] is False
    # higher-is-better: min_improvement 0 means "at least as good"
    assert verdicts(RULES, {"rmse": 60, "r2": 0.4}, champion)[("r2", "min_improvement")] is True
    assert verdicts(RULES, {"rmse": 60, "r2": 0.399}, champion)[("r2", "min_improvement")] is False


def test_absolute_comparators():
    rules = {"rmse": {"max_regression_abs": 0.5}, "r2": {"min_improvement_abs": 0.01}}
    champion = {"rmse": 60.0, "r2": 0.4}
    assert verdicts(rules, {"rmse": 60.5, "r2": 0.41}, champion) == {
        ("rmse", "max_regression_abs"): True,
        ("r2", "min_improvement_abs"): True,
    }
    assert verdicts(rules, {"rmse": 60.6, "r2": 0.405}, champion) == {
        ("rmse", "max_regression_abs"): False,
        ("r2", "min_improvement_abs"): False,
    }


def test_zero_champion_does_not_divide_by_zero():
    rules = {"loss": {"max_regression": 0.1}}
    assert verdicts(rules, {"loss": 0.0}, {"loss": 0.0})[("loss", "max_regression")] is True
    assert verdicts(rules, {"loss": 0.01}, {"loss": 0.0})[("loss", "max_regression")] is False


def test_without_champion_only_absolute_rules_apply():
    checks = evaluate(parse_rules(RULES), {"rmse": 65, "r2": 0.35}, None)
    assert all(c.passed for c in checks)
    assert [c.reason for c in checks if "no champion" in c.reason]
    assert not all(c.passed for c in evaluate(parse_rules(RULES), {"rmse": 75, "r2": 0.35}, None))


def test_missing_metric_names_the_metrics_present():
    checks = evaluate(parse_rules(RULES), {"rmse": 60, "mae": 3}, {"rmse": 60, "r2": 0.4})
    failed = [c for c in checks if not c.passed]
    assert failed and "candidate has no metric 'r2'; metrics present: mae, rmse" in failed[0].reason


def test_table_lists_metric_candidate_champion_rule_verdict():
    rules = parse_rules(RULES)
    table = render_table(evaluate(rules, {"rmse": 75, "r2": 0.5}, {"rmse": 60, "r2": 0.4}), rules)
    header = table.splitlines()[0].split()
    assert header == ["metric", "candidate", "champion", "rule", "verdict"]
    assert "FAIL: rmse 75 > max 70" in table and "PASS" in table


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"rmse": {"maximum": 70}}, "unknown comparator 'maximum' for metric 'rmse'"),
        ({"rmse": {"max": "seventy"}}, "rmse.max must be a number"),
        ({"rmse": {"max": True}}, "rmse.max must be a number"),
        ({"rmse": {"max_regression": -0.1}}, "must be >= 0"),
        ({"rmse": {"direction": "down", "max": 1}}, "direction must be 'lower' or 'higher'"),
        ({"r2": {"min": 0.9, "max": 0.1}}, "min 0.9 is above max 0.1"),
        ({}, "non-empty mapping"),
        ({"rmse": 70}, "must be a non-empty mapping"),
    ],
)
def test_invalid_rules_fail_when_the_dag_is_parsed(rules, message):
    with pytest.raises(ValueError, match="invalid rules") as err:
        ModelValidationGateOperator(task_id="gate", model_name="m", candidate_version="1", rules=rules)
    assert message in str(err.value)


def test_templated_rules_are_checked_at_run_time_only():
    op = ModelValidationGateOperator(
        task_id="gate",
        model_name="m",
        candidate_version="{{ ti.xcom_pull('register') }}",
        rules="{{ params.rules }}",
    )
    assert op.rules == "{{ params.rules }}"
    with pytest.raises(GateRuleError, match="unknown comparator"):
        parse_rules('{"rmse": {"below": 3}}')


def test_metrics_accept_json_text_and_reject_non_numbers():
    assert parse_metrics('{"rmse": "61.5", "r2": 0.4}', "candidate_metrics") == {"rmse": 61.5, "r2": 0.4}
    with pytest.raises(GateRuleError, match=r"candidate_metrics\['rmse'\] is not a number"):
        parse_metrics({"rmse": "n/a"}, "candidate_metrics")


def test_argument_combinations_are_checked_in_init():
    with pytest.raises(ValueError, match="on_fail must be 'fail' or 'skip'"):
        ModelValidationGateOperator(
            task_id="g", model_name="m", candidate_version="1", rules=RULES, on_fail="warn"
        )
    with pytest.raises(ValueError, match="needs target_model_name"):
        PromoteModelVersionOperator(task_id="p", model_name="m", version="1", target_mlflow_conn_id="central")
    with pytest.raises(ValueError, match="stage 'Prod' is not one of"):
        TransitionModelVersionStageOperator(task_id="t", model_name="m", version="1", stage="Prod")
    with pytest.raises(ValueError, match="exactly one of version or alias"):
        ModelVersionSensor(task_id="s", model_name="m", version="1", alias="champion")
    with pytest.raises(ValueError, match="expected_version only makes sense with alias"):
        ModelVersionSensor(task_id="s", model_name="m", version="1", expected_version="2")


def test_importing_the_operators_does_not_import_mlflow():
    import subprocess
    import sys

    code = "import sys; import mlops.operators, mlops.sensors; print('mlflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": "plugins:.", "PATH": ""},
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_trigger_serializes_its_path_and_every_kwarg():
    import importlib
    import inspect

    from mlops.triggers import ModelVersionTrigger

    trigger = ModelVersionTrigger(
        model_name="prod.ml.diabetes", alias="champion", expected_version="3", poke_interval=5
    )
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert cls is ModelVersionTrigger
    assert set(kwargs) == set(inspect.signature(ModelVersionTrigger.__init__).parameters) - {"self"}
    assert cls(**kwargs).serialize() == (path, kwargs)


def test_sensor_deferrable_defaults_from_airflow_config(monkeypatch):
    import subprocess
    import sys

    code = (
        "from mlops.sensors import ModelVersionSensor as S; "
        "print(S(task_id='s', model_name='m', version='1').deferrable)"
    )
    env = {"PYTHONPATH": "plugins:.", "PATH": "", "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_a_dag_file_with_invalid_rules_is_an_import_error(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad_gate.py").write_text(
        "import pendulum\n"
        "from airflow.sdk import DAG\n"
        "from mlops.operators import ModelValidationGateOperator\n"
        "with DAG('bad_gate', schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):\n"
        "    ModelValidationGateOperator(task_id='gate', model_name='prod.ml.diabetes', candidate_version='1',\n"
        "                                rules={'rmse': {'max_regresion': 0.02}})\n"
    )
    bag = DagBag(dag_folder=str(tmp_path))
    assert "bad_gate" not in bag.dags
    [error] = bag.import_errors.values()
    assert "unknown comparator 'max_regresion' for metric 'rmse'" in error
