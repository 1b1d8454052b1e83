"""`make demo`: the whole lifecycle as real Airflow DAG runs on the local devstack.

Starts the devstack (unless it already runs), then runs mlops_train -> mlops_release ->
mlops_batch_score with `airflow dags test` (Asset events do not chain DAGs in a test run, so the
demo chains them), prints what happened, and stops what it started. The registry and the lake
survive between runs: each run trains a new candidate with the next hyperparameters of
:data:`CANDIDATES`, and the validation gate decides whether it replaces the champion.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from devstack import stack as devstack
from devstack.airflow_runner import ROOT, AirflowRunner, DagRunResult

CANDIDATES = (
    {"model_type": "ridge", "alpha": 1.0},
    {"model_type": "gradient_boosting", "max_depth": 2, "n_estimators": 150},
    {"model_type": "ridge", "alpha": 5000.0},
    {"model_type": "random_forest", "max_depth": 6, "n_estimators": 200},
)


class DemoError(RuntimeError):
    """A DAG run of the demo did not succeed."""


def _run(
    airflow: AirflowRunner, env: dict, dag_id: str, log_dir: Path, conf: dict | None = None
) -> DagRunResult:
    started = time.monotonic()
    result = airflow.dags_test(dag_id, ROOT / "dags", conf=conf, env=env, timeout=1800)
    log = log_dir / f"{dag_id}.log"
    log.write_text(result.output)
    print(
        f"  {dag_id:18} {result.state or 'did not finish'} in {time.monotonic() - started:.0f}s  (log: {log})"
    )
    if not result.succeeded:
        tail = "\n".join(line for line in result.output.splitlines()[-40:])
        raise DemoError(f"{dag_id} ended {result.state or 'without finishing'}; its log is {log}\n{tail}")
    return result


def _summary(mlflow_url: str, config: dict, release: DagRunResult, score: DagRunResult) -> list[str]:
    from mlflow import MlflowClient

    model = config["model"]
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    versions = client.search_model_versions(f"name='{model['dev_model_name']}'")
    candidate = max(versions, key=lambda v: int(v.version))
    status = candidate.tags.get("mlops_validation_status", "not validated")
    evaluation = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`mlops_candidate` = '{model['dev_model_name']}/{candidate.version}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    metrics = evaluation[0].data.metrics if evaluation else {}
    champion = client.get_model_version_by_alias(model["prod_model_name"], model["champion_alias"])
    lines = [
        f"candidate          {model['dev_model_name']} v{candidate.version} "
        f"({candidate.tags.get('mlops_dag_run_id', '')})",
        "                   rmse {:.2f}  r2 {:.3f}   (held-out data, staging)".format(
            metrics.get("candidate_rmse", float("nan")), metrics.get("candidate_r2", float("nan"))
        ),
    ]
    if "champion_rmse" in metrics:
        lines.append(
            "previous champion  rmse {:.2f}  r2 {:.3f}   (same rows)".format(
                metrics["champion_rmse"], metrics["champion_r2"]
            )
        )
    else:
        lines.append("previous champion  none (first release: only absolute rules apply)")
    failed = re.search(r"failed the validation gate: (.*?)[\"']?(?:\x1b|$)", release.output, re.MULTILINE)
    if status == "passed":
        lines.append(
            f"gate               PASSED -> promoted to {model['prod_model_name']} v{champion.version}"
        )
    else:
        reason = failed.group(1).strip() if failed else "see the release log"
        lines.append(f"gate               BLOCKED, champion unchanged: {reason}")
    lines.append(
        f"champion           {model['prod_model_name']} v{champion.version} (alias {model['champion_alias']})"
    )
    scored = re.search(r"Scored (\d+) rows of (\S+) with (\S+) v(\d+) into (\S+?)\.(?:\s|$)", score.output)
    if scored:
        lines.append(
            f"batch scoring      {scored.group(1)} rows of {scored.group(2)} with v{scored.group(4)}"
        )
        lines.append(f"predictions        {scored.group(5)}")
    lines.append(f"MLflow UI          {mlflow_url}/#/models/{model['prod_model_name']}")
    return lines


def _serving_summary(stack: dict, config: dict) -> list[str]:
    """The prod endpoint: what it serves and one answer, asked as any client would ask it."""
    import pandas as pd
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import DatabricksError

    serving = config["environments"]["prod"].get("serving")
    if not serving or config["registry"].get("uri") != "databricks-uc":
        return ["serving endpoint   none configured (environments.prod.serving)"]
    ws = stack["workspaces"]["prod"]
    client = WorkspaceClient(host=ws["url"], token=ws["token"])
    name = serving["endpoint_name"]
    try:
        endpoint = client.serving_endpoints.get(name)
    except DatabricksError as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return [f"serving endpoint   {name}: none yet (the first release creates it)"]
        return [f"serving endpoint   {name}: {exc.error_code} ({exc})"]
    routes = {r.served_entity_name: r.traffic_percentage for r in endpoint.config.traffic_config.routes}
    served = ", ".join(
        f"{e.entity_name} v{e.entity_version} {routes.get(e.name, 0)}%"
        for e in endpoint.config.served_entities
    )
    lines = [f"serving endpoint   {name} ({endpoint.state.ready.value}): {served}"]
    features = config["model"]["features"]
    row = pd.read_csv(sorted((ROOT / "include/data/scoring").glob("date=*/*.csv"))[-1]).head(1)
    try:
        answer = client.serving_endpoints.query(
            name, dataframe_records=row[features].to_dict(orient="records")
        )
        lines.append(f"one prediction     {row['patient_id'].iloc[0]} -> {answer.predictions[0]:.2f}")
    except DatabricksError as exc:
        lines.append(f"one prediction     failed: {exc.error_code} ({exc})")
    lines.append(
        f"query it           {ws['url']}/serving-endpoints/{name}/invocations (README: Online serving)"
    )
    return lines


def run_demo(state_dir: Path, *, keep_running: bool = False) -> int:
    began = time.monotonic()
    running = devstack.status(state_dir)
    already_up = bool(running) and all(
        e["alive"] for e in [running["mlflow"], *running["workspaces"].values()]
    )
    print(f"devstack demo (state in {state_dir})")
    stack = devstack.up(state_dir)
    try:
        config = devstack.load_project_config_for(Path(stack["lake"]))
        env = devstack.connection_env(stack, config)
        airflow = AirflowRunner(state_dir / "airflow")
        airflow.migrate()
        log_dir = state_dir / "demo-logs" / time.strftime("%Y%m%d-%H%M%S")
        log_dir.mkdir(parents=True, exist_ok=True)
        round_file = state_dir / "demo-round"
        demo_round = int(round_file.read_text()) if round_file.exists() else 0
        hyperparameters = CANDIDATES[demo_round % len(CANDIDATES)]
        round_file.write_text(str(demo_round + 1))
        print(f"\nRound {demo_round + 1}: training a candidate with {hyperparameters}")
        _run(airflow, env, "mlops_train", log_dir, conf=hyperparameters)
        release = _run(
            airflow, env, "mlops_release", log_dir, conf={"reason": f"make demo, round {demo_round + 1}"}
        )
        score = _run(airflow, env, "mlops_batch_score", log_dir)
        print("\nSummary")
        for line in [
            *_summary(stack["mlflow"]["url"], config, release, score),
            *_serving_summary(stack, config),
        ]:
            print(f"  {line}")
        print(f"  took               {time.monotonic() - began:.0f}s")
        print("\nRun `make demo` again: the next round trains another candidate and the gate decides.")
        return 0
    except DemoError as exc:
        print(f"\ndemo failed: {exc}")
        return 1
    finally:
        if keep_running or already_up:
            print(
                f"\nThe devstack keeps running; stop it with `python -m devstack down`. Env: {devstack.StackState(state_dir).env_file}"
            )
        else:
            devstack.down(state_dir, quiet=True)
            print("\nStopped the devstack.")
