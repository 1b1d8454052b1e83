"""Deploying Databricks job definitions with their dynamic value references intact."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.providers.databricks.operators.databricks import DatabricksCreateJobsOperator


class DatabricksDeployJobOperator(DatabricksCreateJobsOperator):
    """
    The provider's create-or-reset job operator, with ``json`` passed to Databricks verbatim.

    ``DatabricksCreateJobsOperator`` renders ``json`` with Jinja, so a Databricks dynamic value
    reference such as ``{{job.run_id}}`` or ``{{tasks.prepare.values.rows}}`` would be consumed
    (or fail) in Airflow instead of being resolved by Databricks when the job runs. Job
    definitions are complete when the DAG is parsed (see include/jobs), so nothing in ``json``
    needs Airflow templating; the named arguments (``name``, ``tasks``...) are still templated.
    """

    template_fields: Sequence[str] = tuple(
        field for field in DatabricksCreateJobsOperator.template_fields if field != "json"
    )
