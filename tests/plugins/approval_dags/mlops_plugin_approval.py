"""## mlops_plugin_approval

A release approval as mlops_release asks for it: alice and bob may approve, separation of
duties on; promote moves the champion only when approved.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param
from mlops.approval import ReleaseApprovalOperator
from mlops.operators import PromoteModelVersionOperator

with DAG(
    dag_id="mlops_plugin_approval",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "mlops", "retries": 0},
    tags=["mlops", "test"],
    params={"model_name": Param("", type="string"), "version": Param("", type="string")},
) as dag:
    approve = ReleaseApprovalOperator(
        task_id="approve_release",
        subject="Release version {{ params.version }} of {{ params.model_name }}?",
        body="Candidate {{ params.version }}.",
        model_name="{{ params.model_name }}",
        version="{{ params.version }}",
        approvers=["alice", "bob"],
        separation_of_duties=True,
        response_timeout=timedelta(minutes=10),
    )
    promote = PromoteModelVersionOperator(
        task_id="promote",
        trigger_rule="none_failed_min_one_success",
        model_name="{{ params.model_name }}",
        version="{{ params.version }}",
        alias="champion",
        reason="approved release",
    )
    approve >> promote
