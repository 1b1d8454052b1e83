"""Run one DAG run with ``DAG.test()`` - what `airflow dags test` calls - at a FIXED run_after.

`airflow dags test` stamps each run with the current time, so a second call makes a second DAG
run. With a fixed run_after, a second call continues the SAME DAG run (its task instances are
cleared and run again, their task_state_store kept): the way these tests bring back a task
whose worker was killed mid-run.

    python dag_test_driver.py DAG_ID 2026-11-21T00:00:00+00:00
"""

from __future__ import annotations

import sys

import pendulum
from airflow.utils.cli import get_bagged_dag

if __name__ == "__main__":
    dag_id, when = sys.argv[1], pendulum.parse(sys.argv[2])
    dag = get_bagged_dag(None, dag_id)
    run = dag.test(logical_date=when, run_after=when)
    print(f"DagRun Finished: dag_id={dag_id}, run_id={run.run_id}, state={run.state}", flush=True)
