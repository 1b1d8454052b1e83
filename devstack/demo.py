"""`make demo`: a real end-to-end run on the local devstack, started and stopped by this command.

It starts an MLflow server and an emulated "dev" workspace on 127.0.0.1, imports a training
notebook, runs the `devstack_example` DAG as a real Airflow DAG run (the provider's
DatabricksSubmitRunOperator submits the notebook; the notebook trains on scikit-learn's diabetes
data and logs to MLflow), prints what happened and where to look, and stops everything.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

from devstack.airflow_runner import ROOT, AirflowRunner
from devstack.services import start_mlflow_server, start_workspace

EXAMPLE = Path(__file__).resolve().parent / "example"
NOTEBOOK_DIR = "/Shared/devstack-example"


def _connection(url: str, token: str) -> str:
    host_port = url.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    return json.dumps({"conn_type": "databricks", "host": host, "port": int(port), "schema": "http", "password": token})


def run_demo(state_dir: Path) -> int:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.workspace import ImportFormat, Language

    run_dir = state_dir / time.strftime("demo-%Y%m%d-%H%M%S")
    started = time.monotonic()
    print(f"devstack demo: state and logs in {run_dir}")
    services = []
    try:
        mlflow = start_mlflow_server(run_dir / "mlflow")
        services.append(mlflow)
        print(f"  MLflow server      {mlflow.url}")
        token = "dapi" + secrets.token_hex(16)
        workspace = start_workspace("dev", run_dir / "workspace-dev", token=token, mlflow_tracking_uri=mlflow.url)
        services.append(workspace)
        print(f"  dev workspace      {workspace.url}")

        client = WorkspaceClient(host=workspace.url, token=token)
        client.workspace.mkdirs(NOTEBOOK_DIR)
        source = (EXAMPLE / "notebooks" / "train_diabetes.py").read_bytes()
        client.workspace.import_(
            f"{NOTEBOOK_DIR}/train_diabetes",
            content=base64.b64encode(source).decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
            overwrite=True,
        )

        airflow = AirflowRunner(run_dir / "airflow")
        airflow.migrate()
        print("  running DAG        devstack_example (airflow dags test)")
        result = airflow.dags_test(
            "devstack_example",
            EXAMPLE / "dags",
            env={
                "AIRFLOW_CONN_DATABRICKS_DEV": _connection(workspace.url, token),
                "DEVSTACK_EXAMPLE_NOTEBOOK": f"{NOTEBOOK_DIR}/train_diabetes",
            },
        )
        log_path = run_dir / "airflow-dag-run.log"
        log_path.write_text(result.output)
        if not result.succeeded:
            print(f"\nThe DAG run ended {result.state or 'without finishing'}; its log: {log_path}")
            print(result.output[-3000:])
            return 1
        line = next(ln for ln in result.output.splitlines() if "DEVSTACK_EXAMPLE_RESULT " in ln)
        output = json.loads(line.split("DEVSTACK_EXAMPLE_RESULT ", 1)[1].split("\x1b", 1)[0].strip())
        print("\nResult")
        print(f"  trained on         {output['rows']} rows (scikit-learn diabetes)")
        print(f"  rmse / r2          {output['rmse']:.2f} / {output['r2']:.3f}")
        print(f"  MLflow run         {mlflow.url}/#/experiments/0/runs/{output['run_id']}")
        print(f"  Databricks run     {output['run_page_url']}")
        print(f"  Airflow log        {log_path}")
        print(f"  took               {time.monotonic() - started:.0f}s; stopping the devstack")
        return 0
    finally:
        for service in reversed(services):
            service.stop()


def default_state_dir() -> Path:
    return ROOT / ".devstack"
