"""Wall time of one full lifecycle on the devstack, and where it goes.

    .venv/bin/python -m benchmarks.lifecycle

Starts a fresh devstack (MLflow + dev/staging/prod workspaces, on free ports) and runs
mlops_train -> mlops_release -> mlops_batch_score as real `airflow dags test` runs, then reads
back from the workspaces and the Airflow metadata DB:

- wall time per DAG and in total;
- notebook compute: the sum of the Databricks task runs' execution_duration (the notebooks'
  own work, Spark session start in the driver included); orchestration overhead = total - compute
  (Airflow parsing and task start-up, run submission, polling, cluster starts, registry calls);
- cluster starts per workspace (the emulator's counter; target: one per workspace);
- latency from a notebook finishing (the Databricks run's end_time) to the next Airflow task
  starting (target < 5 s; the provider's default polling period is 30 s).

Results go to ``benchmarks/results/lifecycle-<time>.json``.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.results_file import save  # noqa: E402
from devstack import stack as devstack  # noqa: E402
from devstack.airflow_runner import AirflowRunner  # noqa: E402
from devstack.processes import free_port  # noqa: E402

# (DAG, Airflow task that watches the notebook's run, the Airflow task that starts next, workspace)
HANDOFFS = (
    ("mlops_train", "train_workflow.train_model", "read_training_result", "dev"),
    ("mlops_release", "validate_candidate", "validation_gate", "staging"),
    ("mlops_batch_score", "score", "check_row_counts", "prod"),
)


def _api(stack: dict, env_name: str, endpoint: str, **params) -> dict:
    ws = stack["workspaces"][env_name]
    response = requests.get(
        f"{ws['url']}/api/{endpoint}",
        params=params,
        headers={"Authorization": f"Bearer {ws['token']}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def _task_runs(stack: dict, env_name: str) -> list[dict]:
    runs = _api(stack, env_name, "2.2/jobs/runs/list", expand_tasks="true", limit=25).get("runs", [])
    return [task for run in runs for task in run.get("tasks", [])]


def _ti_times(airflow_db: Path) -> dict[tuple[str, str], tuple[datetime, datetime]]:
    with sqlite3.connect(airflow_db) as conn:
        rows = conn.execute("SELECT dag_id, task_id, start_date, end_date FROM task_instance").fetchall()
    parse = lambda v: datetime.fromisoformat(v) if v else None  # noqa: E731
    return {(d, t): (parse(s), parse(e)) for d, t, s, e in rows}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lifecycle-bench-") as tmp:
        state_dir = Path(tmp) / "devstack"
        ports = {"mlflow": free_port(), "dev": free_port(), "staging": free_port(), "prod": free_port()}
        stack = devstack.up(state_dir, ports=ports, quiet=True)
        try:
            config = devstack.load_project_config_for(Path(stack["lake"]))
            env = devstack.connection_env(stack, config)
            airflow = AirflowRunner(Path(tmp) / "airflow")
            airflow.migrate()
            starts_before = {
                e: _api(stack, e, "2.0/devstack/stats")["cluster_starts"] for e in devstack.ENVIRONMENTS
            }
            walls = {}
            began = time.monotonic()
            for dag_id, _, _, _ in HANDOFFS:
                started = time.monotonic()
                result = airflow.dags_test(dag_id, ROOT / "dags", env=env, timeout=1800)
                walls[dag_id] = round(time.monotonic() - started, 1)
                if not result.succeeded:
                    print(result.output[-4000:])
                    raise SystemExit(f"{dag_id} ended {result.state}")
            total = time.monotonic() - began
            starts = {
                e: _api(stack, e, "2.0/devstack/stats")["cluster_starts"] - starts_before[e]
                for e in devstack.ENVIRONMENTS
            }
            task_runs = {e: _task_runs(stack, e) for e in devstack.ENVIRONMENTS}
            tis = _ti_times(Path(tmp) / "airflow" / "airflow.db")
        finally:
            devstack.down(state_dir, quiet=True, purge=True)

    compute = sum(t.get("execution_duration", 0) for runs in task_runs.values() for t in runs) / 1000
    handoffs = {}
    for dag_id, _, next_task, env_name in HANDOFFS:
        last_end = max(t["end_time"] for t in task_runs[env_name]) / 1000
        next_start = tis[(dag_id, next_task)][0].timestamp()
        handoffs[f"{dag_id}: notebook end -> {next_task} start"] = round(next_start - last_end, 2)
    figures = {
        "wall_seconds": {**walls, "total": round(total, 1)},
        "notebook_compute_seconds": round(compute, 1),
        "orchestration_overhead_seconds": round(total - compute, 1),
        "overhead_share": round((total - compute) / total, 2),
        "notebook_seconds_by_task": {
            t["task_key"]: round(t.get("execution_duration", 0) / 1000, 1)
            for runs in task_runs.values()
            for t in runs
        },
        "cluster_starts": starts,
        "handoff_latency_seconds": handoffs,
    }
    save("lifecycle", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
